"""Probe: do two or three encoders trained alike (other seeds) group better together? Their embeddings
of the 10k Fashion-MNIST test images are joined (each unit length, then the whole unit length, so a
pair's cosine is the mean of the encoders') and go through the default clusterer at the true K and
with the automatic K. One JSON line per set of encoders.

    python bench/results/encoder_ensemble/probe.py OUT.jsonl RUN RUN [RUN ...]
"""
import itertools
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import datasets  # noqa: E402
from encoders.embed import embed_tensor  # noqa: E402
from encoders.store import load_encoder  # noqa: E402


def main(argv: list[str]) -> None:
    out, runs, xs = Path(argv[1]), argv[2:], {}
    for run in runs:
        encoder = load_encoder(Path(run), torch.device("cpu"))
        images, y = datasets.labelled_images("fmnist", encoder.cfg.image_size)
        xs[run] = embed_tensor(encoder, images)
    for n in range(2, len(runs) + 1):
        for group in itertools.combinations(runs, n):
            x = np.hstack([xs[r] for r in group])  # (M, n D)
            x = np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32)
            row = {"runs": list(group), "knn20": datasets.knn20(x, y)}
            for given in (10, None):
                row["true_k" if given else "automatic_k"] = datasets.default_scores(x, y, given)
            datasets.append_json_line(out, row)


if __name__ == "__main__":
    main(sys.argv)
