"""Shared-nearest-neighbour link weights (|N(i) & N(j)|, Jarvis & Patrick 1973) against the default's
weights, for the graph cut (Leiden + merges) and the spectral cut, on the 10k Fashion-MNIST test images.

    python bench/results/snn/probe.py OUT.json RUN
"""
import json
import sys
from pathlib import Path

import numpy as np
from scipy import sparse

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import datasets  # noqa: E402
from encoders.evaluation import cluster_scores  # noqa: E402
from index.clusters import spectral_labels  # noqa: E402
from index.graph import knn_graph, leiden, merge_tree  # noqa: E402


def snn(graph) -> sparse.csr_matrix:
    """Symmetric (M, M): on each k-NN link, how many neighbours its two ends share, plus one."""
    m, k = graph.ids.shape
    member = sparse.csr_matrix((np.ones(m * k), (np.repeat(np.arange(m), k), graph.ids.ravel())), shape=(m, m))
    shared = np.asarray(member[np.repeat(np.arange(m), k)].multiply(member[graph.ids.ravel()]).sum(1)).ravel()
    return graph._edges((shared + 1.0).reshape(m, k)) / 2


def cuts(x: np.ndarray, y: np.ndarray) -> dict:
    graph = knn_graph(x, 15)
    out = {}
    for name, w in (("adjacency", graph.adjacency()), ("self-tuning", graph.self_tuning()), ("snn", snn(graph))):
        tree = merge_tree(w, leiden(w, 1.0, 0, 3))
        auto = tree.best_k(2, 50)
        out[name] = {"graph_k10": cluster_scores(y, tree.cut(10)), "auto_k": int(auto),
                     "graph_auto": cluster_scores(y, tree.cut(auto)),
                     "spectral_k10": cluster_scores(y, spectral_labels(w, 10, 0))}
        print(name, {k: v if isinstance(v, int) else round(v["nmi"], 4) for k, v in out[name].items()}, flush=True)
    return out


learned, raw, y = datasets.learned_and_raw("fmnist", sys.argv[2])
result = {"run": sys.argv[2], "learned": cuts(learned, y), "raw pixels": cuts(raw, y)}
Path(sys.argv[1]).write_text(json.dumps(result, indent=1))
