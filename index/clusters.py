"""Spherical K-means over L2-normalised float32 (M, D) embeddings, with faiss.Kmeans.

    train_kmeans(x, k, **faiss_kwargs)  -> trained faiss.Kmeans, on the GPU when faiss-gpu sees one
    kmeans(x, k, seed, nredo)           -> Clustering(centroids (K, D), labels (M,), scores (M,))
    choose_k(x, candidates, sample, seed) -> (K, {K: silhouette}) by cosine silhouette on a sample
    central_rows(clustering, top)       -> per cluster, the rows closest to its centroid
    cluster_collection(x, k=None, ...)  -> ClusterResult: K (given, or chosen by silhouette) + clustering
    read_saved_k(index_dir)             -> K that `pipelines.cluster` saved beside an index, if any
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from index.faiss_index import as_vectors

log = logging.getLogger(__name__)

CLUSTERS = "clusters.json"  # written beside the index by pipelines.cluster


@dataclass
class Clustering:
    centroids: np.ndarray  # float32 (K, D), unit norm
    labels: np.ndarray  # int64 (M,)
    scores: np.ndarray  # float32 (M,), cosine similarity to the own centroid

    @property
    def sizes(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.centroids))


def train_kmeans(x: np.ndarray, k: int, **kwargs) -> faiss.Kmeans:
    """faiss.Kmeans trained on float32 (M, D) `x`: on all GPUs when faiss-gpu sees one, else
    (or if the GPU run fails to start) on the CPU. Same algorithm and seed either way; the
    GPU's float arithmetic differs, so centroids agree within FAISS's tolerance, not bit for bit."""
    if faiss.get_num_gpus() > 0:
        try:
            km = faiss.Kmeans(x.shape[1], k, gpu=True, verbose=False, **kwargs)
            km.train(x)
            return km
        except (RuntimeError, AttributeError) as e:
            log.info("K-means on CPU (%s)", (str(e).splitlines() or [type(e).__name__])[0])
    km = faiss.Kmeans(x.shape[1], k, verbose=False, **kwargs)
    km.train(x)
    return km


def kmeans(x: np.ndarray, k: int, seed: int = 0, nredo: int = 5, niter: int = 25) -> Clustering:
    """Spherical K-means (best of `nredo` seeded restarts); each row to its nearest centroid."""
    x = as_vectors(x)
    if not 1 <= k <= len(x):
        raise ValueError(f"{k} clusters asked of {len(x)} images: need 1 <= k <= number of images")
    km = train_kmeans(x, k, niter=niter, nredo=nredo, seed=seed, spherical=True,
                      min_points_per_centroid=1, max_points_per_centroid=100_000)
    centroids = as_vectors(km.centroids)  # (K, D)
    sims = x @ centroids.T  # (M, K)
    labels = sims.argmax(1).astype(np.int64)
    return Clustering(centroids, labels, sims[np.arange(len(x)), labels].astype(np.float32))


def silhouette_cosine(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette with cosine distance 1 - x.y (rows unit norm); reference: sklearn."""
    from sklearn.metrics import silhouette_score

    if len(np.unique(labels)) < 2:
        return -1.0
    return float(silhouette_score(x, labels, metric="cosine"))


def choose_k(x: np.ndarray, candidates: list[int] | None = None, sample: int = 5000, seed: int = 0,
             nredo: int = 3) -> tuple[int, dict[int, float]]:
    """K with the highest cosine silhouette on a sample of at most `sample` rows.

    Candidates default to 2..min(20, sqrt(M)). Returns (K, {K: silhouette}).
    """
    x = as_vectors(x)
    if len(x) < 3:
        raise ValueError(f"choosing K needs at least 3 images, have {len(x)}; give K")
    rng = np.random.default_rng(seed)
    xs = x if len(x) <= sample else x[np.sort(rng.choice(len(x), sample, replace=False))]
    if candidates is None:
        candidates = list(range(2, max(3, min(20, int(np.sqrt(len(xs)))) + 1)))
    candidates = [k for k in candidates if 2 <= k < len(xs)]
    scores = {k: silhouette_cosine(xs, kmeans(xs, k, seed=seed, nredo=nredo).labels) for k in candidates}
    best = max(scores, key=lambda k: (scores[k], -k))
    return best, scores


def central_rows(c: Clustering, top: int = 5) -> list[np.ndarray]:
    """For each cluster, up to `top` member rows, most central (highest cosine) first."""
    out = []
    for j in range(len(c.centroids)):
        members = np.flatnonzero(c.labels == j)
        out.append(members[np.argsort(-c.scores[members], kind="stable")[:top]])
    return out


@dataclass
class ClusterResult:
    k: int
    chosen_by: str
    clustering: Clustering
    silhouette: dict[int, float] = field(default_factory=dict)


def auto_k_candidates(m: int, k_max: int = 20, k_min: int = 4) -> list[int]:
    """k_min..min(k_max, sqrt(M)): the K tried when none is given. Silhouette on embeddings
    tends to peak at K=2, which rarely helps anyone browse a collection, hence k_min=4."""
    lo = max(2, min(k_min, m - 1))
    return list(range(lo, max(lo + 1, min(k_max, int(m ** 0.5)) + 1)))


def cluster_collection(x: np.ndarray, k: int | None = None, k_max: int = 20, sample: int = 5000,
                       nredo: int = 5, seed: int = 0, k_min: int = 4) -> ClusterResult:
    """K-means of (M, D) embeddings with K given, or chosen by cosine silhouette on a sample."""
    if k is None:
        candidates = auto_k_candidates(len(x), k_max, k_min)
        k, scores = choose_k(x, candidates, sample=sample, seed=seed)
        why = (f"highest cosine silhouette ({scores[k]:.3f}) among K in {candidates[0]}..{candidates[-1]} "
               f"on {min(len(x), sample)} sampled images")
    else:
        scores, why = {}, "given with -k"
    return ClusterResult(k, why, kmeans(x, k, seed=seed, nredo=nredo), scores)


def read_saved_k(index_dir) -> tuple[int, str] | None:
    """(K, how it was chosen) from INDEX_DIR/clusters.json, or None if absent, unreadable or not ours."""
    try:
        d = json.loads((Path(index_dir) / CLUSTERS).read_text())
        k, why = d["k"], d.get("chosen_by", "")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(k, int) or isinstance(k, bool) or k < 1 or not isinstance(why, str):
        return None
    return k, why


def members(c: Clustering, j: int) -> np.ndarray:
    """Rows of cluster j, most central (highest score) first; ties in row order."""
    rows = np.flatnonzero(c.labels == j)
    return rows[np.argsort(-c.scores[rows], kind="stable")]
