"""Every clusterer at the true K on the cut-down collections of probe.py (same seeds and sizes):
NMI of the learned embedding and of the raw pixels, one line per (collection, seed, features).

    python bench/results/imbalanced/algorithms.py > bench/results/imbalanced/algorithms.txt
"""
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(Path(__file__).parent)]

from probe import SEEDS, imbalanced_rows  # noqa: E402  # probe.py beside this file: the same sampling

import datasets  # noqa: E402
from encoders.evaluation import cluster_scores  # noqa: E402
from index.clusters import ClusterSettings, cluster_collection  # noqa: E402

for name, run in (("mixed", "runs/mx3"), ("fmnist", "runs/fm10")):
    learned, raw, y = datasets.learned_and_raw(name, run)
    for seed in SEEDS:
        rows = imbalanced_rows(y, seed)
        k = len(np.unique(y[rows]))
        for features, x in (("learned", learned), ("raw", raw)):
            nmi = {}
            for alg in ("consensus", "best-cut", "graph", "spectral", "umap-kmeans", "umap-gmm", "kmeans"):
                res = cluster_collection(x[rows], k, ClusterSettings(algorithm=alg, stability_runs=0))
                nmi[alg] = round(cluster_scores(y[rows], res.clustering.labels)["nmi"], 3)
            print(name, seed, features, nmi, flush=True)
