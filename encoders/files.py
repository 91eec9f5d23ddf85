"""Generic file helpers: atomic writes (readers see the old file or the new one), named
crash points for the crash-safety tests, and a file's sha256.

A write that fails for lack of space or an I/O error raises `WriteFailed`, one line naming the
file, the free space and the space needed; the temp file is removed and the previous file is
left as it was (`atomic_write_with`). `check_space` refuses a write known to be too large
before anything is written.
"""
from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import signal
import tempfile
from pathlib import Path

CRASH_ENV = "SSL_CRASH_AT"
WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG, errno.EROFS)


class WriteFailed(OSError):
    """A file that could not be written: disk full, quota, read-only or failing disk. The message names
    the file, what went wrong, the free space on that disk and the space the write needs."""

    def __init__(self, path: str | os.PathLike, cause: str, free: int, needed: int | None, code: int = errno.ENOSPC):
        need = f"about {human_bytes(needed)} needed" if needed else "more needed"
        super().__init__(code, f"cannot write {os.fsdecode(path)}: {cause}; {human_bytes(free)} free there, {need}")
        self.path, self.free, self.needed = Path(path), free, needed

    def __str__(self) -> str:
        return self.strerror


def human_bytes(n: int | None) -> str:
    n = float(n or 0)
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def free_bytes(folder: str | os.PathLike) -> int:
    """Bytes this process may still write on `folder`'s file system (root may use the reserved blocks)."""
    st = os.statvfs(folder)
    return (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize


def check_space(path: str | os.PathLike, needed: int) -> None:
    """Raise WriteFailed before writing `needed` bytes at `path` (a file or folder to be created)
    when its file system has less free space than that."""
    free = free_bytes(Path(path).parent)
    if free < needed:
        raise WriteFailed(path, "not enough space on its disk", free, needed)


def write_failure(e: BaseException, path: str | os.PathLike, needed: int | None) -> WriteFailed | None:
    """`e`, raised while writing `path`, as a WriteFailed if it is a full or failing disk, else None.
    Writers in C++ or Rust (faiss, torch, safetensors) raise their own errors: the errno's text in
    the message (faiss, safetensors), or a disk with less left than the write needs (torch's
    RuntimeError does not say why), tells it is one."""
    try:
        free = free_bytes(Path(path).parent)
    except OSError:
        free = 0
    if isinstance(e, OSError) and e.errno in WRITE_ERRNOS:
        return WriteFailed(path, os.strerror(e.errno), free, needed, e.errno)
    if isinstance(e, Exception) and not isinstance(e, OSError):
        code = next((c for c in WRITE_ERRNOS if os.strerror(c) in str(e)), None)
        if code is None and isinstance(e, RuntimeError) and free < max(needed or 0, 1 << 20):
            code = errno.ENOSPC
        if code is not None:
            return WriteFailed(path, os.strerror(code), free, needed, code)
    return None


def crash_point(name: str) -> None:
    """Die at once (SIGKILL: no cleanup, no flush) when the environment variable SSL_CRASH_AT
    equals `name`. Only the crash-safety tests set it (tests/pipelines/test_crash.py); the
    points are named where they are placed, e.g. "replace:checkpoint.pt", "index:before_swap"."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def atomic_write_with(path: str | os.PathLike, write, size: int | None = None) -> None:
    """`write(tmp_path)` into a temp file beside `path`, fsync it, then os.replace: readers
    see the old file or the new one, never half of one. Files get the usual 0644 mode.
    Temp files of `path` left by a writer that was killed are removed first. `size` (the
    bytes it will write, when known) is checked against the free space first; a full or
    failing disk raises WriteFailed, the temp file removed."""
    path = Path(path)
    prefix = f".{path.name}."
    for stale in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        if "." not in stale.name[len(prefix):-len(".tmp")]:  # mkstemp's part; not another file's temp
            stale.unlink(missing_ok=True)
    if size is not None:
        check_space(path, size)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
    except OSError as e:  # no inode left, read-only disk
        failed = write_failure(e, path, size)
        if failed is None:
            raise
        raise failed from e
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        crash_point(f"replace:{path.name}")
        os.replace(tmp, path)
    except BaseException as e:
        failed = write_failure(e, path, size)
        Path(tmp).unlink(missing_ok=True)
        if failed is not None:
            raise failed from e
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write_with(path, lambda tmp: Path(tmp).write_bytes(data), size=len(data))


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
