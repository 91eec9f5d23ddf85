"""Where look-alikes crowd, closeness is no evidence of a copy: the stand-apart test for near pairs.

    kth_neighbour(x, rows, k) -> cosine of each row's k-th nearest other row
    Crowding                  -> the test: a pHash or cosine pair counts only where it stands apart
                                 from both images' k nearest others

Copies come in small groups, so an image's k-th nearest other image is a different picture: how
close that one is says how close distinct pictures get around the image. Used by index/duplicates.py
(the pairs) and index/calibration.py (its margins). Legend: M images, D dim, P pairs, S sampled rows.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import faiss
import numpy as np

from index.faiss_index import as_vectors
from index.phash import kth_hamming

NEIGHBOUR_K = 10  # copies come in small groups: an image's 10th nearest other image is a different picture


def kth_neighbour(x: np.ndarray, rows: np.ndarray, k: int = NEIGHBOUR_K) -> np.ndarray:
    """Cosine of each of x[rows]'s k-th nearest other row (x (M, D) L2-normalised) -> float32 (S,);
    empty when M <= k. How close distinct pictures get around each of them (dense where a
    collection holds many alike)."""
    if len(x) <= k:
        return np.empty(0, np.float32)
    D, _ = faiss.knn(np.ascontiguousarray(x[rows], np.float32), as_vectors(x), k + 1,
                     metric=faiss.METRIC_INNER_PRODUCT)  # (S, k + 1): itself first
    return D[:, k].astype(np.float32)


@dataclass(frozen=True)
class Crowding:
    """Where look-alikes crowd (product shots, icons, a burst of one scene, tiny silhouettes), a
    close pHash or cosine says little: many distinct pictures are that close. A near pair counts
    only when it stands apart from both images' other neighbours (copies come in small groups,
    so an image's k-th nearest other image is a different picture):

    * a pHash pair: distance + `hash_margin` < either image's distance to its k-th nearest pHash
      (no k other images lie within an edit's worth of bits beyond the pair);
    * a cosine pair: 1 - cosine <= `cos_ratio` x (1 - either image's k-th neighbour's cosine)
      (a ratio test, as in matching local features), and a pHash distance <= `cos_hamming`
      (the encoder scores two parts of one scene alike; their pHashes differ like any two pictures').
    """

    k: int = NEIGHBOUR_K
    hash_margin: int = 8  # bits; calibrated: what an edit moves a pHash (index.calibration)
    cos_ratio: float = 0.3
    cos_hamming: int = 64  # 64: no condition; calibrated: closer than distinct pairs come

    def __post_init__(self):
        if self.k < 1 or not 0 <= self.hash_margin <= 64 or not 0 < self.cos_ratio <= 1 \
                or not 0 <= self.cos_hamming <= 64:
            raise ValueError(f"crowding {self}: k >= 1, margin and pHash distance 0..64, ratio in (0, 1]")

    def to_json(self) -> dict:
        return asdict(self)

    def hash_apart(self, phashes: np.ndarray, a: np.ndarray, b: np.ndarray, dist: np.ndarray,
                   kinds: tuple[str, ...]) -> np.ndarray:
        """bool (P,): pHash pairs (a, b) (rows of phashes uint64 (M, 4), distances (P,)) that stand apart."""
        rows, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
        kth = kth_hamming(phashes, self.k, kinds, rows)[inv]  # (2P,) k-th nearest distance of a's, then b's
        return (dist + self.hash_margin < kth[:len(a)]) & (dist + self.hash_margin < kth[len(a):])

    def cos_apart(self, x: np.ndarray, a: np.ndarray, b: np.ndarray, cos: np.ndarray) -> np.ndarray:
        """bool (P,): cosine pairs (a, b) (rows of x (M, D), cosines (P,)) that pass the ratio test."""
        rows, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
        kth = kth_neighbour(x, rows, self.k) if len(x) > self.k else np.full(len(rows), -1.0, np.float32)
        room = self.cos_ratio * (1.0 - kth[inv])  # (2P,)
        return (1.0 - cos <= room[:len(a)]) & (1.0 - cos <= room[len(a):])
