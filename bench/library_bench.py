"""The README's one command on a phone-style library: wall time and peak memory of every phase.

    nice -n 10 python bench/library_bench.py --photos 1000 --megapixels 12
        -> bench/results/library_bench_1000x12mp.{json,png}
    nice -n 10 python bench/library_bench.py --copies-check
        -> bench/results/library_bench_copies.json (quality report: full-size vs working-size edits)
    python bench/library_bench.py --refresh-check --photos 1000 --megapixels 3 --big-share 0
        -> bench/results/library_refresh_1000x3mp.json (copy recall before/after `demo --refresh`
           on a library that doubled)
    python bench/library_bench.py --smoke      (tests/test_bench_smoke.py: 12 small photos, seconds)

The library (bench/library_gen.py: distinct crops of real photos at --megapixels, 5% at 48 MP,
EXIF orientation, nested date folders, HEIC/AVIF, exact and near copies) is generated once into
data/library-NxMmp/ and reused. The bench then runs
`python -m pipelines.demo --data LIBRARY --no-serve --run R --index I --minutes MINUTES` as a
child process, with its run and index folders under bench/results/tmp/, and samples the
proportional memory (PSS: shared pages split between the processes sharing them, so the
DataLoader workers forked from the main process are not counted twice) of the whole process
tree every 0.2 s. Phases are cut at the lines the pipelines log:

  scan     start -> "N image files under" (listing, headers, pretrain's automatic settings)
  decode   -> "images decoded at"           (pretrain's decode-once cache)
  pretrain -> "saved ...encoder"            (training + whitening fit)
  embed    -> "embedded N images in"        (build_index: list, hash, decode, forward pass)
  index    -> "index ...: embedded"         (FAISS build + write)
  cluster  -> "wrote .../clusters.json"
  report   -> exit                          (pipelines.evaluate --copies)

Wall times depend on the CPU and on other jobs sharing it (the JSON records the CPU and the load
average at the start: run it alone); peak memory does not depend on load. The 100k figures of
docs/benchmarks.md are worked out on paper from the slopes between the 1k and 10k runs.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.library_gen import SOURCES, collect_sources, make_library  # noqa: E402
from bench.machine import machine_line  # noqa: E402
from encoders.files import atomic_write_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
PHASES = [("scan", r"image files under"), ("decode", r"images decoded at"), ("pretrain", r"saved .*encoder"),
          ("embed", r"embedded \d+ images in"), ("index", r"index .*: embedded"), ("cluster", r"wrote .*clusters"),
          ("report", None)]


def tree_pss_kb(root: int) -> int:
    """Proportional set size (kB) of `root` and all its descendants (0 for those already gone)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


class Sampler(threading.Thread):
    """Samples (seconds since start, tree PSS in kB) every `every` s until the process exits."""

    def __init__(self, proc: subprocess.Popen, t0: float, every: float = 0.2):
        super().__init__(daemon=True)
        self.proc, self.t0, self.every, self.samples = proc, t0, every, []

    def run(self) -> None:
        while self.proc.poll() is None:
            self.samples.append((time.perf_counter() - self.t0, tree_pss_kb(self.proc.pid)))
            time.sleep(self.every)


def run_measured(cmd: list[str]) -> dict:
    """A child process, its output lines timed and its tree's memory sampled
    -> {"cmd", "lines": [(t, line)], "samples": [(t, kB)], "seconds", "rc"}."""
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    sampler = Sampler(proc, t0)
    sampler.start()
    lines = []
    for line in proc.stdout:
        lines.append((time.perf_counter() - t0, line.rstrip("\n")))
        if "%|" not in line:
            print(line, end="", flush=True)
    rc = proc.wait()
    seconds = time.perf_counter() - t0
    sampler.join()
    return {"cmd": cmd, "lines": lines, "samples": sampler.samples, "seconds": seconds, "rc": rc}


def peak_mb(samples: list[tuple[float, int]], start: float = 0.0, end: float = float("inf")) -> int:
    return round(max((kb for s, kb in samples if start <= s <= end), default=0) / 1024)


def split_phases(run: dict) -> list[dict]:
    """Phase boundaries from the log lines -> [{"phase", "start", "seconds", "peak_pss_mb"}]."""
    bounds, t = [], 0.0
    for name, pattern in PHASES:
        end = run["seconds"] if pattern is None else next(
            (s for s, line in run["lines"] if s >= t and re.search(pattern, line)), None)
        if end is None:
            bounds.append({"phase": name, "start": round(t, 2), "seconds": None, "peak_pss_mb": None})
            continue
        bounds.append({"phase": name, "start": round(t, 2), "seconds": round(end - t, 2),
                       "peak_pss_mb": peak_mb(run["samples"], t, end + 0.25)})  # + one sampling period
        t = end
    return bounds


