"""Test-time augmentation of the embeddings: does averaging an image's embedding with those of its
mirror image ("flip"), of four copies shifted by 1/16 of the side ("shift"), or both, group a
labelled collection better? Each collection is clustered by the default (consensus) at its true K;
one JSON line per (collection, run, variant).

    python bench/results/tta/probe.py OUT.jsonl [--variants plain flip shift flip+shift] COLLECTION=RUN ...

COLLECTION: "fmnist" (the 10k test images) or a folder name of bench/datasets.py (mixed, scenes, ...).
"""
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import datasets  # noqa: E402
from encoders.embed import embed_tensor  # noqa: E402
from encoders.evaluation import cluster_scores  # noqa: E402
from encoders.store import load_encoder  # noqa: E402
from index.clusters import ClusterSettings, cluster_collection  # noqa: E402

SHIFT = 1 / 16  # of the image side (2 pixels at 32)


def shifted(images: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """uint8 (M, 3, S, S) moved by (dy, dx) pixels, the border repeated."""
    s, p = images.shape[-1], max(abs(dy), abs(dx))
    pad = F.pad(images.float(), (p,) * 4, mode="replicate")
    return pad[:, :, p + dy:p + dy + s, p + dx:p + dx + s].round().to(torch.uint8)


def variants(encoder, images: torch.Tensor, names: list[str]):
    plain = embed_tensor(encoder, images)
    flip = embed_tensor(encoder, images.flip(-1)) if any("flip" in n for n in names) else None
    d = max(1, round(images.shape[-1] * SHIFT))
    moves = [(-d, 0), (d, 0), (0, -d), (0, d)]
    shifts = sum(embed_tensor(encoder, shifted(images, dy, dx)) for dy, dx in moves) if any(
        "shift" in n for n in names) else None
    parts = {"plain": [plain], "flip": [plain, flip], "shift": [plain, shifts], "flip+shift": [plain, flip, shifts]}
    return [(n, sum(parts[n])) for n in names]


args = sys.argv[1:]
out = Path(args.pop(0))
names = ["plain", "flip", "flip+shift"]
if args[0] == "--variants":
    args.pop(0)
    names = []
    while "=" not in args[0]:
        names.append(args.pop(0))
for arg in args:
    name, run = arg.split("=", 1)
    encoder = load_encoder(Path(run), torch.device("cpu"))
    images, y = datasets.labelled_images(name, encoder.cfg.image_size)
    k = len(np.unique(y))
    for variant, x in variants(encoder, images, names):
        t0 = time.perf_counter()
        res = cluster_collection(x, k, ClusterSettings(stability_runs=0))
        row = {"collection": name, "run": run, "variant": variant, "knn20": datasets.knn20(x, y),
               "consensus": {m: round(float(v), 4) for m, v in cluster_scores(y, res.clustering.labels).items()},
               "made_by": res.made_by, "seconds": round(time.perf_counter() - t0, 1)}
        datasets.append_json_line(out, row)
