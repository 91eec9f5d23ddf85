"""Probe: does combining the four cuts (co-association on the k-NN links) beat keeping the most agreed one?

    python bench/results/ensemble/ensemble_probe.py NAME=RUN [NAME=RUN ...]   (NAME: fmnist, mixed, mnist-5k)
Prints and writes bench/results/ensemble/ensemble_probe.json: NMI / ACC of each cut, the vote, and the
ensembles, per feature set (learned, raw pixels) at the true K.
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import sparse

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import cluster_bench  # noqa: E402
from encoders.evaluation import cluster_scores  # noqa: E402
from index.clusters import ClusterSettings, graph_labels, most_agreed, spectral_labels  # noqa: E402
from index.graph import knn_graph  # noqa: E402
from index.umap_cut import umap_embedding, umap_labels  # noqa: E402


def coassoc(affinity, cuts):
    a = affinity.tocoo()
    agree = np.mean([lab[a.row] == lab[a.col] for lab in cuts], 0)
    return sparse.csr_matrix((a.data * agree, (a.row, a.col)), shape=a.shape)


def probe(x, y, k):
    s = ClusterSettings()
    g = knn_graph(x, s.neighbours, 0)
    aff = g.self_tuning()
    u = umap_embedding(x, g, 0)
    cuts = {"graph": graph_labels(g, k, s, 0)[0], "spectral": spectral_labels(aff, k, 0),
            "umap-kmeans": umap_labels(x, g, k, 0, "kmeans", u), "umap-gmm": umap_labels(x, g, k, 0, "gmm", u)}
    out = {n: cluster_scores(y, lab) for n, lab in cuts.items()}
    kept = most_agreed(cuts)
    out["vote"] = {**out[kept], "kept": kept}
    out["coassoc-spectral"] = cluster_scores(y, spectral_labels(coassoc(aff, list(cuts.values())), k, 0))
    u1, u2 = umap_embedding(x, g, 1), umap_embedding(x, g, 2)
    more = list(cuts.values()) + [umap_labels(x, g, k, 1, "kmeans", u1), umap_labels(x, g, k, 2, "kmeans", u2),
                                  umap_labels(x, g, k, 1, "gmm", u1), umap_labels(x, g, k, 2, "gmm", u2)]
    out["coassoc8-spectral"] = cluster_scores(y, spectral_labels(coassoc(aff, more), k, 0))
    return out


def main():
    path = ROOT / "bench/results/ensemble/ensemble_probe.json"
    res = json.loads(path.read_text()) if path.exists() else {}
    for key, x, y in cluster_bench.probe_feature_sets(sys.argv[1:]):
        t0 = time.time()
        r = probe(x, y, len(np.unique(y)))
        res[key] = r
        print(key, f"{time.time() - t0:.0f}s",
              {n: (round(v["nmi"], 3), round(v["acc"], 3)) for n, v in r.items()}, flush=True)
        path.write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
