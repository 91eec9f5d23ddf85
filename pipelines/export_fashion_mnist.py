"""Write Fashion-MNIST out as a folder of PNG files (unlabeled, or one subfolder per class).

    python -m pipelines.export_fashion_mnist --split train --out data/fmnist-train
    python -m pipelines.export_fashion_mnist --split test --out data/fmnist-test --labelled
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from encoders.fashion_mnist import CLASSES, load_fashion_mnist
from pipelines.cli import run_cli

log = logging.getLogger("pipelines.export_fashion_mnist")


def export(split: str, out: Path, labelled: bool = False, limit: int | None = None, progress: bool = True) -> int:
    """Write the images (skipping files already there); returns how many the folder holds."""
    images, labels = load_fashion_mnist(split)
    if limit:
        images, labels = images[:limit], labels[:limit]
    out.mkdir(parents=True, exist_ok=True)
    for i, (img, y) in enumerate(tqdm(list(zip(images, labels)), desc=f"export {split}", disable=not progress)):
        folder = out / CLASSES[y] if labelled else out
        path = folder / f"{split}_{i:05d}.png"
        if path.exists():
            continue
        folder.mkdir(exist_ok=True)
        tmp = folder / f".{path.name}.tmp"
        Image.fromarray(img, mode="L").save(tmp, format="PNG")
        os.replace(tmp, path)
    return len(images)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipelines.export_fashion_mnist", description=__doc__.split("\n\n")[0])
    p.add_argument("--split", choices=["train", "test"], default="train")
    p.add_argument("--out", required=True)
    p.add_argument("--labelled", action="store_true", help="one subfolder per class")
    p.add_argument("--limit", type=int, default=None)
    args = p.parse_args(argv)

    def work():
        n = export(args.split, Path(args.out), args.labelled, args.limit)
        log.info("%s holds %d Fashion-MNIST %s images", args.out, n, args.split)
    return run_cli(work, errors=(FileNotFoundError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
