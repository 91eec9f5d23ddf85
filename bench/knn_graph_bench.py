"""The k-NN graph of the clusterer at 60k: exact search, the probed lists the clusterer uses beyond
index.graph.EXACT_MAX (index.graph.probed_knn) and faiss's IVF index (time, recall of the 15
neighbours), and the default clusterer on each graph (time, automatic K, NMI against the labels).

    python bench/knn_graph_bench.py --fmnist-encoder RUN_A      # -> bench/results/knn_graph_bench.json

The 60k Fashion-MNIST training images embedded by RUN_A; labels only score the groups.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import torch
from sklearn.metrics import normalized_mutual_info_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.machine import machine_line  # noqa: E402
from encoders.embed import embed_tensor  # noqa: E402
from encoders.fashion_mnist import load_fashion_mnist  # noqa: E402
from encoders.store import load_encoder  # noqa: E402
from index.clusters import ClusterSettings, cluster_collection  # noqa: E402
from index.faiss_index import as_vectors, recall_at_k  # noqa: E402
from index.graph import Neighbours, _drop_self, exact_knn, probed_knn  # noqa: E402
from pipelines.evaluate import arrays_to_images  # noqa: E402

K = 15  # neighbours, as ClusterSettings.neighbours


def exact_graph(x: np.ndarray) -> Neighbours:
    sims, ids = exact_knn(x, x, K + 1)  # (M, K + 1)
    return Neighbours(*_drop_self(ids, sims, K))


def probed_graph(x: np.ndarray, probes: int) -> Neighbours:
    sims, ids = probed_knn(x, K + 1, probes=probes)  # (M, K + 1)
    return Neighbours(*_drop_self(ids, sims, K))


def ivf_graph(x: np.ndarray, nlist: int, nprobe: int, train_per_list: int) -> Neighbours:
    d = x.shape[1]
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.niter, ivf.cp.seed, ivf.cp.min_points_per_centroid = 10, 0, 1
    ivf.train(x[np.random.default_rng(0).choice(len(x), min(len(x), train_per_list * nlist), replace=False)])
    ivf.add(x)
    ivf.nprobe = nprobe
    sims, ids = ivf.search(x, K + 1)  # (M, K + 1)
    return Neighbours(*_drop_self(ids, sims, K))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--fmnist-encoder", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("bench/results/knn_graph_bench.json"))
    p.add_argument("--limit", type=int, default=0, help="only the first N images (smoke test)")
    a = p.parse_args(argv)
    encoder = load_encoder(a.fmnist_encoder, torch.device("cpu"))
    images, labels = load_fashion_mnist("train")
    x = as_vectors(embed_tensor(encoder, arrays_to_images(images, encoder.cfg.image_size)))
    if a.limit:
        x, labels = x[:a.limit], labels[:a.limit]
    root = int(np.sqrt(len(x)))
    graphs = {"exact": lambda: exact_graph(x),
              f"probed lists, 8 of {root} (default)": lambda: probed_graph(x, 8),
              f"probed lists, 16 of {root}": lambda: probed_graph(x, 16),
              f"faiss ivf nlist {root} nprobe 8": lambda: ivf_graph(x, root, 8, 64)}  # nlist ~ sqrt(M)
    rows, exact = {}, None
    for name, make in graphs.items():
        t0 = time.perf_counter()
        g = make()
        t_graph = time.perf_counter() - t0
        exact = g if exact is None else exact
        recall = recall_at_k(g.ids[::10], exact.ids[::10])  # every tenth image's neighbours
        t0 = time.perf_counter()
        res = cluster_collection(x, None, ClusterSettings(), graph=g)
        t_cluster = time.perf_counter() - t0
        at10 = cluster_collection(x, 10, ClusterSettings(stability_runs=0), graph=g)
        rows[name] = {"graph_s": round(t_graph, 1), "recall_at_15": round(recall, 3),
                      "cluster_s": round(t_cluster, 1), "total_s": round(t_graph + t_cluster, 1), "k": res.k,
                      "nmi_auto_k": round(normalized_mutual_info_score(labels, res.clustering.labels), 3),
                      "nmi_k10": round(normalized_mutual_info_score(labels, at10.clustering.labels), 3)}
        print(name, rows[name], flush=True)
    a.out.write_text(json.dumps({"machine": machine_line(), "date": datetime.date.today().isoformat(),
                                 "command": " ".join(["python bench/knn_graph_bench.py", *(argv or sys.argv[1:])]),
                                 "embeddings": list(x.shape), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
