"""Sharded IVF builds: train once on a sample, fill one shard per rank, merge the shards.

For collections embedded by several processes (one `torch.distributed` rank or one
machine per shard) and for collections whose vectors do not fit in RAM. Legend: M
database size, D embedding dim, S vectors in one shard.

    train_ivf(sample (S', D), key, out_path)          -> trained, empty IVF index (also written to out_path)
    fill_shard(trained_path, xb (S, D), ids (S,), out_path) -> vectors added to a copy of it, written to out_path
    merge_shards(trained_path, shard_paths)           -> one in-RAM index holding every shard (`IndexIVF.merge_from`)
    merge_shards(trained_path, shard_paths, ivfdata)  -> the same index, its inverted lists in the file `ivfdata`
                                                         (`faiss.OnDiskInvertedLists`, via faiss.contrib.ondisk)
    read_ondisk(path)                                 -> an on-disk index, lists memory-mapped read-only
    concat_npy(paths, out_path)                       -> the shards' (S, D) .npy files as one (M, D) .npy,
                                                         streamed (never all in RAM)

Every shard is filled from the same trained quantizer and PQ, so the merged index holds
exactly the codes a single-process `add` of all the vectors would (tests/index/test_shards.py).
An on-disk index records the .ivfdata path it was written with; `read_ondisk` uses
IO_FLAG_ONDISK_SAME_DIR, so the index folder can be renamed (the atomic swap in
`index.store.write_index_dir`) as long as the .ivfdata stays beside index.faiss.
"""
from __future__ import annotations

import os
from pathlib import Path

import faiss
import numpy as np
from faiss.contrib.ondisk import merge_ondisk

from encoders.files import atomic_write_with
from index.factory import IndexKeyError, apply_search_params, default_search_params, nlist_of, trained_index
from index.faiss_index import as_vectors

IVFDATA = "index.ivfdata"  # the on-disk inverted lists, beside index.faiss


class ShardError(ValueError):
    """Shard files that cannot be filled or merged as asked."""


def write_index_file(index: faiss.Index, path: str | os.PathLike) -> None:
    """faiss.write_index, atomically (`encoders.store.atomic_write_with`): a killed rank leaves no half file."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_with(path, lambda tmp: faiss.write_index(index, str(tmp)))


def train_ivf(sample: np.ndarray, key: str, out_path: str | os.PathLike | None = None) -> faiss.Index:
    """Train an empty inner-product IVF index (`key`, e.g. "IVF1024,PQ32") on all of float32 (S', D) `sample`.

    The sample should be drawn from all shards (`sample_rows`) and L2-normalised like the
    database. Trained as `build_index` trains (`index.factory.trained_index`: GPU when faiss-gpu
    sees one, a CPU index returned), with the default search knobs for its key.
    """
    if nlist_of(key) is None:
        raise IndexKeyError(f"index key {key!r}: a sharded build needs an IVF index (e.g. IVF1024,PQ32)")
    sample = as_vectors(sample, normalise=False)
    index = trained_index(sample, key, train_size=len(sample))
    apply_search_params(index, default_search_params(key))
    if out_path is not None:
        write_index_file(index, out_path)
    return index


def sample_rows(shard_sizes: list[int], size: int, seed: int = 0) -> list[np.ndarray]:
    """Per shard, sorted row numbers of a uniform sample of `size` rows over all shards."""
    total = sum(shard_sizes)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(total, min(size, total), replace=False))
    starts = np.cumsum([0] + list(shard_sizes))
    return [rows[(rows >= a) & (rows < b)] - a for a, b in zip(starts[:-1], starts[1:])]


def fill_shard(trained_path: str | os.PathLike, xb: np.ndarray, ids: np.ndarray, out_path: str | os.PathLike,
               chunk: int = 65_536) -> int:
    """Add float32 (S, D) L2-normalised `xb` under int64 `ids` (S,) to a copy of the trained index; write it.

    `xb` may be a memory-mapped .npy: it is read `chunk` rows at a time. Returns S.
    """
    index = faiss.read_index(str(trained_path))
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if ids.shape != (len(xb),):
        raise ShardError(f"{len(ids)} ids for {len(xb)} vectors")
    if index.ntotal:
        raise ShardError(f"{trained_path} already holds {index.ntotal} vectors, not an empty trained index")
    for a in range(0, len(xb), chunk):
        index.add_with_ids(as_vectors(xb[a:a + chunk], index.d, normalise=False), ids[a:a + chunk])
    write_index_file(index, out_path)
    return index.ntotal


def merge_shards(trained_path: str | os.PathLike, shard_paths: list[str | os.PathLike],
                 ivfdata: str | os.PathLike | None = None) -> faiss.Index:
    """One IVF index holding every shard's vectors and ids (in shard order within each list).

    `ivfdata=None`: an ordinary in-RAM index (peak memory: the result plus one shard).
    Else the inverted lists are written to the file `ivfdata` (OnDiskInvertedLists) and
    only the coarse quantizer and PQ tables stay in RAM; shards are memory-mapped while
    merging, so the collection never needs to fit in RAM. Write the result with
    faiss.write_index next to `ivfdata`, and read it back with `read_ondisk`.
    """
    if not shard_paths:
        raise ShardError("no shards to merge")
    index = faiss.read_index(str(trained_path))
    if index.ntotal:
        raise ShardError(f"{trained_path} already holds {index.ntotal} vectors, not an empty trained index")
    if ivfdata is not None:
        if Path(ivfdata).exists():
            raise ShardError(f"{ivfdata} exists; on-disk lists are merged into a new file")
        merge_ondisk(index, [str(p) for p in shard_paths], str(ivfdata))
        return index
    ivf = faiss.extract_index_ivf(index)
    for p in shard_paths:
        shard = faiss.read_index(str(p))
        ivf.merge_from(faiss.extract_index_ivf(shard), 0)  # add_id 0: keep the shard's own ids
    index.ntotal = ivf.ntotal
    return index


def read_ondisk(path: str | os.PathLike) -> faiss.Index:
    """An index whose inverted lists live in a .ivfdata file in the same folder, mapped read-only.

    Only the coarse quantizer, PQ tables and list sizes are read into RAM; list contents
    are paged in by the OS as queries touch them.
    """
    return faiss.read_index(str(path), faiss.IO_FLAG_ONDISK_SAME_DIR | faiss.IO_FLAG_READ_ONLY)


def concat_npy(paths: list[str | os.PathLike], out_path: str | os.PathLike, chunk: int = 65_536) -> tuple[int, ...]:
    """Row-wise concatenation of same-dtype .npy files into `out_path`, `chunk` rows at a time. Returns its shape."""
    parts = [np.load(p, mmap_mode="r", allow_pickle=False) for p in paths]
    if not parts:
        raise ShardError("no arrays to concatenate")
    if len({(a.dtype, a.shape[1:]) for a in parts}) != 1:
        raise ShardError(f"shards disagree in dtype or row shape: {[(str(a.dtype), a.shape) for a in parts]}")
    shape = (sum(len(a) for a in parts),) + parts[0].shape[1:]
    out = np.lib.format.open_memmap(out_path, mode="w+", dtype=parts[0].dtype, shape=shape)
    row = 0
    for a in parts:
        for s in range(0, len(a), chunk):
            out[row:row + len(a[s:s + chunk])] = a[s:s + chunk]
            row += len(a[s:s + chunk])
    out.flush()
    del out
    return shape
