"""UMAP (10-d, min_dist 0, the default's neighbour lists) + HDBSCAN (scikit-learn) on labelled
collections: how many groups it finds, how many images it leaves as noise, and how well the groups
match the classes, beside modularity's automatic K on the same embeddings. Is it a better automatic K
or a better "unsorted" rule than the default's?

    python bench/results/hdbscan/probe.py OUT.json NAME=RUN [NAME=RUN ...]  # fmnist or a bench/datasets.py folder
"""
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.cluster import HDBSCAN

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import datasets  # noqa: E402
from encoders.evaluation import cluster_scores  # noqa: E402
from index.clusters import ClusterSettings, cluster_collection  # noqa: E402
from index.graph import knn_graph  # noqa: E402
from index.umap_cut import umap_embedding  # noqa: E402


def nearest_group(u: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Noise (-1) moved to the group of nearest centroid in the UMAP space, so every image is scored."""
    groups = np.unique(labels[labels >= 0])
    if len(groups) == 0:
        return np.zeros_like(labels)
    cent = np.stack([u[labels == g].mean(0) for g in groups])
    out = labels.copy()
    noise = labels < 0
    out[noise] = groups[((u[noise, None] - cent[None]) ** 2).sum(-1).argmin(1)]
    return out


def probe(x: np.ndarray, y: np.ndarray) -> dict:
    graph = knn_graph(x, 15)
    default = cluster_collection(x, None, ClusterSettings(k_rule="modularity", stability_runs=0),
                                 graph=graph)
    u = umap_embedding(x, graph, 0)  # the default's own UMAP (same graph, seed 0)
    m = len(x)
    rows = []
    print("default: automatic K", default.k, "NMI %.3f" % cluster_scores(y, default.clustering.labels)["nmi"])
    for share in (0.002, 0.005, 0.01, 0.02):
        mcs = max(5, round(share * m))
        for min_samples in (None, 5):
            for method in ("eom", "leaf"):
                t = time.perf_counter()
                lab = HDBSCAN(min_cluster_size=mcs, min_samples=min_samples,
                              cluster_selection_method=method, copy=True).fit_predict(u)
                sec = time.perf_counter() - t
                keep = lab >= 0
                row = {"min_cluster_size": mcs, "share": share, "min_samples": min_samples, "method": method,
                       "k": int(lab.max() + 1), "noise": round(float(1 - keep.mean()), 4), "seconds": round(sec, 2),
                       "all": cluster_scores(y, nearest_group(u, lab)),
                       "non_noise": cluster_scores(y[keep], lab[keep]) if keep.any() else None}
                rows.append(row)
                print({k: v for k, v in row.items() if k not in ("all", "non_noise")},
                      "nmi all %.3f non-noise %.3f" % (row["all"]["nmi"], (row["non_noise"] or {"nmi": 0})["nmi"]),
                      flush=True)
    return {"default": {"k": int(default.k), "made_by": default.made_by,
                        "scores": cluster_scores(y, default.clustering.labels)}, "hdbscan": rows}


datasets.probe_collections(probe, sys.argv[1:])
