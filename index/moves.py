"""Move the extra copies of duplicate groups out of the data folder, listed in a manifest, and back.

    plan_moves(data_root, target, items, groups, keepers) -> [Move]: each group's non-keepers, checked;
                                                  nothing is touched (refusals raise MoveRefused)
    move_files(plan, manifest_path, ...)        -> moves them; the manifest lists every file BEFORE it moves
    undo_moves(manifest_path)                   -> every listed file back where it was, byte-identical

Never deletes a file and never overwrites one. The manifest (JSON, written atomically) is
written with every planned move before the first one, and rewritten after each, so a process
killed at any point (SIGKILL: no cleanup) leaves every file either where it was or moved and
listed; `undo_moves` reads where each file is from the disk, not from the manifest's states,
so it restores either way and can itself be rerun after a kill.
A move is a rename (same filesystem); across filesystems the file is copied to a temp name
beside its destination, fsynced, renamed into place, and only then unlinked from the data folder.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from encoders.files import atomic_write_json, crash_point, file_sha256, fsync_dir
from index.manifest import Item, is_safe_relative

MANIFEST_FORMAT = "selfsup-duplicate-moves"


class MoveRefused(ValueError):
    """A move or undo that would leave the data folder, overwrite a file, or act on changed files."""


@dataclass
class Move:
    src: str  # relative to the data root (POSIX)
    dest: str  # relative to the target folder (POSIX): the same relative path
    sha256: str
    size: int
    keeper: str  # the file of its group that stays, relative to the data root
    state: str = "planned"  # planned -> moved -> restored (informative: undo reads the disk)


def inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def plan_moves(data_root: str | os.PathLike, target: str | os.PathLike, items: list[Item],
               groups: list[list[int]], keepers: list[int]) -> list[Move]:
    """Every image of each group but its keeper, to TARGET/<its path under the data root>.

    Refused (MoveRefused, nothing touched): a target inside the data folder, a destination that
    already exists, a source that is gone, is a symlink, or changed since it was indexed
    (other size or sha256: the duplicates were judged on other bytes).
    """
    root, target = Path(data_root), Path(target)
    if inside(target, root):
        raise MoveRefused(f"target {target} is inside the data folder {root}; choose a folder outside it")
    if target.exists() and not target.is_dir():
        raise MoveRefused(f"target {target} exists and is not a folder")
    plan, problems = [], []
    for rows, keep in zip(groups, keepers):
        for r in rows:
            if r == keep:
                continue
            it = items[r]
            src, dest = root / it.path, target / it.path
            if not is_safe_relative(it.path):
                problems.append(f"{it.path}: not a path inside the data folder")
            elif src.is_symlink() or not src.is_file():
                problems.append(f"{it.path}: {'a symlink' if src.is_symlink() else 'no longer there'}")
            elif src.stat().st_size != it.size or file_sha256(src) != it.sha256:
                problems.append(f"{it.path}: changed since it was indexed")
            elif dest.exists() or dest.is_symlink():
                problems.append(f"{dest}: already exists")
            else:
                plan.append(Move(it.path, it.path, it.sha256, it.size, items[keep].path))
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise MoveRefused(f"{len(problems)} file(s) cannot be moved, so none is: " + "; ".join(problems[:5]) + more)
    return plan


def _relocate(src: Path, dest: Path) -> None:
    """Move one file without ever overwriting `dest`: a rename, or across filesystems copy + fsync +
    rename + unlink of the source (a kill before the unlink leaves both; undo keeps the source)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() or dest.is_symlink():
        raise MoveRefused(f"{dest} appeared while moving; nothing is overwritten")
    try:
        os.rename(src, dest)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        tmp = dest.with_name(f".{dest.name}.moving")
        shutil.copy2(src, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.rename(tmp, dest)
        fsync_dir(dest.parent)
        os.unlink(src)
    fsync_dir(dest.parent)
    fsync_dir(src.parent)


def _write(manifest_path: Path, record: dict, plan: list[Move]) -> None:
    atomic_write_json(manifest_path, {**record, "moves": [asdict(m) for m in plan]})


def move_files(plan: list[Move], data_root: str | os.PathLike, target: str | os.PathLike,
               manifest_path: str | os.PathLike, index_dir: str | os.PathLike | None = None) -> int:
    """Carry out `plan` (from `plan_moves`): the manifest first, then each file, the manifest
    updated after each. Crash points "moves:before:N" and "moves:after:N" (N = 1, 2, ...: the
    N-th file, before / after it moved, before the manifest says so). Returns files moved."""
    root, target, manifest_path = Path(data_root).resolve(), Path(target).resolve(), Path(manifest_path)
    if manifest_path.exists():
        raise MoveRefused(f"{manifest_path} already exists; it is not overwritten")
    if any((target / m.dest).resolve() == manifest_path.resolve() for m in plan):
        raise MoveRefused(f"{manifest_path} is where a moved file would go; choose another name")
    target.mkdir(parents=True, exist_ok=True)
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    record = {"format": MANIFEST_FORMAT, "version": 1, "data_root": str(root), "target": str(target),
              "index": None if index_dir is None else str(Path(index_dir).resolve()),
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    _write(manifest_path, record, plan)  # every file is listed before any moves
    for n, m in enumerate(plan, 1):
        crash_point(f"moves:before:{n}")
        _relocate(root / m.src, target / m.dest)
        crash_point(f"moves:after:{n}")
        m.state = "moved"
        _write(manifest_path, record, plan)
    return len(plan)


def read_moves(manifest_path: str | os.PathLike) -> tuple[dict, list[Move]]:
    """A manifest written by `move_files`, checked. Raises MoveRefused naming the problem."""
    path = Path(manifest_path)
    try:
        d = json.loads(path.read_text())
        if d.get("format") != MANIFEST_FORMAT:
            raise ValueError("not a move manifest")
        moves = [Move(**{k: m[k] for k in ("src", "dest", "sha256", "size", "keeper", "state")}) for m in d["moves"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise MoveRefused(f"{path} is not a readable move manifest ({e})") from None
    bad = [m.src for m in moves if not (is_safe_relative(m.src) and is_safe_relative(m.dest))]
    if bad:
        raise MoveRefused(f"{path} lists paths outside its folders: {bad[:3]}")
    return {k: v for k, v in d.items() if k != "moves"}, moves


def undo_moves(manifest_path: str | os.PathLike) -> dict:
    """Put every file listed in a move manifest back at its place in the data folder.

    Where each file is, is read from the disk: at its destination only (moved) -> renamed back,
    after checking its bytes are the ones that were moved; at its source (never moved, or
    already restored) -> left. Never overwrites: a file whose source and destination both
    exist is left as it is and reported. Crash points "undo:after:N". Returns counts and problems.
    """
    record, moves = read_moves(manifest_path)
    root, target = Path(record["data_root"]), Path(record["target"])
    counts = {"restored": 0, "in_place": 0, "problems": []}
    for n, m in enumerate(reversed(moves), 1):
        src, dest = root / m.src, target / m.dest
        if src.exists() or src.is_symlink():
            counts["in_place"] += 1
            if dest.exists():
                counts["problems"].append(f"{m.src}: also at {dest}; left as it is")
        elif not dest.is_file():
            counts["problems"].append(f"{m.src}: not at {dest} any more")
        elif file_sha256(dest) != m.sha256:
            counts["problems"].append(f"{dest}: changed since it was moved; not restored")
        else:
            _relocate(dest, src)
            crash_point(f"undo:after:{n}")
            counts["restored"] += 1
            m.state = "restored"
            _write(Path(manifest_path), record, moves)
    return counts
