"""FAISS inner-product indexes over L2-normalised float32 vectors, with stable int64 ids.

Pure functions over contiguous float32 `(n, d)` arrays (legend: N queries, M database
size, D embedding dim):

    choose_index_key(M, D, memory_budget)        -> "Flat" | "IVF4096,Flat" | "IVF...,PQ..."
    build_index(xb (M, D), ids (M,), key, ...)   -> faiss.Index holding the ids (see build_index)
    search(index, xq (N, D), k, params=None)     -> (D (N, k'), I (N, k')), k' = min(k, ntotal)
    neighbours(D, I)                             -> per query (scores, ids) with -1 dropped
    exact_search(xb, xq, k)                      -> the brute-force numpy reference

Search-time knobs (HNSW efSearch, IVF nprobe) are fixed when the index is built and
saved with it; a caller that wants others passes `faiss.SearchParameters` per call, so a
shared index is never mutated per request. The GPU is used for building and searching
Flat / IVF indexes when `faiss.get_num_gpus() > 0` (faiss-gpu); saved indexes are CPU ones.
"""
from __future__ import annotations

import math

import faiss
import numpy as np

from index.factory import apply_search_params, default_search_params, nlist_of, trained_index

FLAT_MAX = 50_000  # below this an exact scan (<= ~13 M multiply-adds per query at D=256) is fast
METRIC = "inner_product"


def as_vectors(x, d: int | None = None, normalise: bool = True) -> np.ndarray:
    """Anything array-like -> contiguous float32 (n, d), optionally L2-normalised (copy)."""
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D (n, d) array of vectors, got shape {x.shape}")
    if d is not None and x.shape[1] != d:
        raise ValueError(f"vectors have dimension {x.shape[1]}, the index expects {d}")
    if normalise:
        x = x.copy()
        faiss.normalize_L2(x)
    return x


class BudgetTooSmall(ValueError):
    """A memory budget too small for any index of the collection."""


class ReadOnlyIndex(ValueError):
    """An index that cannot be changed in place (on-disk inverted lists, or ids it does not hold)."""


