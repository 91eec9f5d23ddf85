"""Shared fixtures: small generated image folders (no binaries are committed)."""
from __future__ import annotations

import os
import sys

# Under pytest-xdist (`make test`, docs/design.md) each worker gets its share of the cores (at least
# one thread), set before numpy, torch or faiss start their thread pools: about as many threads as
# cores in all, not cores^2.
# Cores as the Makefile counts them (`nproc`: the ones this process may run on).
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cores // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHAPES = ("ellipse", "rectangle", "triangle", "cross")
# The files that take longest, longest first. `--dist loadfile` hands whole files to the workers in
# collection order; the longest ones start first so that no worker is left alone with one at the end.
LONGEST_FILES = ("test_bench_smoke.py", "test_pretrain.py", "test_browser.py")


def pytest_collection_modifyitems(items):
    """Collect LONGEST_FILES first (in that order), every other test after them in its usual order."""
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the order within a file is kept


def draw_shape_image(kind: str, rng: np.random.Generator, size: int = 40) -> Image.Image:
    """A coloured background with one shape of `kind` at a random place and colour."""
    bg = tuple(int(v) for v in rng.integers(0, 256, 3))
    fg = tuple(int(v) for v in rng.integers(0, 256, 3))
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    s = int(rng.integers(size // 2, size - 4))
    x, y = (int(v) for v in rng.integers(0, size - s + 1, 2))
    if kind == "ellipse":
        d.ellipse([x, y, x + s, y + s], fill=fg)
    elif kind == "rectangle":
        d.rectangle([x, y, x + s, y + s // 2], fill=fg)
    elif kind == "triangle":
        d.polygon([(x, y + s), (x + s, y + s), (x + s // 2, y)], fill=fg)
    else:
        w = max(2, s // 5)
        d.rectangle([x + s // 2 - w, y, x + s // 2 + w, y + s], fill=fg)
        d.rectangle([x, y + s // 2 - w, x + s, y + s // 2 + w], fill=fg)
    return img


def make_shape_folder(root: Path, per_class: int, labelled: bool = False, seed: int = 0,
                      size: int = 40) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for kind in SHAPES:
        folder = root / kind if labelled else root
        folder.mkdir(exist_ok=True)
        for i in range(per_class):
            ext = ("png", "jpg")[i % 2]
            draw_shape_image(kind, rng, size).save(folder / f"{kind}_{seed}_{i:03d}.{ext}", quality=95)
    return root


@pytest.fixture(scope="session")
def shape_folder(tmp_path_factory) -> Path:
    """256 unlabeled images of 4 shape kinds, PNG and JPEG mixed."""
    return make_shape_folder(tmp_path_factory.mktemp("shapes"), per_class=64)
