"""A size-free automatic K: over-split the k-NN graph (Leiden at a high resolution), then merge, again and
again, the two groups that share the most links relative to the smaller one (links between A and B over
min(volume A, volume B)); stop when no pair shares more than tau. Modularity's bar for a merge grows with
the groups' sizes (its resolution limit); this one does not. How near the true K does each tau land?

    python bench/results/k_share/probe.py OUT.json NAME=RUN [NAME=RUN ...]  # fmnist or a bench/datasets.py folder
"""
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import datasets  # noqa: E402
from encoders.evaluation import cluster_scores  # noqa: E402
from index.graph import community_weights, knn_graph, leiden, merge_tree  # noqa: E402

TAUS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3)


def share_merges(w: np.ndarray, labels: np.ndarray, taus) -> dict:
    """Greedy merges by the largest share; {tau: labels when the largest share first falls below tau}."""
    w = w.astype(np.float64).copy()
    groups = [[i] for i in range(len(w))]
    out = {}
    pending = sorted(taus, reverse=True)
    while len(w) > 1 and pending:
        vol = w.sum(1)
        s = w / np.minimum(vol[:, None], vol[None, :])
        np.fill_diagonal(s, -1)
        a, b = np.unravel_index(int(s.argmax()), s.shape)
        top = s[a, b]
        while pending and top < pending[0]:
            tau = pending.pop(0)
            member = np.empty(len(labels), np.int64)
            for g, fine in enumerate(groups):
                member[np.isin(labels, fine)] = g
            out[tau] = member
        if not pending:
            break
        a, b = min(a, b), max(a, b)
        w[a] += w[b]
        w[:, a] += w[:, b]
        w = np.delete(np.delete(w, b, 0), b, 1)
        groups[a] += groups.pop(b)
    return out


def probe(x: np.ndarray, y: np.ndarray) -> dict:
    graph = knn_graph(x, 15)
    a = graph.adjacency()
    row = {"modularity_k": int(merge_tree(a, leiden(a, 1.0, 0, 3)).best_k(2, 50))}
    for res in (5.0, 10.0):
        fine = leiden(a, res, 0, 1)
        found = share_merges(community_weights(a, fine), fine, TAUS)
        scores = {str(t): {"k": int(lab.max() + 1), "nmi": round(cluster_scores(y, lab)["nmi"], 4)}
                  for t, lab in found.items()}
        row[f"resolution {res:g}"] = {"communities": int(fine.max() + 1), **scores}
    print(row, flush=True)
    return row


datasets.probe_collections(probe, sys.argv[1:])
