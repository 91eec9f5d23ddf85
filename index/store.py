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
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

import faiss
import numpy as np

from index.faiss_index import METRIC, _gpu_or_cpu, neighbours, search
from index.shards import IVFDATA, read_ondisk

MANIFEST = "manifest.json"
INDEX_FILE = "index.faiss"
EMBEDDINGS = "embeddings.npy"
IDS = "ids.npy"
FORMAT_VERSION = 1


class IndexLoadError(ValueError):
    """An index folder that cannot be used as asked; the message says what to do."""


@dataclass
class Item:
    """One indexed image."""

    path: str  # relative to the data root, POSIX separators
    size: int
    mtime_ns: int
    sha256: str
    id: int


@dataclass
class Manifest:
    index_key: str
    dim: int
    count: int
    data_root: str
    encoder: dict  # {"path": RUN_DIR, "sha256": of encoder.safetensors, "config": EncoderConfig}
    items: list[Item]
    metric: str = METRIC
    search_params: dict = field(default_factory=dict)
    next_id: int = 0
    skipped: dict = field(default_factory=dict)  # SkipReport.as_dict()
    build: dict = field(default_factory=dict)  # the BuildConfig that made it
    layout: dict = field(default_factory=dict)  # {} in RAM; {"invlists": "ondisk", "ivfdata": IVFDATA, "shards": N}
    created: str = ""
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict, where: str) -> "Manifest":
        """Validate a parsed manifest (keys, types, safe relative paths, unique ids);
        raises IndexLoadError naming the first problem."""
        def bad(problem: str) -> IndexLoadError:
            return IndexLoadError(f"{where} {problem}; rebuild the index with pipelines.build_index")

        if not isinstance(d, dict):
            raise bad("is not a JSON object")
        required = {"index_key", "dim", "count", "data_root", "encoder", "items"}
        missing = sorted(required - d.keys())
        if missing:
            raise bad(f"lacks {', '.join(missing)}")
        if d.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
            raise bad(f"has format version {d.get('format_version')!r:.20}, this code reads {FORMAT_VERSION}")
        if d.get("metric", METRIC) != METRIC:
            raise bad(f"has metric {d.get('metric')!r:.20}, not {METRIC!r}")
        known = {k: v for k, v in d.items() if k in MANIFEST_TYPES}
        _check_types(known, MANIFEST_TYPES, bad)
        if known["dim"] < 1 or known["count"] < 0:
            raise bad(f"has dim {known['dim']} and count {known['count']}")
        if not all(isinstance(known["encoder"].get(k), str) for k in ("path", "sha256")):
            raise bad("does not record its encoder's path and hash")
        items = []
        for n, it in enumerate(known["items"]):
            if not isinstance(it, dict):
                raise bad(f"item {n} is not a JSON object")
            _check_types(it, ITEM_TYPES, lambda problem: bad(f"item {n}: {problem}"), required=True)
            if not is_safe_relative(it["path"]):
                raise bad(f"item {n} has path {it['path']!r:.80}, which is not inside the data root")
            items.append(Item(**{k: it[k] for k in ITEM_TYPES}))
        if known["count"] != len(items):
            raise bad(f"says count {known['count']} but lists {len(items)} images")
        if len({it.path for it in items}) != len(items) or len({it.id for it in items}) != len(items):
            raise bad("lists an image path or id twice")
        return cls(**{**known, "items": items})


MANIFEST_TYPES = {"index_key": str, "dim": int, "count": int, "data_root": str, "encoder": dict, "items": list,
                  "metric": str, "search_params": dict, "next_id": int, "skipped": dict, "build": dict,
                  "layout": dict, "created": str, "format_version": int}
ITEM_TYPES = {"path": str, "size": int, "mtime_ns": int, "sha256": str, "id": int}


def _check_types(d: dict, kinds: dict, bad, required: bool = False) -> None:
    """Every key of `kinds` present in `d` (all of them if `required`) has that JSON type (a bool is no int)."""
    for k, kind in kinds.items():
        if k not in d:
            if required:
                raise bad(f"lacks {k}")
            continue
        v = d[k]
        if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
            raise bad(f"has {k} of type {type(v).__name__}, not {kind.__name__}")


def is_safe_relative(path: str) -> bool:
    """A non-empty relative POSIX path that stays below its root lexically (no '..', not absolute)."""
    p = PurePosixPath(path)
    return bool(path) and "\x00" not in path and not p.is_absolute() and ".." not in p.parts


def read_manifest(index_dir: str | os.PathLike) -> Manifest:
    """INDEX_DIR/manifest.json, validated. Raises IndexLoadError with what to do."""
    index_dir = Path(index_dir)
    path = index_dir / MANIFEST
    if not index_dir.is_dir():
        raise IndexLoadError(f"--index {index_dir}: no such folder; build one with "
                             f"`python -m pipelines.build_index --data DIR --encoder RUN_DIR --out {index_dir}`")
    if not path.is_file():
        raise IndexLoadError(f"{path} is missing; {index_dir} is not an index folder (rebuild it with pipelines.build_index)")
    try:
        d = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise IndexLoadError(f"{path} is corrupt ({e}); rebuild the index with pipelines.build_index") from None
    return Manifest.from_json(d, str(path))


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

    def __post_init__(self):
        self._row_of_id = {int(i): r for r, i in enumerate(self.ids)}
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
        rows = [self._row_of_id[int(i)] for i in ids]
        return [Hit(self.manifest.items[r].path, float(s), int(i), r) for s, i, r in zip(scores, ids, rows)]


