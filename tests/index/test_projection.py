import numpy as np
import pytest

from index.projection import pca_2d, project_2d


def test_pca_matches_sklearn_up_to_sign():
    from sklearn.decomposition import PCA

    x = np.random.default_rng(0).standard_normal((300, 12)).astype(np.float32) * np.arange(1, 13, dtype=np.float32)
    ours = pca_2d(x)
    ref = PCA(2, svd_solver="full").fit_transform(x)
    for j in range(2):
        np.testing.assert_allclose(np.abs(ours[:, j]), np.abs(ref[:, j]), rtol=1e-3, atol=1e-3)
    assert ours.shape == (300, 2) and ours.dtype == np.float32


def test_project_2d_rejects_unknown_method():
    with pytest.raises(ValueError, match="choose one of"):
        project_2d(np.ones((5, 3), np.float32), "tsne")
