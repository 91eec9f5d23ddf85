"""2-D maps of an embedding collection, for plotting.

    project_2d(x (M, D), method) -> float32 (M, 2)
"""
from __future__ import annotations

import importlib.util

import numpy as np

from index.faiss_index import as_vectors

METHODS = ("pca", "umap")


def umap_available() -> bool:
    return importlib.util.find_spec("umap") is not None


def pca_2d(x: np.ndarray) -> np.ndarray:
    """Project onto the top-2 principal axes (exact SVD of the centred data)."""
    x = np.asarray(x, dtype=np.float32)
    xc = x - x.mean(0, keepdims=True)  # (M, D)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)  # vt: (min(M, D), D)
    y = xc @ vt[:2].T  # (M, 2)
    sign = np.sign(y[np.abs(y).argmax(0), [0, 1]])  # fix each axis' sign: deterministic plots
    return (y * np.where(sign == 0, 1, sign)).astype(np.float32)


def project_2d(x: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """L2-normalised (M, D) -> (M, 2) by PCA, or UMAP (cosine) when the `umap-learn` package is installed."""
    if method not in METHODS:
        raise ValueError(f"projection {method!r}: choose one of {', '.join(METHODS)}")
    x = as_vectors(x)
    if method == "pca" or len(x) < 4:
        return pca_2d(x)
    if not umap_available():
        raise ValueError("UMAP needs the umap-learn package (pip install umap-learn); use pca")
    import umap

    return umap.UMAP(n_components=2, metric="cosine", random_state=seed).fit_transform(x).astype(np.float32)
