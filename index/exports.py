"""Clusters and duplicates as files people can take away: CSV text and folders of links.

    clusters_csv(paths, labels, scores)     -> "path,cluster,score\\n..." (one row per image)
    named_duplicates(paths, hashes, found)  -> find_duplicates' rows turned into paths
    duplicates_csv(named)                   -> "group,kind,path,score\\n..." (one row per image of a group)
    move_plan_json(paths, found, index_dir) -> each group's keeper and the extras --move-extras would move
    write_cluster_folders(out, root, paths, labels, copy=False)  -> OUT/cluster_NN/<name> per image

The same functions serve `pipelines.cluster --export`, `pipelines.duplicates --export` and
the page's download buttons, so the files are identical whichever way they were made.

Paths are file names as the OS gives them, which need not be valid UTF-8. The CSV files are
UTF-8 with Python's `surrogateescape` (`csv_bytes`): a name that is not UTF-8 keeps its exact
bytes, and `read_csv_paths` (or `open(f, encoding="utf-8", errors="surrogateescape",
newline="")`) reads back the same path; commas, quotes and newlines are quoted by `csv`.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from encoders.files import atomic_write_bytes, check_space, write_failure

CLUSTER_COLUMNS = ("path", "cluster", "score")
DUPLICATE_COLUMNS = ("group", "kind", "path", "score")


def refuse_inside(path: str | os.PathLike | None, data_root: str | os.PathLike, what: str) -> None:
    """Raise ValueError if `path` (an export about to be written) lies inside the indexed data folder."""
    if path is not None and Path(path).resolve().is_relative_to(Path(data_root).resolve()):
        raise ValueError(f"{what} {path} is inside the indexed data folder {data_root}, which is only ever read; "
                         f"write it somewhere else")


def csv_bytes(text: str) -> bytes:
    """CSV text as the bytes of the file: UTF-8, names that are not UTF-8 as their own bytes."""
    return text.encode("utf-8", "surrogateescape")


def save_csv(path: str | os.PathLike, text: str) -> None:
    """Write CSV text atomically (`csv_bytes`), creating the parent folder."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, csv_bytes(text))


def read_csv_rows(path: str | os.PathLike) -> list[dict]:
    """The rows of a CSV written by `save_csv`, with each path exactly as it was written."""
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        return list(csv.DictReader(f))


def _csv(header: tuple[str, ...], rows) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def clusters_csv(paths: list[str], labels: np.ndarray, scores: np.ndarray) -> str:
    """One row per image: its path (relative to the data root), cluster and cosine to the centroid."""
    return _csv(CLUSTER_COLUMNS, ((p, int(c), f"{float(s):.4f}") for p, c, s in zip(paths, labels, scores)))


def named_duplicates(paths: list[str], hashes: list[str], found: dict) -> dict:
    """`index.duplicates.find_duplicates` output (rows) -> {"exact": [{sha256, paths}],
    "near": [{paths, pairs: [{a, b, score[, hamming]}]}]}, as pipelines.duplicates writes it;
    with `found["keepers"]` (`index.duplicates.with_keepers`) each group also names its keeper."""
    keepers = found.get("keepers", {})
    exact = [{"sha256": hashes[g[0]], "paths": [paths[r] for r in g]} for g in found["exact"]]
    near = []
    for g in found["near"]:
        dists = g.get("hamming") or [-1] * len(g["pairs"])
        pairs = [{"a": paths[i], "b": paths[j], "score": round(float(v), 4), **({"hamming": d} if d >= 0 else {})}
                 for (i, j, v), d in zip(g["pairs"], dists)]
        near.append({"paths": [paths[r] for r in g["rows"]], "pairs": pairs})
    for kind, groups in (("exact", exact), ("near", near)):
        for group, k in zip(groups, keepers.get(kind, [])):
            group["keeper"] = paths[k]
    return {"exact": exact, "near": near}


def duplicates_csv(named: dict) -> str:
    """One row per image of each group: group number, exact/near, path, and its best score in the
    group (1.0 for byte-identical files; for near groups the highest cosine of a pair it is in)."""
    rows = []
    for g, group in enumerate(named["exact"], 1):
        rows += [(g, "exact", p, "1.0000") for p in group["paths"]]
    for g, group in enumerate(named["near"], len(named["exact"]) + 1):
        best: dict[str, float] = {}
        for pair in group["pairs"]:
            for p in (pair["a"], pair["b"]):
                best[p] = max(best.get(p, -1.0), pair["score"])
        rows += [(g, "near", p, f"{best[p]:.4f}") for p in group["paths"]]
    return _csv(DUPLICATE_COLUMNS, rows)


def move_plan_json(paths: list[str], found: dict, index_dir: str) -> str:
    """The move plan of `index.duplicates.with_keepers` output as JSON text: per group the keeper
    and the extras that `pipelines.duplicates --move-extras TARGET` would move (nothing is moved
    by writing it)."""
    k = found["keepers"]
    groups = [{"keeper": paths[keep], "extras": [paths[r] for r in g if r != keep]}
              for g, keep in zip(k["groups"], k["group_keepers"])]
    return json.dumps({"index": index_dir, "files_to_move": sum(len(g["extras"]) for g in groups),
                       "how": f"python -m pipelines.duplicates --index {index_dir} --move-extras TARGET "
                              f"(TARGET outside the data folder; undo with --undo TARGET/moves-*.json)",
                       "groups": groups}, indent=1) + "\n"


NAME_MAX = 255  # bytes in one file name (Linux, macOS)


def flat_name(path: str) -> str:
    """An image's path as one file name, "/" as "__"; a name over NAME_MAX bytes keeps its start and
    end (the extension) around a hash of the whole path, so distinct paths stay distinct."""
    name = path.replace("/", "__")
    raw = os.fsencode(name)
    if len(raw) <= NAME_MAX:
        return name
    tag = hashlib.sha256(raw).hexdigest()[:16]
    stem, ext = os.path.splitext(raw)
    keep = NAME_MAX - len(tag) - 2 - len(ext[:32])
    return os.fsdecode(stem[:keep] + b"~" + tag.encode() + b"~" + ext[:32])


def write_cluster_folders(out: str | os.PathLike, root: str | os.PathLike, paths: list[str], labels: np.ndarray,
                          copy: bool = False) -> int:
    """OUT/cluster_NN/<path with / as __> for every image: a symlink to the original (or a copy).

    OUT must not exist yet; it is assembled in a temp folder beside it and renamed into place.
    Returns how many entries were written. Raises ValueError if OUT exists, and
    `encoders.files.WriteFailed` (nothing left behind) when the disk is or gets too full.
    """
    out, root = Path(out), Path(root)
    if out.exists():
        raise ValueError(f"{out} already exists; give a new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    needed = sum((root / p).stat().st_size for p in paths) if copy else 0
    check_space(out, needed)
    width = max(2, len(str(int(labels.max()) if len(labels) else 0)))
    tmp = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        for p, c in zip(paths, labels):
            folder = tmp / f"cluster_{int(c):0{width}d}"
            folder.mkdir(exist_ok=True)
            target = (root / p).resolve()
            dest = folder / flat_name(p)
            if copy:
                shutil.copy2(target, dest)
            else:
                dest.symlink_to(target)
        tmp.rename(out)
    except BaseException as e:
        failed = write_failure(e, out, needed or None)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if failed is not None:
            raise failed from e
        raise
    return len(paths)
