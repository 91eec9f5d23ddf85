"""Probe: is the K at which the four cuts agree most (chance-adjusted) nearer the true number of
classes than the K of highest modularity (the automatic K)?

    python bench/results/k_probe/k_probe.py NAME=RUN [NAME=RUN ...]   (NAME: fmnist, mixed, mnist-5k)
For each feature set (learned, raw pixels) and each K in [true/2, 2 x true]: the four cuts of the
default vote, their mean pairwise ARI / AMI / NMI, the modularity of the graph cut, and the vote's NMI
against the labels. Writes bench/results/k_probe/k_probe.json.
"""
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_mutual_info_score as ami
from sklearn.metrics import adjusted_rand_score as ari
from sklearn.metrics import normalized_mutual_info_score as nmi

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import cluster_bench  # noqa: E402
from encoders.evaluation import cluster_scores  # noqa: E402
from index.clusters import ClusterSettings, graph_labels, most_agreed, spectral_labels  # noqa: E402
from index.graph import knn_graph, leiden, merge_tree  # noqa: E402
from index.umap_cut import umap_embedding, umap_labels  # noqa: E402


def probe(x, y, true_k):
    s = ClusterSettings()
    g = knn_graph(x, s.neighbours, 0)
    adj, aff = g.adjacency(), g.self_tuning()
    tree = merge_tree(adj, leiden(adj, s.resolution, 0, s.leiden_runs))
    u = umap_embedding(x, g, 0)
    rows = {}
    for k in range(max(2, true_k // 2), 2 * true_k + 1):
        t0 = time.time()  # above the communities Leiden found, the graph cut comes from a finer resolution
        cuts = {"graph": tree.cut(k) if k <= tree.max_k else graph_labels(g, k, s, 0)[0],
                "spectral": spectral_labels(aff, k, 0),
                "umap-kmeans": umap_labels(x, g, k, 0, "kmeans", u), "umap-gmm": umap_labels(x, g, k, 0, "gmm", u)}
        pairs = list(itertools.combinations(cuts.values(), 2))
        kept = most_agreed(cuts)
        rows[k] = {"ari": float(np.mean([ari(a, b) for a, b in pairs])),
                   "ami": float(np.mean([ami(a, b) for a, b in pairs])),
                   "nmi": float(np.mean([nmi(a, b) for a, b in pairs])),
                   "modularity": float(tree.modularity[tree.max_k - k]) if k <= tree.max_k else None,
                   "vote": {**cluster_scores(y, cuts[kept]), "kept": kept}, "seconds": round(time.time() - t0, 1)}
        print(k, {a: round(b, 3) if isinstance(b, float) else b for a, b in rows[k].items() if a != "vote"},
              round(rows[k]["vote"]["nmi"], 3), flush=True)
    best = {m: max((k for k in rows if rows[k][m] is not None), key=lambda k: rows[k][m])
            for m in ("ari", "ami", "nmi", "modularity")}
    return {"true_k": true_k, "auto_k_modularity": tree.best_k(s.k_min, s.k_max), "best_k_by": best, "rows": rows}


def main():
    path = ROOT / "bench/results/k_probe/k_probe.json"
    res = json.loads(path.read_text()) if path.exists() else {}
    for key, x, y in cluster_bench.probe_feature_sets(sys.argv[1:]):
        r = probe(x, y, len(np.unique(y)))
        res[key] = r
        print(key, "true", r["true_k"], "modularity K", r["auto_k_modularity"], "best K by", r["best_k_by"])
        path.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