def load_index(index_dir: str | os.PathLike, use_gpu: bool = True) -> LoadedIndex:
    """Read an index folder and check that its parts agree. Raises IndexLoadError."""
    index_dir = Path(index_dir)
    m = read_manifest(index_dir)
    ondisk = m.layout.get("invlists") == "ondisk"
    for name in (INDEX_FILE, EMBEDDINGS, IDS) + ((IVFDATA,) if ondisk else ()):
        if not (index_dir / name).is_file():
            raise IndexLoadError(f"{index_dir / name} is missing; rebuild the index with pipelines.build_index")
    try:
        index = read_ondisk(index_dir / INDEX_FILE) if ondisk else faiss.read_index(str(index_dir / INDEX_FILE))
        emb = np.load(index_dir / EMBEDDINGS, allow_pickle=False, mmap_mode="r" if ondisk else None)
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
    if use_gpu and not ondisk:  # on-disk lists stay on disk: copying them to the GPU would load them all
        index = _gpu_or_cpu(index)
    return LoadedIndex(index, np.ascontiguousarray(emb), ids, m, index_dir)


def search_vectors(loaded: LoadedIndex, queries: np.ndarray, k: int = 10,
                   exclude_rows: list[int] | None = None) -> list[list[Hit]]:
    """float32 (N, D) query vectors -> for each, up to k Hits, best first (cosine scores).

    `exclude_rows[n]` (e.g. the query's own row when searching by an indexed image) is
    left out of query n's results, which then still has k hits when the index has them.
    """
    if queries.ndim != 2 or queries.shape[1] != loaded.manifest.dim:
        raise IndexLoadError(f"query vectors have dimension {queries.shape[-1]}, the index {loaded.directory} "
                             f"has {loaded.manifest.dim}; use the encoder it was built with")
    extra = 1 if exclude_rows is not None else 0
    D, I = search(loaded.index, queries, k + extra)
    out = []
    for n, (d, i) in enumerate(neighbours(D, I)):
        hits = loaded.hits(d, i)
        if exclude_rows is not None:
            hits = [h for h in hits if h.row != exclude_rows[n]]
        out.append(hits[:k])
    return out


# ---- writing: temp sibling folder, fsync, atomic swap ----

def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


def write_index_dir(out: str | os.PathLike, index, embeddings, ids: np.ndarray,
                    manifest: Manifest, before_swap=None, after_swap=None) -> None:
    """Write a complete index folder at `out`, replacing any previous one atomically.

    `index` is a faiss.Index, None (a shard folder of `pipelines.build_index --shard`:
    embeddings, ids and manifest only), or a function `index(tmp_dir) -> faiss.Index` that builds it
    inside the new folder (on-disk inverted lists: their .ivfdata must sit beside
    index.faiss). `embeddings` is a float32 (M, D) array, or a function
    `embeddings(path)` that writes embeddings.npy itself (streamed from shards).

    `before_swap(tmp_dir)` runs after everything is written and fsynced, before the swap;
    `after_swap(old_dir)` right after it, before the previous index is deleted (the
    crash-safety tests kill a build at these points). A rerun deletes what a killed one left.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and not (out / MANIFEST).is_file() and any(out.iterdir()):
        raise IndexLoadError(f"--out {out} exists and is not an index folder; choose another path")
    for stale in stale_temp_dirs(out):  # left by a build that died
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        if callable(index):
            index = index(tmp)
        if index is not None:
            faiss.write_index(index, str(tmp / INDEX_FILE))
        if callable(embeddings):
            embeddings(tmp / EMBEDDINGS)
        for name, arr in ((EMBEDDINGS, embeddings), (IDS, ids)):
            if callable(arr):
                continue
            with open(tmp / name, "wb") as f:
                np.save(f, arr, allow_pickle=False)
        manifest.created = manifest.created or time.strftime("%Y-%m-%dT%H:%M:%S%z")
        (tmp / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=1) + "\n")
        for p in tmp.iterdir():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o755)
        _fsync_dir(tmp)
        if before_swap is not None:
            before_swap(tmp)
        if out.exists():
            if not _exchange(tmp, out):  # fallback: two renames (a short window without `out`)
                old = tmp.with_name(tmp.name + "-old")
                os.rename(out, old)
                os.rename(tmp, out)
                tmp = old
            if after_swap is not None:
                after_swap(tmp)
            shutil.rmtree(tmp, ignore_errors=True)  # now the previous index
        else:
            os.rename(tmp, out)
        _fsync_dir(out.parent)
    except BaseException:
        if tmp.exists() and tmp != out:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
