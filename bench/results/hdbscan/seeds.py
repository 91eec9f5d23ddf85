"""How much HDBSCAN's number of groups (leaf selection, min_cluster_size 1% and 2% of the images) moves
with UMAP's seed, against modularity's automatic K with another seed, on the same embeddings.

    python bench/results/hdbscan/seeds.py OUT.json NAME=RUN [NAME=RUN ...]
"""
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.cluster import HDBSCAN

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import datasets  # noqa: E402
from index.clusters import ClusterSettings, cluster_collection  # noqa: E402
from index.graph import knn_graph  # noqa: E402
from index.umap_cut import umap_embedding  # noqa: E402

result = {}
for arg in sys.argv[2:]:
    name, run = arg.split("=")
    x, _, y = datasets.learned_and_raw(name, run)
    graph = knn_graph(x, 15)
    rows = []
    for seed in (0, 1, 2):
        u = umap_embedding(x, graph, seed)
        modularity = cluster_collection(x, None, ClusterSettings(seed=seed, k_rule="modularity", stability_runs=0),
                                        graph=graph)
        row = {"seed": seed, "default_k": int(modularity.k)}
        for share in (0.01, 0.02):
            lab = HDBSCAN(min_cluster_size=max(5, round(share * len(x))), cluster_selection_method="leaf",
                          copy=True).fit_predict(u)
            row[f"hdbscan_leaf_{share}"] = {"k": int(lab.max() + 1), "noise": round(float((lab < 0).mean()), 4)}
        rows.append(row)
        print(name, row, flush=True)
    result[name] = {"run": run, "classes": int(len(np.unique(y))), "seeds": rows}
    Path(sys.argv[1]).write_text(json.dumps(result, indent=1))
