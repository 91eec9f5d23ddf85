"""FAISS factory keys: the one place that parses a key, creates, trains and parameterises an index.

    nlist_of(key)                         -> the IVF list count of a key ("IVF1024,PQ32" -> 1024), or None
    train_sample_size(key)                -> how many vectors training uses (100 per list, 10k..200k)
    new_index(d, key)                     -> an empty inner-product index (factory call, polysemous off)
    trained_index(xb (M, D), key, ...)    -> that index trained on a seeded sample of xb (GPU when there)
    is_compressed(key)                    -> whether the index keeps lossy codes (PQ, OPQ, SQ) instead of vectors
    default_search_params(key)            -> {"nprobe", "efSearch", "quantizer_efSearch", "rerank"}: the knobs
                                             fixed at build time ("rerank": candidates re-scored exactly)
    apply_search_params(index, params)    -> sets those knobs on an index (once, at build time)
    on_gpu(index)                         -> the index on all GPUs when faiss-gpu sees one, else itself

Both builds use these: `index.faiss_index.build_index` (one process) and
`index.shards.train_ivf` (sharded). Errors are `IndexKeyError`s stating the key and the
fact; which command-line flag sets the key is for the CLI to say.
"""
from __future__ import annotations

import logging
import re

import faiss
import numpy as np

log = logging.getLogger(__name__)

HNSW_EF_CONSTRUCTION = 200
HNSW_EF_SEARCH = 256
# Candidates a compressed index hands to exact re-ranking (index.rerank): recall@10 and latency
# against 100 / 200 / 400 candidates at 1M vectors in bench/results/index_bench_1m_idle.json and
# bench/results/index_bench_fmnist.json (bench/index_bench.py --rerank 100 200 400).
RERANK_DEFAULT = 200


class IndexKeyError(ValueError):
    """An index key FAISS cannot build, or cannot build from the vectors given."""


def nlist_of(key: str) -> int | None:
    """Inverted-list count of an IVF key (`IVF1024,PQ32`, `OPQ32,IVF4096_HNSW32,PQ32`), else None."""
    m = re.search(r"(?:^|,)IVF(\d+)", key)
    return int(m.group(1)) if m else None


def is_compressed(key: str) -> bool:
    """Whether `key` stores lossy codes (PQ, OPQ + PQ, SQ, residual / additive quantisers): its scores
    are approximate, so search re-ranks its candidates with the exact vectors (`index.rerank`)."""
    return any(re.fullmatch(r"(O?PQ|SQ|RQ|LSQ|PRQ|PLSQ)\w*", part.split("_")[0]) for part in key.split(","))


def train_sample_size(key: str) -> int:
    """Training-sample size for `key`: 100 vectors per inverted list, at least 10k, at most 200k."""
    return min(200_000, max(10_000, 100 * (nlist_of(key) or 0)))


def skip_polysemous_training(index: faiss.Index) -> None:
    """Turn off the polysemous training index_factory enables for PQ codes (IVF-PQ, PQ).

    It reorders the PQ centroids by simulated annealing for Hamming pre-filtering, which
    search never uses here (polysemous_ht stays 0), and it dominated training time
    (docs/benchmarks.md, Index). Decoded
    vectors and search results are the same; only the code numbering differs.
    """
    try:
        inner = faiss.downcast_index(faiss.extract_index_ivf(index))
    except RuntimeError:
        inner = faiss.downcast_index(index)
        if isinstance(inner, faiss.IndexPreTransform):
            inner = faiss.downcast_index(inner.index)
    if hasattr(inner, "do_polysemous_training"):
        inner.do_polysemous_training = False


def new_index(d: int, key: str) -> faiss.Index:
    """An empty inner-product index of factory `key` over dimension `d`. Raises IndexKeyError."""
    try:
        index = faiss.index_factory(d, key, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        raise IndexKeyError(f"index key {key!r} is not a FAISS index factory string "
                            f"({str(e).splitlines()[0][:120]})") from None
    if key.startswith("HNSW"):
        faiss.downcast_index(index).hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    skip_polysemous_training(index)
    return index


def on_gpu(index: faiss.Index) -> faiss.Index:
    """The index moved to all GPUs when faiss-gpu sees one and the type supports it, else `index`."""
    if faiss.get_num_gpus() > 0 and not isinstance(faiss.downcast_index(index), faiss.IndexHNSW):
        try:
            return faiss.index_cpu_to_all_gpus(index)
        except (RuntimeError, AttributeError) as e:  # an index type without a GPU version, or no GPU module
            log.info("staying on CPU (%s)", (str(e).splitlines() or [type(e).__name__])[0])
    return index


def trained_index(xb: np.ndarray, key: str, train_size: int | None = None, seed: int = 0) -> faiss.Index:
    """An empty index of `key`, trained (if it needs it) on at most `train_size` rows of float32 (M, D)
    `xb` (default `train_sample_size`), sampled with `seed`. Training runs on the GPU when faiss-gpu sees
    one; the result is a CPU index. `xb` may be memory-mapped: only the sample is read."""
    index = new_index(xb.shape[1], key)
    if index.is_trained:
        return index
    nlist = nlist_of(key)
    if nlist is not None and nlist > len(xb):
        raise IndexKeyError(f"index key {key!r}: {nlist} inverted lists need at least as many training vectors, "
                            f"have {len(xb)}")
    size = train_sample_size(key) if train_size is None else train_size
    rows = np.sort(np.random.default_rng(seed).choice(len(xb), size, replace=False)) if len(xb) > size else None
    sample = np.ascontiguousarray(xb if rows is None else xb[rows], dtype=np.float32)
    trainee = on_gpu(index)
    trainee.train(sample)
    return faiss.index_gpu_to_cpu(trainee) if trainee is not index else index


def default_search_params(key: str) -> dict:
    """Search knobs fixed at build time: {"nprobe": nlist/16 (16, or 32 compressed, ..nlist)} for IVF
    (with an HNSW coarse quantiser also its efSearch), {"efSearch": 256} for HNSW, {"rerank": RERANK_DEFAULT}
    for compressed codes."""
    nlist = nlist_of(key)
    params: dict = {}
    if nlist is not None:
        # re-ranking can only recover what the probed lists hold: compressed keys probe >= 32 lists
        # (IVF256,PQ16 + re-ranking on 60k clustered vectors: recall@10 0.89 at nprobe 16, 0.97 at 32)
        params["nprobe"] = int(min(nlist, max(32 if is_compressed(key) else 16, nlist // 16)))
        if re.search(r"IVF\d+_HNSW", key):  # the coarse quantiser's beam must exceed the lists probed
            params["quantizer_efSearch"] = max(2 * params["nprobe"], 64)
    elif key.startswith("HNSW"):
        params["efSearch"] = HNSW_EF_SEARCH
    if is_compressed(key):
        params["rerank"] = RERANK_DEFAULT
    return params


def apply_search_params(index: faiss.Index, params: dict) -> None:
    """Set `params` (default_search_params' keys) on `index`, once, before it is shared. ("rerank" is
    not the index's: search passes it to `index.rerank`.)"""
    if "nprobe" in params:
        faiss.extract_index_ivf(index).nprobe = int(params["nprobe"])
    if "quantizer_efSearch" in params:
        faiss.downcast_index(faiss.extract_index_ivf(index).quantizer).hnsw.efSearch = int(params["quantizer_efSearch"])
    if "efSearch" in params:
        inner = index.index if isinstance(index, faiss.IndexIDMap) else index
        faiss.downcast_index(inner).hnsw.efSearch = int(params["efSearch"])
