"""PCA-whitening: against a plain numpy SVD reference, its shrinkage, and that it travels
with the saved encoder."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from encoders.backbones import build_backbone
from encoders.embed import Encoder, EncoderConfig, embed_tensor
from encoders.store import load_encoder, save_encoder
from encoders.whitening import fit_whitening


def correlated(m=500, d=6, seed=0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) * np.array([5.0, 2.0, 1.0, 0.5, 0.2, 0.1])[:, None]
    return torch.from_numpy(rng.normal(size=(m, d)) @ mix + 3.0).float()


def test_unshrunk_whitening_gives_identity_covariance():
    x = correlated()
    z = fit_whitening(x, shrinkage=0.0)(x).double()
    cov = torch.cov(z.T)
    assert torch.allclose(cov, torch.eye(6, dtype=torch.float64), atol=1e-3)
    assert torch.allclose(z.mean(0), torch.zeros(6, dtype=torch.float64), atol=1e-4)


def test_matches_numpy_svd_reference():
    """Distances after whitening equal those of the textbook SVD version (axes differ in sign)."""
    x = correlated(seed=1)
    shrink = 0.1
    xc = x.double().numpy() - x.double().numpy().mean(0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    var = s ** 2 / (len(xc) - 1)
    ref = xc @ vt.T / np.sqrt(var + shrink * var.mean())
    ours = fit_whitening(x, shrink)(x).double().numpy()
    dist = lambda a: np.linalg.norm(a[:, None] - a[None], axis=2)  # noqa: E731
    assert np.allclose(dist(ours[:50]), dist(ref[:50]), rtol=1e-4, atol=1e-4)


def test_shrinkage_does_not_blow_up_empty_directions():
    """10 points in 8-D span at most 9 directions; a query off that span is scaled by at most
    1 / sqrt(shrinkage * mean variance)."""
    x = torch.randn(10, 8)
    x[:, -1] = 0.0  # no variance at all in the last coordinate
    w = fit_whitening(x, shrinkage=0.1)
    mean_var = torch.linalg.eigvalsh(torch.cov(x.T.double())).clamp_min(0).mean()
    off = torch.zeros(1, 8)
    off[0, -1] = 1.0
    gain = (w(off + w.mean) .norm() / off.norm()).item()
    assert gain <= 1 / (0.1 * mean_var).sqrt().item() + 1e-4


@pytest.mark.parametrize("bad", [torch.randn(1, 4), torch.randn(4)])
def test_needs_a_matrix_of_two_rows(bad):
    with pytest.raises(ValueError):
        fit_whitening(bad)


def test_whitening_is_saved_with_the_encoder(tmp_path):
    torch.manual_seed(0)
    backbone = build_backbone("smallcnn").eval()
    images = torch.randint(0, 256, (40, 3, 16, 16), dtype=torch.uint8)
    cfg = EncoderConfig(backbone="smallcnn", small_stem=True, feat_dim=backbone.feat_dim, image_size=16,
                        normalize="luma")
    plain = Encoder(backbone, cfg)
    whitened = plain.with_whitening(images)
    assert whitened.cfg.whiten and not plain.cfg.whiten and isinstance(plain.whiten, torch.nn.Identity)
    before = embed_tensor(whitened, images)
    save_encoder(tmp_path, whitened)
    loaded = load_encoder(tmp_path)
    assert loaded.cfg == whitened.cfg and torch.equal(loaded.whiten.proj, whitened.whiten.proj)
    assert np.allclose(embed_tensor(loaded, images), before, atol=1e-6)
    assert not np.allclose(embed_tensor(plain, images), before, atol=1e-3)  # whitening changes the embedding
    fitted_on = fit_whitening(torch.from_numpy(embed_tensor(plain, images)))  # on the unwhitened embeddings
    assert torch.equal(whitened.whiten.proj, fitted_on.proj)


def test_an_encoder_saved_without_whitening_refuses_whitening_weights(tmp_path):
    backbone = build_backbone("smallcnn").eval()
    cfg = EncoderConfig(backbone="smallcnn", feat_dim=backbone.feat_dim, image_size=16)
    with pytest.raises(ValueError, match="whiten=False"):
        Encoder(backbone, cfg, fit_whitening(torch.randn(10, backbone.feat_dim)))
    save_encoder(tmp_path, Encoder(backbone, cfg))
    assert not any(k.startswith("whiten.") for k in load_file(tmp_path / "encoder.safetensors"))
