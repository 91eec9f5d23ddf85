"""An index folder on disk, written atomically, and the small API the app uses to read it.

INDEX_DIR holds
    index.faiss      the FAISS index (inner product, stable int64 ids: IVF natively, else IndexIDMap2)
    embeddings.npy   float32 (M, D), L2-normalised, one row per manifest item, same order
    ids.npy          int64 (M,), the FAISS id of each row
    manifest.json    `Manifest`: index key, metric, dim, count, encoder path + hash, and per
                     image its path relative to the data root, size, mtime, sha256 and id
    index.ivfdata    only for `layout["invlists"] == "ondisk"` (a sharded build, `index.shards`):
                     the inverted lists, memory-mapped read-only when loaded; embeddings.npy
                     is then memory-mapped too, so a larger-than-RAM collection loads in little RAM

App-facing API:
    load_index(index_dir) -> LoadedIndex(index, embeddings, ids, manifest)
    search_vectors(loaded, queries (N, D), k) -> per query list[Hit(path, score, id, row)]
    LoadedIndex.row_of(path) -> row of an indexed image (for "more like this")
    LoadedIndex.absolute(hit.path) -> the image file on disk
    LoadedIndex.image_file(path) -> the same, refusing paths not in the manifest or outside the root

`write_index_dir` builds the new folder in a temp sibling, fsyncs it, then swaps it in
with one atomic rename (RENAME_EXCHANGE on Linux), so a build that dies at any point
leaves the previous INDEX_DIR intact and loadable.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from encoders.files import check_space, crash_point, file_sha256, fsync_dir, write_failure
from index.factory import on_gpu
from index.faiss_index import index_bytes, neighbours, search
from index.manifest import MANIFEST, IndexLoadError, Item, Manifest, read_manifest  # noqa: F401 (re-exported)
from index.rerank import RowMap, search_reranked
from index.shards import IVFDATA, concat_npy, merge_shards, read_ondisk

INDEX_FILE = "index.faiss"
CLUSTERS_FILE = "clusters.json"  # index.cluster_report.CLUSTERS, written beside the index by pipelines.cluster
EMBEDDINGS = "embeddings.npy"
IDS = "ids.npy"


@dataclass
class Hit:
    path: str  # relative to manifest.data_root
    score: float  # cosine similarity
    id: int
    row: int  # row in LoadedIndex.embeddings


@dataclass
class LoadedIndex:
    """Everything the app needs; `index` is only read (never re-parameterised) after loading."""

    index: faiss.Index
    embeddings: np.ndarray  # float32 (M, D)
    ids: np.ndarray  # int64 (M,)
    manifest: Manifest
    directory: Path
    build_id: str = ""  # sha256 of its manifest.json: which build this is (clusters.json records it)
    stamp: int = 0  # build_stamp of the folder when it was read

    def __post_init__(self):
        self.row_map = RowMap(self.ids)  # id -> row, for hits and exact re-ranking
        self._row_of_path = {it.path: r for r, it in enumerate(self.manifest.items)}

    def row_of(self, path: str) -> int:
        """Row of an indexed image given its path relative to the data root (or absolute)."""
        p = Path(path)
        if p.is_absolute():
            try:
                path = p.resolve().relative_to(Path(self.manifest.data_root).resolve()).as_posix()
            except ValueError:
                raise IndexLoadError(f"{path} is not under the indexed folder {self.manifest.data_root}") from None
        if path not in self._row_of_path:
            raise IndexLoadError(f"{path} is not in the index {self.directory}")
        return self._row_of_path[path]

    def absolute(self, path: str) -> Path:
        """Where an indexed image (path relative to the data root) is on disk."""
        return Path(self.manifest.data_root) / path

    def image_file(self, path: str) -> Path:
        """The file of an indexed image, only if `path` is in the manifest and stays inside the data root.

        This is the one way the app turns a name into a file it serves.
        """
        if path not in self._row_of_path:
            raise IndexLoadError(f"{path} is not in the index {self.directory}")
        root = Path(self.manifest.data_root).resolve()
        try:
            f = (root / path).resolve()
        except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13)
            raise IndexLoadError(f"{path} cannot be resolved (symlink loop)") from None
        if not f.is_relative_to(root):
            raise IndexLoadError(f"{path} points outside the indexed folder {root}")
        return f

    def find_paths(self, text: str, limit: int = 20) -> list[str]:
        """Indexed paths matching `text`: an exact path alone, else up to `limit` containing it (any case)."""
        text = text.strip()
        if text in self._row_of_path:
            return [text]
        low = text.lower()
        out = []
        for it in self.manifest.items:
            if low and low in it.path.lower():
                out.append(it.path)
                if len(out) == limit:
                    break
        return out

    def hits(self, scores: np.ndarray, ids: np.ndarray) -> list[Hit]:
        rows = self.row_map.rows(np.asarray(ids, np.int64)).tolist()
        return [Hit(self.manifest.items[r].path, float(s), int(i), r) for s, i, r in zip(scores, ids, rows)]


def build_stamp(index_dir: str | os.PathLike) -> int:
    """Changes whenever the index folder is rebuilt or updated (a new folder swapped in) or
    `pipelines.cluster` saves new clusters beside it; 0 if there is no index. Cheap (three stats):
    read it once per request and load with it as the cache key."""
    index_dir = Path(index_dir)
    parts = []
    for p in (index_dir, index_dir / MANIFEST, index_dir / CLUSTERS_FILE):
        try:
            st = os.stat(p)
            parts += [st.st_ino, st.st_mtime_ns]
        except OSError:
            if p != index_dir / CLUSTERS_FILE:
                return 0
            parts += [0, 0]
    return hash(tuple(parts)) & ((1 << 63) - 1) or 1


def load_index(index_dir: str | os.PathLike, use_gpu: bool = True, attempts: int = 5) -> LoadedIndex:
    """Read an index folder and check that its parts agree. Raises IndexLoadError.

    All parts come from one build: the folder is held open while it is read, and if a rebuild
    or update swapped a new folder in meanwhile (`write_index_dir`), it is read again. So a
    reader gets the old index or the new one, whole, never parts of both."""
    index_dir = Path(index_dir)
    for _ in range(attempts):
        try:
            fd = os.open(index_dir, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError:
            return _load_once(index_dir, use_gpu, build_stamp(index_dir))  # raises the reason it is missing
        try:
            stamp = build_stamp(index_dir)
            try:
                loaded = _load_once(index_dir, use_gpu, stamp)
            except IndexLoadError:
                if not _replaced(index_dir, fd):
                    raise
                continue
            if not _replaced(index_dir, fd):
                return loaded
        finally:
            os.close(fd)  # held open, its inode cannot be reused by the next build: the check is exact
    raise IndexLoadError(f"{index_dir} was replaced {attempts} times while it was read; try again")


def _replaced(index_dir: Path, fd: int) -> bool:
    """Whether `index_dir` is no longer the folder open as `fd` (a new build was swapped in)."""
    try:
        return os.stat(index_dir).st_ino != os.fstat(fd).st_ino
    except OSError:
        return True


def _load_once(index_dir: Path, use_gpu: bool, stamp: int) -> LoadedIndex:
    m = read_manifest(index_dir)
    ondisk = m.layout.get("invlists") == "ondisk"
    for name in (INDEX_FILE, EMBEDDINGS, IDS) + ((IVFDATA,) if ondisk else ()):
        if not (index_dir / name).is_file():
            raise IndexLoadError(f"{index_dir / name} is missing; rebuild the index with pipelines.build_index")
    try:
        index = read_ondisk(index_dir / INDEX_FILE) if ondisk else faiss.read_index(str(index_dir / INDEX_FILE))
        # memory-mapped where the index does not hold the vectors itself (on-disk lists, compressed codes):
        # search reads only the candidates' rows, and RAM stays near the size of the codes
        mapped = ondisk or "rerank" in m.search_params
        emb = np.load(index_dir / EMBEDDINGS, allow_pickle=False, mmap_mode="r" if mapped else None)
        ids = np.load(index_dir / IDS, allow_pickle=False)
    except (RuntimeError, ValueError, OSError, EOFError) as e:  # EOFError: an empty .npy
        raise IndexLoadError(f"{index_dir} holds an unreadable index file ({' '.join(str(e).split())[:150]}); "
                             f"rebuild the index") from None
    if emb.dtype != np.float32 or emb.ndim != 2 or ids.dtype != np.int64 or ids.shape != (len(emb),):
        raise IndexLoadError(f"{index_dir}: embeddings/ids have unexpected types or shapes; rebuild the index")
    if index.d != m.dim or emb.shape[1] != m.dim:
        raise IndexLoadError(f"{index_dir}: index dim {index.d} / embeddings dim {emb.shape[1]} do not match the "
                             f"manifest's {m.dim}; rebuild the index")
    if not (index.ntotal == len(emb) == m.count):
        raise IndexLoadError(f"{index_dir}: index holds {index.ntotal} vectors, embeddings {len(emb)}, manifest "
                             f"{m.count}; rebuild the index")
    if [it.id for it in m.items] != ids.tolist():
        raise IndexLoadError(f"{index_dir}: ids.npy does not match the manifest; rebuild the index")
    try:
        build_id = file_sha256(index_dir / MANIFEST)[:16]
    except OSError as e:
        raise IndexLoadError(f"{index_dir / MANIFEST} vanished while it was read ({e.strerror})") from None
    if use_gpu and not ondisk:  # on-disk lists stay on disk: copying them to the GPU would load them all
        index = on_gpu(index)
    return LoadedIndex(index, np.ascontiguousarray(emb), ids, m, index_dir, build_id, stamp)


def search_vectors(loaded: LoadedIndex, queries: np.ndarray, k: int = 10,
                   exclude_rows: list[int] | None = None) -> list[list[Hit]]:
    """float32 (N, D) query vectors -> for each, up to k Hits, best first (exact cosine scores: a
    compressed index's candidates are re-ranked with the stored embeddings, `index.rerank`).

    `exclude_rows[n]` (e.g. the query's own row when searching by an indexed image) is
    left out of query n's results, which then still has k hits when the index has them.
    """
    if queries.ndim != 2 or queries.shape[1] != loaded.manifest.dim:
        raise IndexLoadError(f"query vectors have dimension {queries.shape[-1]}, the index {loaded.directory} "
                             f"has {loaded.manifest.dim}; use the encoder it was built with")
    extra = 1 if exclude_rows is not None else 0
    rerank = loaded.manifest.search_params.get("rerank")
    if rerank:  # compressed codes: candidates re-scored exactly from embeddings.npy
        D, I = search_reranked(loaded.index, queries, k + extra, loaded.embeddings, loaded.row_map, int(rerank))
    else:
        D, I = search(loaded.index, queries, k + extra)
    out = []
    for n, (d, i) in enumerate(neighbours(D, I)):
        hits = loaded.hits(d, i)
        if exclude_rows is not None:
            hits = [h for h in hits if h.row != exclude_rows[n]]
        out.append(hits[:k])
    return out


# ---- writing: temp sibling folder, fsync, atomic swap ----

def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    rc = renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE)
    return rc == 0


def stale_temp_dirs(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.tmp-*"))


@dataclass
class ShardMerge:
    """Filled shard indexes (`index.shards.fill_shard`) to merge into the new folder's index.faiss,
    with on-disk inverted lists (index.ivfdata beside it) if `ondisk`, and the shards' embeddings.npy
    files to stream into its embeddings.npy."""

    trained: Path
    filled: list[Path]
    embeddings: list[Path]
    ondisk: bool = False


def folder_bytes(ids: np.ndarray, index: faiss.Index | None, embeddings: np.ndarray | None,
                 shards: ShardMerge | None) -> int:
    """About what the new index folder will take on disk (the manifest aside)."""
    if shards is not None:  # the merged lists (in index.faiss or index.ivfdata) are about the filled shards'
        return sum(p.stat().st_size for p in [shards.trained, *shards.filled, *shards.embeddings])
    return embeddings.nbytes + ids.nbytes + (index_bytes(index) if index is not None else 0)


def _write_contents(tmp: Path, manifest: Manifest, ids: np.ndarray, index: faiss.Index | None,
                    embeddings: np.ndarray | None, shards: ShardMerge | None) -> None:
    """Every file of an index folder into `tmp`, each fsynced."""
    if shards is not None:
        index = merge_shards(shards.trained, shards.filled, tmp / IVFDATA if shards.ondisk else None)
        concat_npy(shards.embeddings, tmp / EMBEDDINGS)
    else:
        with open(tmp / EMBEDDINGS, "wb") as f:
            np.save(f, embeddings, allow_pickle=False)
    if index is not None:
        faiss.write_index(index, str(tmp / INDEX_FILE))
    with open(tmp / IDS, "wb") as f:
        np.save(f, ids, allow_pickle=False)
    manifest.created = manifest.created or time.strftime("%Y-%m-%dT%H:%M:%S%z")
    (tmp / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=1) + "\n")
    for p in tmp.iterdir():
        with open(p, "rb") as f:
            os.fsync(f.fileno())
    os.chmod(tmp, 0o755)
    fsync_dir(tmp)


def write_index_dir(out: str | os.PathLike, manifest: Manifest, ids: np.ndarray, *,
                    index: faiss.Index | None = None, embeddings: np.ndarray | None = None,
                    shards: ShardMerge | None = None) -> None:
    """Write a complete index folder at `out`, replacing any previous one atomically.

    Its contents: `manifest`, int64 `ids` (M,), and either `index` (a faiss.Index; None for a
    shard folder of `pipelines.build_index --shard`) with float32 (M, D) `embeddings`, or
    `shards` to merge (the index and embeddings.npy are then made inside the new folder,
    streamed from the shards: on-disk lists must sit beside index.faiss).

    The crash points "index:before_swap" (all written and fsynced) and "index:after_swap"
    (before the previous index is deleted) are where the crash-safety tests kill a build.
    A rerun deletes what a killed one left. A disk without room for the new folder (checked
    first, while the previous one is still there) or one that fills up or fails while writing
    raises `encoders.files.WriteFailed`; the partial folder is removed and `out` is untouched.
    """
    if (embeddings is None) == (shards is None):
        raise ValueError("give either embeddings (and an index) or shards to merge")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and not (out / MANIFEST).is_file() and any(out.iterdir()):
        raise IndexLoadError(f"{out} exists and is not an index folder; it is not replaced")
    for stale in stale_temp_dirs(out):  # left by a build that died
        shutil.rmtree(stale, ignore_errors=True)
    needed = folder_bytes(ids, index, embeddings, shards) + len(json.dumps(manifest.to_json(), indent=1))
    check_space(out, needed)
    tmp = None
    try:
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
        _write_contents(tmp, manifest, ids, index, embeddings, shards)
        crash_point("index:before_swap")
        if out.exists():
            if not _exchange(tmp, out):  # fallback: two renames (a short window without `out`)
                old = tmp.with_name(tmp.name + "-old")
                os.rename(out, old)
                os.rename(tmp, out)
                tmp = old
            crash_point("index:after_swap")
            shutil.rmtree(tmp, ignore_errors=True)  # now the previous index
        else:
            os.rename(tmp, out)
        fsync_dir(out.parent)
    except BaseException as e:
        failed = write_failure(e, out, needed)
        if tmp is not None and tmp.exists() and tmp != out:
            shutil.rmtree(tmp, ignore_errors=True)
        if failed is not None:
            raise failed from e
        raise
