"""Automatic K by reproducibility across resolutions: Leiden at each resolution of a geometric grid, ten
runs (other seeds, a random tenth of the links left out each time); the resolution whose communities agree
most between runs (mean pairwise AMI) gives K. Does the most reproducible scale land near the true K?

    python bench/results/k_stability/probe.py OUT.json NAME=RUN [NAME=RUN ...]  # fmnist or a bench/datasets.py folder
"""
import itertools
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_mutual_info_score

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import datasets  # noqa: E402
from encoders.evaluation import cluster_scores  # noqa: E402
from index.graph import knn_graph, leiden  # noqa: E402

RESOLUTIONS = tuple(round(2 ** (i / 4), 3) for i in range(-6, 15))  # 0.35 .. 13.5, steps of 2^(1/4)
RUNS = 10


def probe(x: np.ndarray, y: np.ndarray) -> list[dict]:
    graph = knn_graph(x, 15)
    rows = []
    for res in RESOLUTIONS:
        runs = [leiden(graph.thinned(0.1, seed).adjacency(), res, seed, 1) for seed in range(RUNS)]
        ami = [adjusted_mutual_info_score(a, b) for a, b in itertools.combinations(runs, 2)]
        ks = [int(r.max() + 1) for r in runs]
        rows.append({"resolution": res, "k": ks, "ami": round(float(np.mean(ami)), 4),
                     "nmi": round(float(np.mean([cluster_scores(y, r)["nmi"] for r in runs])), 4)})
        print(rows[-1], flush=True)
    return rows


datasets.probe_collections(probe, sys.argv[1:])
