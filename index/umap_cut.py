"""The UMAP cuts (N2D): UMAP to 10 dimensions on the k-NN graph, then a GMM or K-means; the UMAP
embedding kept in memory and in an index folder, since it does not depend on K.

    umap_embedding(x (M, D), graph, seed, store) -> (M, 10) float32, made once per (x, neighbour ids, seed)
    umap_labels(x, graph, k, seed, then, u, store) -> (M,) labels by GMM ("gmm") or K-means ("kmeans")
Used by index/clusters.py ("umap-gmm", "umap-kmeans" and the "consensus" vote).
Legend: M images, D embedding dim, K clusters, k neighbours.
"""
from __future__ import annotations

import functools
import io
import os
import threading
from pathlib import Path

import numpy as np

from encoders.files import atomic_write_bytes
from index.graph import Neighbours

_UMAP_IMPORT = threading.Lock()  # the page's sessions are threads: one sets umap up at a time


@functools.cache
def import_umap():
    """umap-learn, with its numba kernels compiled once per machine instead of once per process.

    umap-learn jit-compiles its kernels (`smooth_knn_dist`, `compute_membership_strengths`, the
    layout epochs, the exact neighbours of small inputs) without numba's on-disk cache: seconds of
    compiling in every new process before its first UMAP (bench/results/umap_first_fit.json).
    Caching is switched on for the module-level kernels of `umap.umap_`, `umap.layouts`,
    `umap.utils` and `umap.distances`;
    numba keeps the cache beside umap's sources (or in its user cache dir when those are
    read-only) and recompiles when umap's source or the CPU changes. Where numba finds no writable
    place, or for kernels it cannot cache, they are compiled in each process as before.
    functools.cache lets two threads that call it first both run it: the lock runs them one after the
    other, and each reads a copy of a module's names, which another import may add to meanwhile (a
    page session once failed with "dictionary changed size during iteration")."""
    with _UMAP_IMPORT:
        import umap
        import umap.distances
        import umap.layouts
        import umap.umap_
        import umap.utils
        from numba.core.dispatcher import Dispatcher

        for module in (umap.umap_, umap.layouts, umap.utils, umap.distances):
            for f in list(vars(module).values()):
                if isinstance(f, Dispatcher) and f.__module__ == module.__name__:
                    try:
                        f.enable_caching()
                    except RuntimeError:  # "no locator available": nowhere to keep the cache
                        pass
    return umap


UMAP_MEMO_SIZE = 6  # UMAP embeddings kept (a clustering and its two stability reruns, for two collections)
_UMAP_MEMO: dict[str, np.ndarray] = {}  # digest of (x, neighbour ids, seed) -> (M, 10), oldest first


def umap_embedding(x: np.ndarray, graph: Neighbours, seed: int, store: str | os.PathLike | None = None) -> np.ndarray:
    """N2D's first step: UMAP (cosine, 10-d, min_dist 0) of x on its precomputed k-NN graph, (M, 10).
    UMAP reads whole neighbour lists: the links a thinned graph leaves out still count, so the stability
    reruns of a UMAP cut differ from it by their seed. It does not depend on K, so the last few are
    kept in memory, and in `store` (an index folder) as umap_<digest of x, neighbours and seed>.npy: another
    K, or the page after `pipelines.cluster`, reuses them."""
    import hashlib
    import warnings

    umap = import_umap()

    # x and the neighbour ids fix the graph (its cosines follow from them; their last bits vary with
    # the thread count of the search, so they are left out of the key)
    key = hashlib.blake2b(b"".join(np.ascontiguousarray(a).tobytes() for a in (x, graph.ids))
                          + str(seed).encode(), digest_size=16).hexdigest()
    path = Path(store) / f"umap_{key}.npy" if store is not None else None
    if key not in _UMAP_MEMO and path is not None and path.is_file():
        try:
            u = np.load(path, allow_pickle=False)
            if u.shape == (len(x), min(10, len(x) - 2)) and u.dtype == np.float32:
                _UMAP_MEMO[key] = u
        except (OSError, ValueError):
            pass  # unreadable: made again below
    if key in _UMAP_MEMO:
        return _UMAP_MEMO[key]
    nn = graph.ids.shape[1] + 1
    ids = np.column_stack([np.arange(len(x)), graph.ids])  # (M, k + 1): umap expects self first
    dists = np.column_stack([np.zeros(len(x), np.float32), 1 - graph.sims]).clip(0)
    with warnings.catch_warnings():  # "n_jobs overridden by random_state", "no NNDescent index for transform"
        warnings.simplefilter("ignore", UserWarning)
        u = umap.UMAP(n_components=min(10, len(x) - 2), n_neighbors=nn, min_dist=0.0, metric="cosine",
                      random_state=seed, precomputed_knn=(ids, dists, None)).fit_transform(x)
    u = u.astype(np.float32)
    _UMAP_MEMO[key] = u
    while len(_UMAP_MEMO) > UMAP_MEMO_SIZE:
        _UMAP_MEMO.pop(next(iter(_UMAP_MEMO)))  # the oldest
    if path is not None:
        buf = io.BytesIO()
        np.save(buf, u, allow_pickle=False)
        try:
            atomic_write_bytes(path, buf.getvalue())
        except OSError:
            pass  # a read-only or full index folder: the groups are the same, only not kept on disk
    return u


def umap_labels(x: np.ndarray, graph: Neighbours, k: int, seed: int, then: str = "gmm",
                u: np.ndarray | None = None, store: str | os.PathLike | None = None) -> np.ndarray:
    """N2D: the UMAP embedding `u` (made here when not given), then a full-covariance GMM (`then="gmm"`)
    or K-means (`then="kmeans"`: what a user can do for free on raw pixels)."""
    from sklearn.cluster import KMeans
    from sklearn.mixture import GaussianMixture

    u = umap_embedding(x, graph, seed, store) if u is None else u
    if then == "kmeans":
        return KMeans(k, n_init=10, random_state=seed).fit_predict(u)
    return GaussianMixture(k, covariance_type="full", random_state=seed).fit(u).predict(u)