def _ivf_nlist(n: int) -> int:
    """~sqrt(n) lists rounded to a power of two, with >= 39 training points per list.

    (autofaiss goes up to 4-16 sqrt(n); sqrt(n) keeps k-means training to seconds on a
    laptop CPU, and nprobe = nlist / 16 still scans only ~6% of the vectors.)
    """
    nlist = 2 ** round(math.log2(max(math.sqrt(n), 1.0)))
    return int(max(1, min(nlist, n // 39, 65536)))


HNSW_QUANTIZER_MIN_NLIST = 4096  # from here a flat coarse quantiser's scan of nlist centroids costs ms per query


def _pq_m(d: int, bytes_per_vector: float) -> int:
    """Largest PQ code size (bytes, dividing d, 8-bit codes, >= 4 dimensions per sub-quantiser) that fits."""
    for m in (128, 96, 64, 48, 32, 24, 16, 12, 8, 4, 2, 1):
        if m <= bytes_per_vector and d % m == 0 and d // m >= 4:
            return m
    raise BudgetTooSmall(f"the memory budget leaves {bytes_per_vector:.2f} bytes per vector, less than the "
                         f"smallest code (1 byte)")


def choose_index_key(n: int, d: int, memory_budget: float = 4e9) -> str:
    """Index factory key for `n` vectors of dimension `d` within `memory_budget` bytes.

    Exact `Flat` up to FLAT_MAX vectors; above, `IVF{nlist},Flat` while the raw vectors
    fit in half the budget (inverted lists support in-place updates, unlike HNSW); beyond
    that `IVF{nlist},PQ{m}` with the largest code that fits, at most d/4 bytes (autofaiss'
    family: nlist ~ sqrt(n), an HNSW coarse quantiser from 4096 lists). Why, from the
    measurements in bench/index_bench.py (bench/results/index_bench*.json): compressed codes
    alone find a quarter of the true top 10 at 1M vectors, so search re-ranks their
    candidates exactly (`index.rerank`), and 4 dimensions per sub-quantiser bring the exact
    top 10 into a few hundred candidates. OPQ (`OPQ{m},IVF...,PQ{m}`) is supported and
    re-ranked alike but not chosen automatically: its rotation training is slow on a CPU and
    it gained little recall after re-ranking (docs/usage.md, Index at scale). A caller may pass
    any other factory key (HNSW32, IVF1024,SQ8, ...) instead.
    """
    if n < 1 or d < 1:
        raise ValueError(f"cannot index {n} vectors of dimension {d}")
    if n <= FLAT_MAX:
        return "Flat"
    nlist = _ivf_nlist(n)
    if n * d * 4 <= memory_budget / 2:
        return f"IVF{nlist},Flat"
    m = _pq_m(d, (memory_budget / 2) / n - 8)  # 8 bytes for the id
    coarse = f"IVF{nlist}_HNSW32" if nlist >= HNSW_QUANTIZER_MIN_NLIST else f"IVF{nlist}"
    return f"{coarse},PQ{m}"


def supports_remove(key: str) -> bool:
    """Whether an index of this key can `remove_ids` (HNSW cannot: rebuild from embeddings)."""
    return not key.startswith("HNSW")


def build_index(xb: np.ndarray, ids: np.ndarray, key: str = "Flat", params: dict | None = None,
                train_size: int | None = None, seed: int = 0) -> faiss.Index:
    """float32 (M, D) L2-normalised + int64 ids (M,) -> an inner-product index keyed by `ids`.

    IVF indexes store the ids in their inverted lists; others (Flat, HNSW) are wrapped in
    IndexIDMap2. (IndexIDMap around IVF would break on `remove_ids`: IVF does not renumber
    its internal ids, IDMap compacts its table, and the two fall out of step.)

    Trainable indexes (IVF, PQ) are trained by `index.factory.trained_index` (sample size
    `train_size`, seed `seed`). Search knobs (`params`, default `default_search_params`) are set here, once.
    """
    xb = as_vectors(xb, normalise=False)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if ids.shape != (len(xb),):
        raise ValueError(f"{len(ids)} ids for {len(xb)} vectors")
    if len(np.unique(ids)) != len(ids):
        raise ValueError("ids must be unique")
    inner = trained_index(xb, key, train_size, seed)
    index = inner if nlist_of(key) is not None else faiss.IndexIDMap2(inner)
    index.add_with_ids(xb, ids)
    apply_search_params(index, default_search_params(key) if params is None else params)
    return index


def has_ondisk_lists(index: faiss.Index) -> bool:
    """Whether an IVF index's inverted lists are a (memory-mapped) faiss.OnDiskInvertedLists."""
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        return False
    return isinstance(faiss.downcast_InvertedLists(ivf.invlists), faiss.OnDiskInvertedLists)


def update_index(index: faiss.Index, remove: np.ndarray, xb_add: np.ndarray, ids_add: np.ndarray) -> faiss.Index:
    """Remove ids `remove`, then add float32 (M', D) `xb_add` under `ids_add`, in place."""
    if has_ondisk_lists(index):  # faiss would abort the process, not raise
        raise ReadOnlyIndex("this index keeps its inverted lists on disk, read-only: it cannot be updated in place")
    remove = np.ascontiguousarray(remove, dtype=np.int64)
    if len(remove):
        removed = index.remove_ids(remove)
        if removed != len(remove):
            raise ReadOnlyIndex(f"the index held {removed} of the {len(remove)} ids to remove")
    if len(xb_add):
        index.add_with_ids(as_vectors(xb_add, index.d, normalise=False), np.ascontiguousarray(ids_add, dtype=np.int64))
    return index


def search(index: faiss.Index, xq: np.ndarray, k: int, params: faiss.SearchParameters | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """float32 (N, D) queries -> (scores (N, k'), ids (N, k')), k' = min(k, ntotal).

    Queries are L2-normalised here, so scores are cosine similarities. Approximate
    indexes may still return id -1 in a row; `neighbours` drops those.
    """
    if k < 1:
        raise ValueError(f"k (neighbours per query) must be >= 1, got {k}")
    xq = as_vectors(xq, index.d)
    k = min(k, index.ntotal)
    if k == 0:
        return np.empty((len(xq), 0), np.float32), np.empty((len(xq), 0), np.int64)
    return index.search(xq, k, params=params)


def neighbours(D: np.ndarray, I: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(N, k) scores and ids -> N (scores, ids) pairs with the -1 (missing) ids dropped."""
    return [(d[i >= 0], i[i >= 0]) for d, i in zip(D, I)]


def exact_search(xb: np.ndarray, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force numpy reference: (scores (N, k), row numbers (N, k)), best first."""
    xb, xq = as_vectors(xb), as_vectors(xq, xb.shape[1])
    sims = xq @ xb.T  # (N, M)
    k = min(k, xb.shape[0])
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]  # (N, k), unordered
    order = np.argsort(-np.take_along_axis(sims, top, 1), axis=1, kind="stable")
    I = np.take_along_axis(top, order, 1)
    return np.take_along_axis(sims, I, 1), I


def recall_at_k(I: np.ndarray, I_true: np.ndarray) -> float:
    """Mean fraction of the true top-k ids found in the returned top-k."""
    k = I_true.shape[1]
    hits = sum(len(set(a[:k].tolist()) & set(b.tolist())) for a, b in zip(I, I_true))
    return hits / (len(I_true) * k)


def index_bytes(index: faiss.Index) -> int:
    """The size faiss.write_index will give `index`, counted without writing it anywhere."""
    n = 0

    def count(b: bytes) -> int:
        nonlocal n
        n += len(b)
        return len(b)
    faiss.write_index(index, faiss.PyCallbackIOWriter(count))
    return n
