"""How much of a difference between encoders is the clusterer's own noise: one run's embedding of
the 10k Fashion-MNIST test images, clustered by the default (consensus) at the true K with
seeds 0..N-1 (UMAP, K-means and Leiden seeds), and spectral alone, one JSON line per seed.

    python bench/results/encoder_probe/seed_noise.py OUT.jsonl RUN [N]
"""
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

out, run = Path(sys.argv[1]), Path(sys.argv[2])
n = int(sys.argv[3]) if len(sys.argv) > 3 else 4
encoder = load_encoder(run, torch.device("cpu"))
images, y = datasets.labelled_images("fmnist", encoder.cfg.image_size)
x = embed_tensor(encoder, images)
for seed in range(n):
    row = {"run": str(run), "seed": seed}
    for alg in ("consensus", "spectral"):
        t0 = time.perf_counter()
        res = cluster_collection(x, 10, ClusterSettings(algorithm=alg, seed=seed, stability_runs=0))
        row[alg] = {k: round(float(v), 4) for k, v in cluster_scores(y, res.clustering.labels).items()}
        row[alg]["seconds"] = round(time.perf_counter() - t0, 1)
        if alg == "consensus":
            row[alg]["kept"] = res.made_by
    datasets.append_json_line(out, row)
