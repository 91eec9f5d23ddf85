"""Fashion-MNIST from Debian's `dataset-fashion-mnist` (idx files, no download)."""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

FASHION_MNIST_DIR = Path(os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot")


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    if len(data) < 8 or data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise ValueError(f"{path}: not an idx file of unsigned bytes")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path}: truncated ({arr.size} bytes for shape {dims})")
    return arr.reshape(dims)


def load_fashion_mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    """split 'train' (60k) or 'test' (10k) -> (uint8 images (N, 28, 28), int64 labels (N,))."""
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    images = FASHION_MNIST_DIR / f"{prefix}-images-idx3-ubyte.gz"
    labels = FASHION_MNIST_DIR / f"{prefix}-labels-idx1-ubyte.gz"
    if not images.is_file():
        raise FileNotFoundError(
            f"{images} not found: install Debian's package with `apt-get install dataset-fashion-mnist` "
            f"(the Makefile's setup does this)")
    return _read_idx(images), _read_idx(labels).astype(np.int64)