def plot(result: dict, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t, kb = zip(*result["samples"]) if result["samples"] else ((0,), (0,))
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(t, [k / 1024 for k in kb], lw=1)
    for i, ph in enumerate(result["phases"]):
        ax.axvline(ph["start"], color="grey", lw=0.5)
        ax.text(ph["start"], ax.get_ylim()[1] * (0.97 - 0.06 * (i % 3)), f" {ph['phase']}", fontsize=8, va="top")
    lib = result["library"]["params"]
    ax.set(xlabel=f"seconds ({result['machine']})", ylabel="memory of the process tree (PSS, MB)",
           title=f"pipelines.demo on {lib['photos']} photos at {lib['megapixels']:g} MP: "
                 f"{result['seconds']:.0f} s, peak {result['peak_pss_mb']:.0f} MB")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def bench_library(args) -> dict:
    """Make (or find) the library, run the demo on it, measure."""
    name = f"library-{args.photos}x{args.megapixels:g}mp"
    library = Path(args.data or REPO / "data" / name)
    work = Path(args.work or RESULTS / "tmp" / f"library_bench-{name}")
    sources = collect_sources(work / "sources", packages=()) if args.smoke else None
    t = time.perf_counter()
    desc = make_library(library, args.photos, args.megapixels, args.big_share, args.seed, sources)
    print(f"library {library}: {desc['formats']}, {desc['sideways']} sideways, {desc['big']} at 48 MP, "
          f"{desc['bytes'] / 1e9:.2f} GB ({time.perf_counter() - t:.0f} s to make or find)", flush=True)
    if not args.keep_run:
        for sub in ("run", "index"):
            shutil.rmtree(work / sub, ignore_errors=True)
    machine = machine_line()
    run = run_measured([sys.executable, "-m", "pipelines.demo", "--data", str(library), "--no-serve",
                        "--run", str(work / "run"), "--index", str(work / "index"), "--minutes", str(args.minutes),
                        *shlex.split(args.demo_args)])
    return {"library": {k: v for k, v in desc.items() if k != "sources"}, "library_dir": str(library),
            "command": " ".join(["python", *run["cmd"][1:]]), "rc": run["rc"], "seconds": round(run["seconds"], 1),
            "peak_pss_mb": peak_mb(run["samples"]), "phases": split_phases(run),
            "machine": machine, "date": datetime.date.today().isoformat(),
            "samples": [(round(s, 2), kb) for s, kb in run["samples"]],
            "log_tail": [line for _, line in run["lines"] if "%|" not in line][-40:]}


def copies_check(args) -> dict:
    """The quality report on the source photos at full resolution and at smaller working sizes:
    recall@1 per edit, time and peak memory of each (the working size must not change the verdicts)."""
    encoder = Path(args.encoder)
    folder = Path(args.data or SOURCES)
    if not folder.is_dir():
        collect_sources()
    out = {"folder": str(folder), "encoder": str(encoder), "runs": {}}
    for size in args.working_sizes:
        report = RESULTS / "tmp" / f"copies-{size}.json"
        run = run_measured([sys.executable, "-m", "pipelines.evaluate", "--encoder", str(encoder), "--copies",
                            str(folder), "--copies-working-size", str(size), "--out", str(report)])
        r = json.loads(report.read_text())
        out["runs"]["full" if size == 0 else str(size)] = {
            "recall_at_1": r["encoder"]["recall_at_1"], "by_edit": r["encoder"]["by_edit"],
            "raw_pixels": r["raw_pixels"]["recall_at_1"], "images": r["images"], "edited": r["edited"],
            "seconds": round(run["seconds"], 1), "peak_pss_mb": peak_mb(run["samples"])}
    return out


def refresh_check(args) -> dict:
    """The encoder keeping up with a library that doubled: an encoder trained (--minutes) on the first
    half of the library by date, the quality report on the whole library with it (before), after
    `pipelines.demo --refresh` (a --refresh-minutes warm start on the whole library), and, for
    reference, an encoder trained from scratch on the whole library for the same --refresh-minutes."""
    from encoders.copies import REPORT_FILE

    name = f"library-{args.photos}x{args.megapixels:g}mp"
    library = Path(args.data or REPO / "data" / name)
    desc = make_library(library, args.photos, args.megapixels, args.big_share, args.seed)
    half = library.with_name(library.name + "-first-half")
    photos = sorted(p for p in library.rglob("*") if p.is_file() and p.parts[len(library.parts)][:1].isdigit())
    if not half.is_dir():  # hard links: no second copy of the bytes, the library itself untouched
        for p in photos[: len(photos) // 2]:
            (half / p.relative_to(library)).parent.mkdir(parents=True, exist_ok=True)
            os.link(p, half / p.relative_to(library))
    work = Path(args.work or RESULTS / "tmp" / f"library_refresh-{name}")
    shutil.rmtree(work, ignore_errors=True)
    run, demo = work / "run", [sys.executable, "-m", "pipelines.demo", "--no-serve", "--run", str(work / "run")]
    steps = {}

    def report(folder: Path) -> dict:
        r = json.loads((folder / REPORT_FILE).read_text())
        return {"recall_at_1": r["encoder"]["recall_at_1"], "by_edit": r["encoder"]["by_edit"],
                "raw_pixels": r["raw_pixels"]["recall_at_1"], "images": r["images"]}

    for step, argv in (("train on the first half", [*demo, "--data", str(half), "--index", str(work / "half"),
                                                    "--minutes", str(args.minutes), "--no-eval"]),
                       ("before: whole library, old encoder", [*demo, "--data", str(library),
                                                               "--index", str(work / "index")]),
                       ("after: --refresh", [*demo, "--data", str(library), "--index", str(work / "index"),
                                             "--refresh", "--refresh-minutes", str(args.refresh_minutes)])):
        r = run_measured(argv)
        if r["rc"]:
            raise RuntimeError(f"{shlex.join(argv)} failed:\n" + "\n".join(line for _, line in r["lines"][-20:]))
        lines = [line for _, line in r["lines"] if "more than the" in line or "warm start" in line]
        steps[step] = {"command": " ".join(["python", *argv[1:]]), "seconds": round(r["seconds"], 1),
                       "peak_pss_mb": peak_mb(r["samples"]), "said": lines,
                       **(report(run) if "--no-eval" not in argv else {})}
    scratch = work / "scratch"
    argv = [sys.executable, "-m", "pipelines.pretrain", "--data", str(library), "--out", str(scratch),
            "--minutes", str(args.refresh_minutes)]
    r = run_measured(argv)
    ev = run_measured([sys.executable, "-m", "pipelines.evaluate", "--encoder", str(scratch), "--copies", str(library)])
    steps["reference: from scratch on the whole library, same minutes as the refresh"] = {
        "command": " ".join(["python", *argv[1:]]), "seconds": round(r["seconds"] + ev["seconds"], 1),
        **report(scratch)}
    return {"library": {k: v for k, v in desc.items() if k not in ("sources", "copies")}, "library_dir": str(library),
            "first_half": len(photos) // 2, "photos": len(photos), "minutes": args.minutes,
            "refresh_minutes": args.refresh_minutes, "steps": steps,
            "machine": machine_line(), "date": datetime.date.today().isoformat()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", type=int, default=1000)
    p.add_argument("--megapixels", type=float, default=12)
    p.add_argument("--big-share", type=float, default=0.05, help="share of the photos at 48 MP")
    p.add_argument("--minutes", type=float, default=4.0, help="pretraining budget (the demo's default)")
    p.add_argument("--demo-args", default="", help="more pipelines.demo flags")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None, help="library folder (default data/library-NxMmp)")
    p.add_argument("--work", default=None, help="run + index folders (default bench/results/tmp/...)")
    p.add_argument("--keep-run", action="store_true", help="keep an earlier run: measure the reuse path")
    p.add_argument("--out", default=None, help="JSON (default bench/results/library_bench_NxMmp.json)")
    p.add_argument("--smoke", action="store_true", help="12 photos at 0.3 MP, 0.1 min: the smoke test")
    p.add_argument("--copies-check", action="store_true",
                   help="instead: the quality report at full size vs working sizes, on --data (default the sources)")
    p.add_argument("--encoder", default=None, help="with --copies-check: the run folder to evaluate")
    p.add_argument("--working-sizes", type=int, nargs="+", default=[0, 1024, 512, 384])
    p.add_argument("--refresh-check", action="store_true",
                   help="instead: copy recall of an encoder trained on the first half, before and after "
                        "`pipelines.demo --refresh` on the whole library")
    p.add_argument("--refresh-minutes", type=float, default=2.0, help="with --refresh-check: the refresh budget")
    args = p.parse_args(argv)
    if args.refresh_check:
        out = Path(args.out or RESULTS / f"library_refresh_{args.photos}x{args.megapixels:g}mp.json")
        atomic_write_json(out, refresh_check(args))
        for step, r in json.loads(out.read_text())["steps"].items():
            print(f"{step:70s} copies found first {r.get('recall_at_1', float('nan')):.3f} "
                  f"(raw pixels {r.get('raw_pixels', float('nan')):.3f})  {r['seconds']:.0f} s")
        return 0
    if args.copies_check:
        if not args.encoder:
            p.error("--copies-check needs --encoder RUN_DIR")
        out = Path(args.out or RESULTS / "library_bench_copies.json")
        atomic_write_json(out, copies_check(args))
        print(json.dumps(json.loads(out.read_text())["runs"], indent=1))
        return 0
    if args.smoke:
        args.photos, args.megapixels, args.big_share, args.minutes = 12, 0.3, 0.0, 0.1
    result = bench_library(args)
    out = Path(args.out or RESULTS / f"library_bench_{args.photos}x{args.megapixels:g}mp.json")
    atomic_write_json(out, result)
    plot(result, out.with_suffix(".png"))
    for ph in result["phases"]:
        print(f"{ph['phase']:>9s} {ph['seconds'] or float('nan'):8.1f} s  peak {ph['peak_pss_mb'] or 0:6d} MB")
    print(f"{'total':>9s} {result['seconds']:8.1f} s  peak {result['peak_pss_mb']:6d} MB  -> {out}")
    return result["rc"]


if __name__ == "__main__":
    sys.exit(main())
