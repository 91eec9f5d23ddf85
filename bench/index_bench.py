"""FAISS index cost on this machine: build time, memory, query latency and recall@10.

Synthetic clustered unit vectors (the backbone's dimension), for each size the index key
`choose_index_key` picks (plus any --extra-keys). Recall@10 is against exact search;
latency is one query at a time (what the app does) on one FAISS thread, p50/p95 over
--latency-queries.

    python bench/index_bench.py --sizes 10000 --extra-keys HNSW32 [--dim 256]
    python bench/index_bench.py --sizes 100000 --extra-keys Flat
    python bench/index_bench.py --sizes 1000000 --extra-keys IVF1024,PQ32
    python bench/index_bench.py --sizes 1000000 --memory-budget-gb 0.5 --plant-duplicates 1000
    python bench/index_bench.py --sizes 1000000 --memory-budget-gb 0.5 --fmnist-encoder RUN_DIR

`--fmnist-encoder RUN_DIR`: a real set instead: the learned embeddings of the 60k Fashion-MNIST
training images, each repeated with small Gaussian noise (--replica-noise, relative norm) until
there are n, queried with the 10k test images' embeddings; results go to index_bench_fmnist.json.
`--plant-duplicates P`: P rows are replaced by near copies (cosine ~0.99) of P others, and the
near-duplicate search through the built index (`near_pairs_reranked`, from the planted rows) is
compared with an exact range search from the same rows.
Results are merged into bench/results/index_bench.json (keyed by size and index key);
bench/results/index_bench.png plots them.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from index.factory import default_search_params, is_compressed  # noqa: E402
from index.faiss_index import build_index, choose_index_key, recall_at_k, search  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def clustered_vectors(n: int, d: int, centres: np.ndarray, spread: float, rng: np.random.Generator,
                      chunk: int = 100_000) -> np.ndarray:
    """n unit vectors, each a random centre plus Gaussian noise, built in chunks: float32 (n, d)."""
    out = np.empty((n, d), np.float32)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        x = centres[rng.integers(0, len(centres), m)]  # (m, d)
        x += (spread / np.sqrt(d)) * rng.standard_normal((m, d), dtype=np.float32)
        out[s:s + m] = x
    faiss.normalize_L2(out)
    return out


def fmnist_vectors(run_dir: Path, n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(database (n, D), queries (10k, D)): the encoder's embeddings of Fashion-MNIST train, tiled
    to n rows with Gaussian noise of relative norm `noise` on every copy, and of the test set."""
    import torch

    from encoders.embed import embed_tensor
    from encoders.fashion_mnist import load_fashion_mnist
    from encoders.store import load_encoder
    from pipelines.evaluate import arrays_to_images

    encoder = load_encoder(run_dir, torch.device("cpu"))
    base, xq = (embed_tensor(encoder, arrays_to_images(load_fashion_mnist(s)[0], encoder.cfg.image_size))
                for s in ("train", "test"))
    d = base.shape[1]
    out = np.empty((n, d), np.float32)
    out[:min(n, len(base))] = base[:n]
    for s in range(len(base), n, 100_000):
        m = min(100_000, n - s)
        jitter = (noise / np.sqrt(d)) * rng.standard_normal((m, d), dtype=np.float32)
        out[s:s + m] = base[rng.integers(0, len(base), m)] + jitter
    faiss.normalize_L2(out[len(base):])
    return out, xq


def plant_duplicates(xb: np.ndarray, p: int, rng: np.random.Generator, noise: float = 0.1) -> np.ndarray:
    """Overwrite p rows of xb (in place) with near copies of p other rows: (p, 2) planted (original, copy)."""
    rows = rng.choice(len(xb), 2 * p, replace=False)
    a, b = rows[:p], rows[p:]
    d = xb.shape[1]
    xb[b] = xb[a] + (noise / np.sqrt(d)) * rng.standard_normal((p, d), dtype=np.float32)
    xb[b] /= np.linalg.norm(xb[b], axis=1, keepdims=True)
    return np.stack([a, b], 1)


def duplicates_check(index: faiss.Index, xb: np.ndarray, planted: np.ndarray, threshold: float) -> dict:
    """Near-duplicate pairs found through `index` from the planted rows vs an exact range search."""
    from index.duplicates import near_pairs_reranked

    rows = np.unique(planted)
    t = time.perf_counter()
    a, b, _ = near_pairs_reranked(index, xb, np.arange(len(xb), dtype=np.int64), threshold, rows=rows)
    took = time.perf_counter() - t
    flat = faiss.IndexFlatIP(xb.shape[1])
    flat.add(xb)
    lims, _, I = flat.range_search(xb[rows], threshold)
    qa = np.repeat(rows, np.diff(lims.astype(np.int64)))
    keep = qa != I
    exact = {(min(i, j), max(i, j)) for i, j in zip(qa[keep].tolist(), I[keep].tolist())}
    found = set(zip(a.tolist(), b.tolist()))
    want = {(min(i, j), max(i, j)) for i, j in planted.tolist()}
    return {"threshold": threshold, "planted": len(want), "planted_found": len(want & found),
            "exact_pairs_from_those_rows": len(exact), "found_pairs": len(found),
            "recall_vs_exact": round(len(exact & found) / max(1, len(exact)), 4),
            "false_pairs": len(found - exact), "search_s": round(took, 2),
            "search_ms_per_query_row": round(took * 1e3 / len(rows), 3)}


