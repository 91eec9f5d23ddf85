"""Pretraining's decoded photos, kept for the steps after it, so a folder is decoded once, not three times.

`pipelines.pretrain` decodes the folder at the encoder's image size S; it saves those uint8
(M, 3, S, S) pixels as RUN_DIR/decoded.npy beside RUN_DIR/decoded.json (S and each file's
absolute path, byte size and modification time). `build_index` and the quality report, given
that run folder, take a file's pixels from there when its size and mtime are unchanged (the same
`encoders.imagefolder.ImageFiles` decoding made them) and decode only the others. The array is
memory-mapped: looking a photo up reads one row, never the whole file into memory. Entries of an
older run stay valid: a file's pixels depend only on its bytes and S, and its size and mtime are checked.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from encoders.files import atomic_write_json, atomic_write_with

PIXELS, FILES = "decoded.npy", "decoded.json"


def save_decoded(run_dir: str | os.PathLike, paths: list[Path], images: torch.Tensor) -> None:
    """Keep uint8 (M, 3, S, S) `images` of `paths` in RUN_DIR (both files written atomically)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for p in paths:
        st = os.stat(p)
        files.append([os.path.abspath(p), st.st_size, st.st_mtime_ns])

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would add ".npy" to a name
            np.save(f, images.numpy(), allow_pickle=False)
    atomic_write_with(run_dir / PIXELS, write)
    atomic_write_json(run_dir / FILES, {"size": int(images.shape[-1]), "files": files})


@dataclass
class Decoded:
    """Saved pixels: uint8 (M, 3, S, S) memory-mapped, and abs path -> (row, byte size, mtime_ns)."""

    pixels: np.ndarray
    rows: dict[str, tuple[int, int, int]]

    def get(self, path: str | os.PathLike) -> torch.Tensor | None:
        """uint8 (3, S, S) of `path` as saved, or None when it was not saved or has changed since."""
        hit = self.rows.get(os.path.abspath(path))
        if hit is None:
            return None
        try:
            st = os.stat(path)
        except OSError:
            return None
        if (st.st_size, st.st_mtime_ns) != hit[1:]:
            return None
        return torch.from_numpy(np.array(self.pixels[hit[0]]))


def load_decoded(run_dir: str | os.PathLike, size: int) -> Decoded | None:
    """The pixels pretraining saved in RUN_DIR at `size` px, or None (none saved, another size, unreadable)."""
    try:
        meta = json.loads((Path(run_dir) / FILES).read_text())
        if meta["size"] != size:
            return None
        pixels = np.load(Path(run_dir) / PIXELS, mmap_mode="r", allow_pickle=False)
        files = meta["files"]
        if pixels.dtype != np.uint8 or pixels.shape != (len(files), 3, size, size):
            return None
        return Decoded(pixels, {str(p): (r, int(n), int(t)) for r, (p, n, t) in enumerate(files)})
    except (OSError, ValueError, KeyError, TypeError):
        return None
