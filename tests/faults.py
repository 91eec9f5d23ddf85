"""Fault injection for the disk tests: writes that fail with ENOSPC or EIO at a chosen file, and a
real small file system (tmpfs) where this machine lets the tests mount one.

    failing_writes(monkeypatch, "index.faiss")          the first write to a file whose name holds
                                                       "index.faiss" fails with ENOSPC after 10 bytes
    small_disk(tmp_path, size_kb) -> Path              a tmpfs of that size (skips the test if it cannot mount)
    fill(disk, leave_kb) -> Path                       a filler file leaving about `leave_kb` KB free

`failing_writes` reaches every way the code writes: Python's `open` (np.save, json, Path.write_*),
`faiss.write_index`, `torch.save` and safetensors' `save_file`, each failing as the real one does on
a full disk (faiss and safetensors name the errno in a RuntimeError / SafetensorError; torch says only
"unexpected pos"). After an ENOSPC fault, the disk reads as full (`encoders.files.free_bytes` is 0)
until the test frees it with `FaultPlan.free_space()`.
"""
from __future__ import annotations

import builtins
import errno
import io
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import pytest
import safetensors.torch
import torch

import encoders.files


@dataclass
class FaultPlan:
    name_part: str
    code: int = errno.ENOSPC
    after: int = 10  # bytes written before the fault
    times: int = 1  # faults left to inject
    fired: list[str] = field(default_factory=list)  # the files that failed
    full: bool = False

    def matches(self, path) -> bool:
        """`name_part` in the file's name or "folder/name" (not higher up: tmp_path holds the test's name)."""
        p = Path(os.fsdecode(path))
        return self.times > 0 and self.name_part in f"{p.parent.name}/{p.name}"

    def fire(self, path) -> OSError:
        self.times -= 1
        self.fired.append(os.fsdecode(path))
        self.full = self.code == errno.ENOSPC
        return OSError(self.code, os.strerror(self.code), os.fsdecode(path))

    def free_space(self) -> None:
        self.full, self.times = False, 0


class FailingFile(io.RawIOBase):
    """A file opened for writing whose writes fail once `plan.after` bytes are in."""

    def __init__(self, f, path, plan: FaultPlan):
        self.f, self.path, self.plan, self.n = f, path, plan, 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        b = bytes(b) if not isinstance(b, str) else b
        if self.n + len(b) > self.plan.after:
            self.f.write(b[: max(0, self.plan.after - self.n)])
            self.f.flush()
            raise self.plan.fire(self.path)
        self.n += len(b)
        return self.f.write(b)

    def fileno(self) -> int:
        return self.f.fileno()

    def flush(self) -> None:
        if not self.f.closed:
            self.f.flush()

    def tell(self) -> int:
        return self.f.tell()

    def seek(self, *args) -> int:
        return self.f.seek(*args)

    def close(self) -> None:
        super().close()
        self.f.close()


def failing_writes(monkeypatch, name_part: str, code: int = errno.ENOSPC, after: int = 10,
                   times: int = 1) -> FaultPlan:
    """Make the next `times` writes to a file whose path contains `name_part` fail with `code`."""
    plan = FaultPlan(name_part, code, after, times)
    real_open, real_faiss, real_torch = builtins.open, faiss.write_index, torch.save
    real_st = safetensors.torch.save_file
    real_free = getattr(encoders.files, "free_bytes", None)

    def fake_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, bytes, os.PathLike)) and set(mode) & set("wax+") and plan.matches(file):
            return FailingFile(f, file, plan)
        return f

    def partial_then(path, error: Exception):
        with real_open(path, "wb") as f:
            f.write(b"\0" * plan.after)
        plan.fire(path)
        raise error

    def fake_faiss(index, path, *args):
        if isinstance(path, str) and plan.matches(path):
            partial_then(path, RuntimeError(f"Error in faiss::write_index: write error in {path}: {plan.after} != "
                                            f"1000000 ({os.strerror(plan.code)})"))
        return real_faiss(index, path, *args)

    def fake_torch(obj, f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)) and plan.matches(f):
            partial_then(f, RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"))
        return real_torch(obj, f, *args, **kwargs)

    def fake_st(tensors, path, *args, **kwargs):
        if plan.matches(path):
            partial_then(path, safetensors.SafetensorError(f"Error while serializing: I/O error: "
                                                           f"{os.strerror(plan.code)} (os error {plan.code})"))
        return real_st(tensors, path, *args, **kwargs)

    monkeypatch.setattr(shutil, "_USE_CP_SENDFILE", False)  # copies through Python's write, not sendfile
    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr(faiss, "write_index", fake_faiss)
    monkeypatch.setattr(torch, "save", fake_torch)
    monkeypatch.setattr(safetensors.torch, "save_file", fake_st)
    monkeypatch.setattr("encoders.store.save_file", fake_st)
    monkeypatch.setattr(encoders.files, "free_bytes", lambda folder: 0 if plan.full else real_free(folder),
                        raising=False)
    return plan


def small_disk(where: Path, size_kb: int):
    """Mount a tmpfs of `size_kb` KB at `where` (a generator for a fixture: yields the path, unmounts
    after); skips the test where mounting is not allowed (not root, no tmpfs)."""
    where.mkdir(parents=True, exist_ok=True)
    rc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(where)],
                        capture_output=True).returncode
    if rc != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def fill(disk: Path, leave_kb: int, name: str = "filler.bin") -> Path:
    """A new file taking all but about `leave_kb` KB of `disk`'s free space."""
    st = os.statvfs(disk)
    filler = disk / name
    filler.write_bytes(b"\1" * max(0, st.f_bavail * st.f_frsize - leave_kb * 1024))
    return filler