def rss_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> None:
    """Set VmHWM back to the current RSS (Linux >= 4.0), so each build's peak is its own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def proc_status() -> dict:
    """VmRSS, RssAnon, RssFile and VmHWM of this process in MB (/proc/self/status)."""
    want = ("VmRSS", "RssAnon", "RssFile", "VmHWM")
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name = line.split(":")[0]
        if name in want:
            out[name] = round(int(line.split()[1]) / 1024, 1)
    return out


def timed_single_queries(fn, xq: np.ndarray, n: int) -> list[float]:
    """Milliseconds of `fn(q (1, D))` for the first n queries, on one FAISS thread."""
    lat, threads = [], faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # one query at a time: OpenMP only adds barrier waits (see docs/benchmarks.md, Index)
    for q in xq[:n]:
        t = time.perf_counter()
        fn(q[None])
        lat.append((time.perf_counter() - t) * 1e3)
    faiss.omp_set_num_threads(threads)
    return lat


def serve(work: Path, reranks: list[int], latency_queries: int) -> dict:
    """In a fresh process: load index.faiss (codes in RAM) + embeddings.npy (memory-mapped), then search
    with exact re-ranking of R candidates for each R; resident memory after loading and after searching."""
    from index.rerank import RowMap, search_reranked

    before = proc_status()
    index = faiss.read_index(str(work / "index.faiss"))
    emb = np.load(work / "embeddings.npy", mmap_mode="r")
    row_map = RowMap(np.arange(len(emb), dtype=np.int64))
    loaded = proc_status()
    xq, I_true = np.load(work / "queries.npy"), np.load(work / "truth.npy")
    out = {"rss_before_load_mb": before, "rss_after_load_mb": loaded, "rerank": {}}
    for r in reranks:
        _, I = search_reranked(index, xq, 10, emb, row_map, r)
        lat = timed_single_queries(lambda q: search_reranked(index, q, 10, emb, row_map, r), xq, latency_queries)
        out["rerank"][r] = {"recall_at_10": round(recall_at_k(I, I_true), 4),
                            "latency_ms_p50": round(float(np.percentile(lat, 50)), 3),
                            "latency_ms_p95": round(float(np.percentile(lat, 95)), 3)}
        print(r, out["rerank"][r], flush=True, file=sys.stderr)
    out["rss_after_queries_mb"] = proc_status()
    return out


def bench_one(xb: np.ndarray, xq: np.ndarray, I_true: np.ndarray, key: str, latency_queries: int,
              reranks: list[int], work: Path, planted: np.ndarray | None = None, dup_threshold: float = 0.95) -> dict:
    reset_peak_rss()
    rss0 = rss_mb("VmRSS")
    t0 = time.perf_counter()
    index = build_index(xb, np.arange(len(xb), dtype=np.int64), key)
    build_s = time.perf_counter() - t0
    build_rss = rss_mb("VmHWM")
    _, I = search(index, xq, 10)
    lat = timed_single_queries(lambda q: search(index, q, 10), xq, latency_queries)
    size = len(faiss.serialize_index(index))
    row = {"n": len(xb), "dim": xb.shape[1], "index_key": key, "params": default_search_params(key),
           "build_s": round(build_s, 2), "index_mb": round(size / 2**20, 1),
           "build_peak_rss_growth_mb": round(build_rss - rss0, 1), "build_peak_rss_mb": round(build_rss, 1),
           "recall_at_10": round(recall_at_k(I, I_true), 4),
           "latency_ms_p50": round(float(np.percentile(lat, 50)), 3),
           "latency_ms_p95": round(float(np.percentile(lat, 95)), 3)}
    if planted is not None:
        row["duplicates"] = duplicates_check(index, xb, planted, dup_threshold)
    if is_compressed(key) and reranks:  # exact re-ranking from a memory-mapped embeddings.npy, in a fresh process
        work.mkdir(parents=True, exist_ok=True)
        faiss.write_index(index, str(work / "index.faiss"))
        del index
        np.save(work / "embeddings.npy", xb)
        np.save(work / "queries.npy", xq)
        np.save(work / "truth.npy", I_true)
        cmd = [sys.executable, __file__, "--serve", str(work), "--rerank", *map(str, reranks),
               "--latency-queries", str(latency_queries)]
        row["reranked"] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        row["raw_vectors_mb"] = round(xb.nbytes / 2**20, 1)
    return row


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))

    def family(key):
        return re.sub(r"\d+", "", key)  # IVF1024,Flat -> IVF,Flat
    for fam in sorted({family(r["index_key"]) for r in rows}):
        sel = sorted((r for r in rows if family(r["index_key"]) == fam), key=lambda r: r["n"])
        a.plot([r["n"] for r in sel], [r["latency_ms_p50"] for r in sel], "o-", label=f"{fam} p50")
        a.plot([r["n"] for r in sel], [r["latency_ms_p95"] for r in sel], "x--", label=f"{fam} p95")
        b.plot([r["n"] for r in sel], [r["recall_at_10"] for r in sel], "o-", label=fam)
    for ax, ylabel in ((a, "latency per query (ms)"), (b, "recall@10 vs exact")):
        ax.set_xscale("log"), ax.set_xlabel("vectors"), ax.set_ylabel(ylabel), ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--dim", type=int, default=256, help="256: smallcnn, 512: resnet18")
    p.add_argument("--centres", type=int, default=1000)
    p.add_argument("--spread", type=float, default=1.0, help="noise norm relative to the centre's")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--latency-queries", type=int, default=300)
    p.add_argument("--extra-keys", nargs="*", default=[])
    p.add_argument("--memory-budget-gb", type=float, default=4.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="default: index_bench.json (index_bench_fmnist.json)")
    p.add_argument("--plot-only", action="store_true", help="redraw the PNG from the JSON")
    p.add_argument("--rerank", type=int, nargs="*", default=[100, 200, 400],
                   help="for compressed keys: candidates re-ranked exactly from a memory-mapped embeddings.npy")
    p.add_argument("--work", type=Path, default=Path("/tmp/index_bench_work"), help="scratch folder (1M x 256: 1 GB)")
    p.add_argument("--fmnist-encoder", type=Path, default=None,
                   help="real set: this encoder's Fashion-MNIST embeddings")
    p.add_argument("--replica-noise", type=float, default=0.1, help="relative noise norm of each repeated real vector")
    p.add_argument("--plant-duplicates", type=int, default=0, help="near copies planted and searched for")
    p.add_argument("--dup-threshold", type=float, default=0.95)
    p.add_argument("--serve", type=Path, default=None, help=argparse.SUPPRESS)  # the re-ranking child process
    args = p.parse_args(argv)
    args.out = args.out or RESULTS / ("index_bench_fmnist.json" if args.fmnist_encoder else "index_bench.json")
    if args.serve is not None:
        print(json.dumps(serve(args.serve, args.rerank, args.latency_queries)))
        return 0
    if args.plot_only:
        plot(json.loads(args.out.read_text())["runs"], args.out.with_suffix(".png"))
        return 0

    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((args.centres, args.dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    xq = clustered_vectors(args.queries, args.dim, centres, args.spread, rng)
    data = f"{args.centres} Gaussian clusters on the unit sphere, noise/centre norm {args.spread}"
    if args.fmnist_encoder:
        data = (f"embeddings of Fashion-MNIST train by {args.fmnist_encoder}, repeated with noise norm "
                f"{args.replica_noise}; queries: the test set's")
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {"runs": []}
    rows = previous["runs"]
    for n in args.sizes:
        if args.fmnist_encoder:
            xb, xq = fmnist_vectors(args.fmnist_encoder, n, args.replica_noise, rng)
            xq = np.ascontiguousarray(xq[:args.queries])
        else:
            xb = clustered_vectors(n, args.dim, centres, args.spread, rng)
        planted = plant_duplicates(xb, args.plant_duplicates, rng) if args.plant_duplicates else None
        t = time.perf_counter()
        _, I_true = faiss.knn(xq, xb, 10, metric=faiss.METRIC_INNER_PRODUCT)  # exact reference
        exact_s = time.perf_counter() - t
        for key in [choose_index_key(n, xb.shape[1], args.memory_budget_gb * 1e9), *args.extra_keys]:
            r = bench_one(xb, xq, I_true, key, args.latency_queries, args.rerank, args.work, planted,
                          args.dup_threshold)
            r["chosen_automatically"] = key not in args.extra_keys
            r["exact_batch_search_s"] = round(exact_s, 2)
            print(json.dumps(r), flush=True)
            rows = [o for o in rows if (o["n"], o["dim"], o["index_key"]) != (n, xb.shape[1], key)]
            rows.append(r)
        del xb
    rows.sort(key=lambda r: (r["dim"], r["n"], r["index_key"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "faiss": faiss.__version__, "date": time.strftime("%Y-%m-%d"),
            "data": data,
            "queries": f"{args.queries} for recall, {args.latency_queries} single-query timings on 1 thread",
            "command": " ".join(["python bench/index_bench.py", *(argv if argv is not None else sys.argv[1:])])}
    args.out.write_text(json.dumps({"meta": meta, "runs": rows}, indent=1) + "\n")
    plot(rows, args.out.with_suffix(".png"))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
