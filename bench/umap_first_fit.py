"""Seconds before the first UMAP of a new process: umap-learn as shipped (its numba kernels compiled
in every process) against `index.umap_cut.import_umap` (compiled once, then read from numba's cache).

    python bench/umap_first_fit.py                 # -> bench/results/umap_first_fit.json
    python bench/umap_first_fit.py --n 300 --cases warm --machine-cache --out /tmp/u.json

Each case is a fresh Python process that imports umap, then runs the clusterer's UMAP
(`umap_embedding`: 10-d on the precomputed neighbour graph) and the Map's (`project_2d`: 2-d).
- shipped: umap-learn imported as it is;
- cold: caching on, an empty cache folder (`NUMBA_CACHE_DIR`): the first process on a machine;
- warm: caching on, the folder the cold process filled: every later process.
The points are random clusters on the sphere (compile time does not depend on what they show).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.machine import machine_line  # noqa: E402

CASES = ("shipped", "cold", "warm")


def child(case: str, n: int) -> dict:
    """Runs in the fresh process: seconds of each step."""
    import warnings

    warnings.simplefilter("ignore")
    import index.umap_cut as umap_cut
    from index.graph import knn_graph
    from index.projection import project_2d

    if case == "shipped":
        umap_cut.import_umap = lambda: __import__("umap")  # project_2d looks it up at call time
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 64))[rng.integers(0, 20, n)] + 0.3 * rng.standard_normal((n, 64))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    graph = knn_graph(x, 15)
    t0 = time.perf_counter()
    umap_cut.import_umap()
    t1 = time.perf_counter()
    umap_cut.umap_embedding(x, graph, seed=0)
    t2 = time.perf_counter()
    project_2d(x, "umap")
    t3 = time.perf_counter()
    return {"import_s": round(t1 - t0, 2), "umap_10d_s": round(t2 - t1, 2), "map_2d_s": round(t3 - t2, 2)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=2000, help="points")
    p.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    p.add_argument("--machine-cache", action="store_true",
                   help="cold and warm use numba's cache where umap is installed instead of an empty folder")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "umap_first_fit.json")
    p.add_argument("--child", choices=CASES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.n)))
        return 0
    rows = {}
    with tempfile.TemporaryDirectory() as cache:
        for case in args.cases:
            env = dict(os.environ)
            if case in ("cold", "warm") and not args.machine_cache:
                env["NUMBA_CACHE_DIR"] = cache  # warm after cold: the folder cold filled
            r = subprocess.run([sys.executable, __file__, "--child", case, "--n", str(args.n)], env=env,
                               capture_output=True, text=True, check=True, cwd=ROOT)
            rows[case] = json.loads(r.stdout.strip().splitlines()[-1])
            print(case, rows[case])
    out = {"date": datetime.date.today().isoformat(), "machine": machine_line(), "n": args.n,
           "command": "python bench/umap_first_fit.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "cases": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
