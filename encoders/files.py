"""Generic file helpers: atomic writes (readers see the old file or the new one), named
crash points for the crash-safety tests, and a file's sha256."""
from __future__ import annotations

import glob
import hashlib
import json
import os
import signal
import tempfile
from pathlib import Path

CRASH_ENV = "SSL_CRASH_AT"


def crash_point(name: str) -> None:
    """Die at once (SIGKILL: no cleanup, no flush) when the environment variable SSL_CRASH_AT
    equals `name`. Only the crash-safety tests set it (tests/pipelines/test_crash.py); the
    points are named where they are placed, e.g. "replace:checkpoint.pt", "index:before_swap"."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def atomic_write_with(path: str | os.PathLike, write) -> None:
    """`write(tmp_path)` into a temp file beside `path`, fsync it, then os.replace: readers
    see the old file or the new one, never half of one. Files get the usual 0644 mode.
    Temp files of `path` left by a writer that was killed are removed first."""
    path = Path(path)
    prefix = f".{path.name}."
    for stale in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        if "." not in stale.name[len(prefix):-len(".tmp")]:  # mkstemp's part; not another file's temp
            stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        crash_point(f"replace:{path.name}")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write_with(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a folder's entries (a rename, a new file) durable: fsync the folder itself."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
