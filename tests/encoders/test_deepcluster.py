"""DeepCluster: pseudo-labels are a faiss K-means of the PCA-whitened features, empty
clusters are re-filled, the classifier is re-initialised each epoch, sampling is uniform
over clusters."""
import numpy as np
import pytest
import torch

from encoders.backbones import build_backbone
from encoders.methods import DeepCluster, EpochContext
from encoders.methods.deepcluster import DeepClusterSettings, refill_empty_clusters
from encoders.whitening import pca_whiten
from index.clusters import kmeans
from pipelines.train_loop import kmeans_labels

M = 60


def feats(seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(4, 16, generator=g) * 4
    return centres[torch.arange(M) % 4] + torch.randn(M, 16, generator=g)  # (M, D), 4 blobs


def make(k=4):
    torch.manual_seed(0)
    settings = DeepClusterSettings(clusters=k, pca_dim=8)
    return DeepCluster(build_backbone("smallcnn"), n_images=M, settings=settings, seed=3)


def ctx(x, forgotten):
    return EpochContext(embed_all=lambda: x, kmeans=kmeans_labels, forget_optimizer_state=forgotten.extend)


def test_pseudo_labels_equal_a_faiss_kmeans_of_the_same_features():
    m, x, forgotten = make(), feats(), []
    stats = m.on_epoch_start(2, ctx(x, forgotten))
    want = kmeans(pca_whiten(x, 8).numpy(), 4, seed=3 + 2, nredo=1, niter=20).labels
    np.testing.assert_array_equal(m.labels.numpy(), want)
    assert stats["clusters"] == 4 and "nmi_previous" not in stats
    assert len(forgotten) == 2  # the classifier's weight and bias lose their optimizer state
    stats = m.on_epoch_start(3, ctx(x, forgotten))
    assert 0.0 <= stats["nmi_previous"] <= 1.0


def test_pca_whitening_gives_unit_rows_of_decorrelated_directions():
    y = pca_whiten(feats(), 8)
    assert y.shape == (M, 8)
    torch.testing.assert_close(y.norm(dim=1), torch.ones(M))


def test_empty_clusters_are_refilled_from_the_largest():
    labels = np.array([0] * 10 + [1] * 4 + [3] * 2)  # cluster 2 empty, 0 the largest
    x = np.random.default_rng(0).standard_normal((16, 5)).astype(np.float32)
    out = refill_empty_clusters(labels, 4, x, np.random.default_rng(1))
    assert np.bincount(out, minlength=4).tolist() == [5, 4, 5, 2]
    assert (out[labels != 0] == labels[labels != 0]).all()  # only the largest cluster gave members


def test_head_reinitialised_each_epoch_and_labels_used_by_the_loss():
    m, x = make(), feats()
    m.on_epoch_start(0, ctx(x, []))
    w0 = m.head.weight.clone()
    with torch.no_grad():
        m.head.weight.add_(1.0)
    m.on_epoch_start(1, ctx(x, []))
    assert not torch.equal(m.head.weight, w0 + 1.0) and torch.all(m.head.bias == 0)
    assert 0.005 < float(m.head.weight.detach().std()) < 0.02  # N(0, 0.01)
    m.eval()
    imgs, idx = torch.randn(5, 3, 16, 16), torch.tensor([0, 7, 9, 30, 59])
    want = torch.nn.functional.cross_entropy(m(imgs), m.labels[idx])
    torch.testing.assert_close(m.training_loss([imgs], idx), want)


def test_loss_without_labels_is_an_error_and_sampling_is_uniform_over_clusters():
    m = make()
    with pytest.raises(RuntimeError, match="no pseudo-labels"):
        m.training_loss([torch.randn(2, 3, 16, 16)], torch.tensor([0, 1]))
    m.labels.copy_(torch.tensor([0] * 50 + [1] * 5 + [2] * 3 + [3] * 2))
    order = m.epoch_order(0, M, torch.Generator().manual_seed(0))
    assert len(order) == M
    counts = np.bincount(m.labels[order].numpy(), minlength=4)
    assert counts.min() >= 11 and counts.max() <= 16  # ~M/4 each (16 drawn, shuffled, M kept), not 50:5:3:2
