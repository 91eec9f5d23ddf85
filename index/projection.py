"""2-D maps of an embedding collection, for plotting, cached beside the index.

    project_2d(x (M, D), method)                      -> float32 (M, 2)
    cached_projection(index_dir, x (M, D), method)    -> float32 (M, 2), computed once per index
    saved_projection(index_dir, x (M, D), method)     -> the saved one, or None (nothing computed)
    map_cells(xy (M, 2), cols, rows)                  -> {(col, row): row index nearest the cell's centre}

Methods: PCA (exact SVD), t-SNE (scikit-learn, cosine, PCA init) and UMAP (umap-learn,
cosine) when that package is installed. A projection is saved as
INDEX_DIR/projection_<method>.npz together with a fingerprint of the embeddings it was
computed from (written atomically), so it is computed once per index and recomputed only
when the index's vectors change.
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import os
from pathlib import Path

import numpy as np

from encoders.files import atomic_write_bytes
from index.faiss_index import as_vectors

METHODS = ("pca", "tsne", "umap")
LABELS = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}


def umap_available() -> bool:
    return importlib.util.find_spec("umap") is not None


def available_methods() -> list[str]:
    return [m for m in METHODS if m != "umap" or umap_available()]


def pca_2d(x: np.ndarray) -> np.ndarray:
    """Project onto the top-2 principal axes (exact SVD of the centred data)."""
    x = np.asarray(x, dtype=np.float32)
    xc = x - x.mean(0, keepdims=True)  # (M, D)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)  # vt: (min(M, D), D)
    y = xc @ vt[:2].T  # (M, 2)
    sign = np.sign(y[np.abs(y).argmax(0), [0, 1]])  # fix each axis' sign: deterministic plots
    return (y * np.where(sign == 0, 1, sign)).astype(np.float32)


def tsne_2d(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """t-SNE (Barnes-Hut, cosine distances, PCA initialisation: stable global layout)."""
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
    return TSNE(n_components=2, metric="cosine", init="pca", perplexity=perplexity,
                random_state=seed).fit_transform(x).astype(np.float32)


def project_2d(x: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """L2-normalised (M, D) -> (M, 2) by PCA, t-SNE or UMAP (cosine). Tiny sets (< 5) fall back to PCA."""
    if method not in METHODS:
        raise ValueError(f"projection {method!r}: choose one of {', '.join(METHODS)}")
    x = as_vectors(x)
    if method == "pca" or len(x) < 5:
        return pca_2d(x)
    if method == "tsne":
        return tsne_2d(x, seed)
    if not umap_available():
        raise ValueError("UMAP needs the umap-learn package (pip install umap-learn); use pca or tsne")
    from index.umap_cut import import_umap
    umap = import_umap()

    n_neighbors = int(min(15, len(x) - 1))
    return umap.UMAP(n_components=2, metric="cosine", n_neighbors=n_neighbors,
                     random_state=seed).fit_transform(x).astype(np.float32)


def fingerprint(x: np.ndarray, method: str, seed: int) -> str:
    """What a saved projection was computed from: the embeddings' bytes, shape, method and seed."""
    h = hashlib.sha256(np.ascontiguousarray(x, dtype=np.float32).tobytes())
    h.update(f"{x.shape}|{method}|{seed}".encode())
    return h.hexdigest()


def projection_file(index_dir: str | os.PathLike, method: str) -> Path:
    return Path(index_dir) / f"projection_{method}.npz"


def saved_projection(index_dir: str | os.PathLike, x: np.ndarray, method: str = "pca",
                     seed: int = 0) -> np.ndarray | None:
    """INDEX_DIR/projection_<method>.npz when it was made from these vectors, else None."""
    try:
        with np.load(projection_file(index_dir, method), allow_pickle=False) as f:
            if str(f["fingerprint"]) == fingerprint(x, method, seed) and f["xy"].shape == (len(x), 2):
                return f["xy"].astype(np.float32)
    except (OSError, ValueError, KeyError, EOFError):
        pass  # absent, stale or damaged
    return None


def cached_projection(index_dir: str | os.PathLike, x: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """project_2d, read from INDEX_DIR/projection_<method>.npz when it was made from these vectors,
    else computed and saved there atomically (a failed save leaves the result usable)."""
    xy = saved_projection(index_dir, x, method, seed)
    if xy is not None:
        return xy
    path, key = projection_file(index_dir, method), fingerprint(x, method, seed)
    xy = project_2d(x, method, seed)
    buf = io.BytesIO()
    np.savez(buf, xy=xy, fingerprint=np.array(key))
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError:
        pass  # a read-only index folder: the map still works, it is just not cached on disk
    return xy


def map_cells(xy: np.ndarray, cols: int, rows: int) -> dict[tuple[int, int], int]:
    """Split the map's bounding box into cols x rows cells; for each non-empty cell the row of
    xy nearest to the cell's centre (one representative image per cell, for a mosaic)."""
    xy = np.asarray(xy, np.float64)
    lo, hi = xy.min(0), xy.max(0)
    span = np.where(hi > lo, hi - lo, 1.0)
    u = (xy - lo) / span * [cols, rows]  # (M, 2) in cell units
    cell = np.minimum(u.astype(int), [cols - 1, rows - 1])  # (M, 2)
    dist = ((u - cell - 0.5) ** 2).sum(1)  # (M,) to the centre of its own cell
    best: dict[tuple[int, int], int] = {}
    for r in np.argsort(dist, kind="stable"):
        best.setdefault((int(cell[r, 0]), int(cell[r, 1])), int(r))
    return best
