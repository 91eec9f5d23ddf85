"""How steady is the automatic K over encoders? Each run's learned embedding (and the raw pixels, the
free baseline) clustered without -k by the default (consensus, k_rule "reproducible") and by
modularity's rule: K and NMI at that K.

    python bench/results/k_seeds/probe.py OUT.json NAME=RUN [NAME=RUN ...]  # fmnist or a bench/datasets.py folder
"""
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import datasets  # noqa: E402
from encoders.evaluation import cluster_scores  # noqa: E402
from index.clusters import ClusterSettings, cluster_collection  # noqa: E402


def probe(x: np.ndarray, y: np.ndarray) -> dict:
    row = {}
    for rule in ("reproducible", "modularity"):
        labels = cluster_collection(x, None, ClusterSettings(k_rule=rule, stability_runs=0)).clustering.labels
        row[rule] = {"k": int(labels.max() + 1), "nmi": round(cluster_scores(y, labels)["nmi"], 4)}
    print(row, flush=True)
    return row


datasets.probe_collections(probe, sys.argv[1:])
