"""The encoder's read-out of the backbone's last feature map ("avg" = the backbone's own output,
"grid" = its 2x2 quadrant averages) against a plain loop, truncated whitening against the top
principal axes, and both through save / load."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from encoders.backbones import build_backbone
from encoders.embed import Encoder, EncoderConfig, embed_tensor, read_out
from encoders.store import CONFIG_FILE, load_encoder, save_encoder
from encoders.whitening import fit_whitening


@pytest.mark.parametrize("name,size", [("smallcnn", 16), ("smallcnn", 20), ("resnet18", 32)])
def test_grid_read_out_is_the_four_quadrant_averages(name, size):
    torch.manual_seed(0)
    backbone = build_backbone(name, small_stem=True).eval()
    x = torch.randn(3, 3, size, size)
    with torch.no_grad():
        fmap = backbone.feature_map(x)  # (N, D, h, w)
        got = read_out(backbone, x, "grid")
        assert torch.allclose(read_out(backbone, x, "avg"), backbone(x))  # the backbone's own output
        assert torch.allclose(fmap.mean((2, 3)), backbone(x), atol=1e-6)  # feature_map is what forward pools
    h, w = fmap.shape[2:]
    want = []
    for n in range(3):  # adaptive pooling's regions: rows [0, ceil(h/2)) and [floor(h/2), h), same for columns
        cells = [fmap[n, :, r0:r1, c0:c1].mean((1, 2)) for r0, r1 in ((0, -(-h // 2)), (h // 2, h))
                 for c0, c1 in ((0, -(-w // 2)), (w // 2, w))]
        want.append(torch.stack(cells, 1).flatten())  # (D, 4) -> channel-major, as flatten of (D, 2, 2)
    assert got.shape == (3, 4 * backbone.feat_dim)
    assert torch.allclose(got, torch.stack(want), atol=1e-6)


def test_truncated_whitening_keeps_the_top_axes():
    """Distances after whitening to d dimensions equal those of the textbook SVD version restricted
    to the d largest singular values."""
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6)) * np.arange(1, 7)).float()
    w = fit_whitening(x, 0.1, out_dim=3)
    xc = x.double().numpy() - x.double().numpy().mean(0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    var = s ** 2 / (len(xc) - 1)
    ref = xc @ vt[:3].T / np.sqrt(var[:3] + 0.1 * var.mean())
    ours = w(x).double().numpy()
    dist = lambda a: np.linalg.norm(a[:, None] - a[None], axis=2)  # noqa: E731
    assert ours.shape == (400, 3) and np.allclose(dist(ours[:50]), dist(ref[:50]), atol=1e-4)
    with pytest.raises(ValueError):
        fit_whitening(x, out_dim=7)


def test_grid_encoder_with_truncated_whitening_round_trips(tmp_path):
    torch.manual_seed(0)
    backbone = build_backbone("smallcnn").eval()
    images = torch.randint(0, 256, (60, 3, 16, 16), dtype=torch.uint8)
    cfg = EncoderConfig(backbone="smallcnn", small_stem=True, feat_dim=backbone.feat_dim, image_size=16,
                        normalize="luma", readout="grid", whiten_dim=32)
    assert cfg.readout_dim == 4 * backbone.feat_dim and cfg.dim == 4 * backbone.feat_dim  # whiten off: all
    enc = Encoder(backbone, cfg).with_whitening(images)
    assert enc.cfg.dim == 32
    before = embed_tensor(enc, images)
    assert before.shape == (60, 32) and np.allclose(np.linalg.norm(before, axis=1), 1, atol=1e-5)
    save_encoder(tmp_path, enc)
    assert np.allclose(embed_tensor(load_encoder(tmp_path), images), before, atol=1e-6)


def test_a_config_saved_without_a_read_out_means_the_global_average(tmp_path):
    backbone = build_backbone("smallcnn").eval()
    cfg = EncoderConfig(backbone="smallcnn", feat_dim=backbone.feat_dim, image_size=16)
    save_encoder(tmp_path, Encoder(backbone, cfg))
    saved = json.loads((tmp_path / CONFIG_FILE).read_text())
    del saved["readout"], saved["whiten_dim"]
    (tmp_path / CONFIG_FILE).write_text(json.dumps(saved))
    loaded = load_encoder(tmp_path)
    assert loaded.cfg.readout == "avg" and loaded.cfg.dim == backbone.feat_dim
    with pytest.raises(ValueError, match="read-out"):
        EncoderConfig(readout="max")


@pytest.mark.parametrize("flip,grey", [(True, True), (True, False), (False, True)])
def test_view_averaging_against_a_loop_over_images_and_views(flip, grey):
    """The embedding with flip / grey averaging is the unit mean of the read-outs of every view of the
    image (the image, its mirror, their greyscale versions), each image and view run alone."""
    from PIL import Image, ImageOps

    from encoders.augment import normalize_batch
    from encoders.embed import rgb_to_grey_uint8

    torch.manual_seed(0)
    backbone = build_backbone("smallcnn").eval()
    images = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8)
    cfg = EncoderConfig(backbone="smallcnn", small_stem=True, feat_dim=backbone.feat_dim, image_size=16,
                        normalize="luma", readout="grid", flip_average=flip, grey_average=grey)
    got = Encoder(backbone, cfg)(images)  # (N, D)
    for n in range(len(images)):
        pil = Image.fromarray(images[n].permute(1, 2, 0).numpy())
        views = [torch.from_numpy(np.array(v)).permute(2, 0, 1)[None] for v in
                 ([pil, ImageOps.mirror(pil)] if flip else [pil])]  # each (1, 3, S, S)
        views += [rgb_to_grey_uint8(v) for v in views] if grey else []
        with torch.no_grad():
            h = [read_out(backbone, normalize_batch(v, cfg.mean, cfg.std, cfg.normalize), "grid")[0] for v in views]
        want = torch.nn.functional.normalize(torch.stack(h).mean(0), dim=0)
        assert torch.allclose(got[n], want, atol=1e-5)
