"""faiss K-means time on CPU and, when faiss-gpu sees a GPU, on the GPU, on the same vectors.

    python bench/faiss_gpu_kmeans.py --n 1000000 --dim 512 --k 1024      # the figure in docs/benchmarks.md
    python bench/faiss_gpu_kmeans.py --n 100000 --dim 512 --k 256 --niter 10   # CPU-only machines

Spherical K-means (as `index.clusters.kmeans`) with faiss.Kmeans, one seed, no restarts;
faiss subsamples to max_points_per_centroid * k points (default 256 * k) as it does in
the product. On a GPU machine (faiss-gpu installed, `pip install -r requirements-gpu.txt`)
both runs use the same seed and data, and the JSON records whether they agree within
FAISS's tolerance: final objectives within --rtol, and the share of points each run's
centroids assign alike. Without a GPU only the CPU row is written.
Results merge into bench/results/faiss_gpu_kmeans.json (keyed by n, dim, k, device).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.index_bench import clustered_vectors  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def time_kmeans(x: np.ndarray, k: int, niter: int, gpu: bool, seed: int) -> tuple[dict, np.ndarray]:
    km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, spherical=True, gpu=gpu, verbose=False)
    t = time.perf_counter()
    km.train(x)
    seconds = time.perf_counter() - t
    return {"device": "gpu" if gpu else "cpu", "train_s": round(seconds, 2),
            "objective": float(km.obj[-1]), "iterations": niter}, km.centroids


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--k", type=int, default=1024)
    p.add_argument("--niter", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rtol", type=float, default=1e-3, help="objective agreement CPU vs GPU")
    p.add_argument("--no-cpu", action="store_true", help="GPU only (the CPU run is the slow one)")
    p.add_argument("--note", default="")
    p.add_argument("--out", type=Path, default=RESULTS / "faiss_gpu_kmeans.json")
    args = p.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((1000, args.dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = clustered_vectors(args.n, args.dim, centres, 1.0, rng)  # (M, D) unit vectors
    gpus = faiss.get_num_gpus()
    rows, centroids = [], {}
    for gpu in ([] if args.no_cpu else [False]) + ([True] if gpus > 0 else []):
        r, centroids[gpu] = time_kmeans(x, args.k, args.niter, gpu, args.seed)
        rows.append(r)
        print(json.dumps(r), flush=True)
    if len(centroids) == 2:  # same assignment for most points, objective within rtol
        probe = x[: min(len(x), 100_000)]
        labels = [faiss.knn(probe, centroids[g], 1, metric=faiss.METRIC_INNER_PRODUCT)[1][:, 0] for g in (False, True)]
        cpu, gpu = rows
        gpu["same_assignment_share"] = round(float((labels[0] == labels[1]).mean()), 4)
        gpu["objective_rel_diff"] = round(abs(gpu["objective"] - cpu["objective"]) / abs(cpu["objective"]), 6)
        gpu["within_tolerance"] = gpu["objective_rel_diff"] <= args.rtol
        gpu["speedup_vs_cpu"] = round(cpu["train_s"] / gpu["train_s"], 1)
    if gpus == 0:
        print("no GPU visible to faiss (faiss-cpu, or no CUDA device): CPU figure only")

    previous = json.loads(args.out.read_text()) if args.out.is_file() else {"runs": []}
    runs = previous["runs"]
    for r in rows:
        r.update(n=args.n, dim=args.dim, k=args.k, trained_on=min(args.n, 256 * args.k), date=time.strftime("%Y-%m-%d"),
                 machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {gpus} GPUs",
                 faiss=faiss.__version__, note=args.note)
        runs = [o for o in runs if (o["n"], o["dim"], o["k"], o["device"]) != (args.n, args.dim, args.k, r["device"])]
        runs.append(r)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": sorted(runs, key=lambda r: (r["dim"], r["n"], r["k"], r["device"]))},
                                   indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
