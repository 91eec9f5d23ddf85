"""Proxy for the encoder recipe on clustering: each run's embedding of the 10k Fashion-MNIST test
images, clustered by the default (consensus) at the true K, one JSON line per run.

    python bench/results/encoder_probe/probe.py OUT.jsonl TAG=RUN [TAG=RUN ...]
"""
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import datasets  # noqa: E402
from encoders.embed import embed_tensor  # noqa: E402
from encoders.evaluation import cluster_scores  # noqa: E402
from encoders.store import load_encoder  # noqa: E402
from index.clusters import ClusterSettings, cluster_collection  # noqa: E402

args = [a for a in sys.argv[1:] if a != "--auto-k"]
out = Path(args[0])
for arg in args[1:]:
    tag, run = arg.split("=", 1)
    encoder = load_encoder(Path(run), torch.device("cpu"))
    images, y = datasets.labelled_images("fmnist", encoder.cfg.image_size)
    x = embed_tensor(encoder, images)
    row = {"tag": tag, "run": run, "steps": json.loads((Path(run) / "summary.json").read_text()).get("step")
           if (Path(run) / "summary.json").exists() else None}
    row["knn20"] = datasets.knn20(x, y)  # leave-one-out 20-NN accuracy
    for alg in ("consensus", "spectral", "graph", "umap-kmeans"):
        t0 = time.perf_counter()
        res = cluster_collection(x, 10, ClusterSettings(algorithm=alg, stability_runs=0))
        row[alg] = {k: round(float(v), 4) for k, v in cluster_scores(y, res.clustering.labels).items()}
        row[alg]["seconds"] = round(time.perf_counter() - t0, 1)
    if "--auto-k" in sys.argv:
        row["automatic_k"] = datasets.default_scores(x, y, None)
    datasets.append_json_line(out, row)
