"""Our SimCLR / MoCo v2 against lightly's, on one machine, one after the other.

    python bench/train_vs_lightly.py --minutes 10 [--backbone smallcnn|resnet18] \
        [--methods simclr moco] [--lightly-bf16] [--data DIR] [--out bench/results/train_vs_lightly.json]

Same data (Fashion-MNIST train as an unlabeled PNG folder; test for kNN), backbone, image
size (32), batch (256), augmentation recipe, optimizer, lr schedule shape, temperatures and
wall-clock budget for every run. lightly (PyPI `lightly`) is installed by this script into
its own venv, `bench/.venv-lightly`, with our exact torch / torchvision versions, so it
cannot change our pins; bench/lightly_worker.py runs there, written as lightly's
examples write it (PIL transforms in DataLoader workers, fp32). `--lightly-bf16` adds
lightly with bf16 autocast + channels_last (on a CPU without native bf16 it is slow).

Runs, in order: ours simclr, ours moco, lightly simclr, lightly moco (+ bf16 variants).
Each budget starts before its data is read (our decoding, lightly's folder listing
and worker start-up both count). Then, with one evaluation code path
(`pipelines.evaluate`): final kNN top-1 on the full train/test split, the random-init
and raw-pixel baselines, and kNN of the backbone snapshots every budget/5, on a subset
(`--curve-limit-train/--curve-limit-test`) to keep 20+ evaluations affordable on CPU.

Throughput is the median images/s of the steps after the first WARMUP_STEPS (each step
timed from the end of the one before, so data waiting counts), and the mean over all
steps. The compute-bound rate is bench/train_step_speed.py's SimCLR step on pre-made
tensors, at our run's precision and memory format.

Defaults: `--backbone smallcnn`, because ResNet-18 runs ~14 img/s on this 2-core CPU
(bench/results/train_step_speed.json): 10 minutes would be < 40 steps, too few to
compare accuracy. On a GPU machine pass `--backbone resnet18`.
Writes the JSON (--out), the PNG beside it, and run folders under --work.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench.train_step_speed import time_steps  # noqa: E402
from encoders.embed import embed_tensor  # noqa: E402
from encoders.evaluation import raw_pixel_features  # noqa: E402
from encoders.files import atomic_write_json  # noqa: E402
from encoders.runtime import cpu_has_bf16, pick_device, pick_precision  # noqa: E402
from encoders.store import load_encoder  # noqa: E402
from pipelines.evaluate import EvalConfig, evaluate_features, load_split, random_init_like  # noqa: E402

log = logging.getLogger("bench.train_vs_lightly")

LIGHTLY_VENV = ROOT / "bench" / ".venv-lightly"
WARMUP_STEPS = 10
GOAL_VS_LIGHTLY = 2.5
GOAL_VS_COMPUTE = 0.95


def ensure_lightly_venv(venv: Path = LIGHTLY_VENV) -> Path:
    """Create (once) a venv with lightly and our exact torch / torchvision; returns its python."""
    py = venv / "bin" / "python"
    torch_v, tv_v = importlib.metadata.version("torch"), importlib.metadata.version("torchvision")
    check = ("import lightly, safetensors, torch, torchvision; "
             "print(torch.__version__.split('+')[0], torchvision.__version__.split('+')[0])")
    if py.is_file():
        r = subprocess.run([str(py), "-c", check], capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.split() == [torch_v, tv_v]:
            return py
    log.info("installing lightly into %s (torch %s, torchvision %s; minutes, GBs)", venv, torch_v, tv_v)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # `===`: `==` would pick a local +cpu torch build that torchvision cannot load (requirements.txt)
    subprocess.run([str(py), "-m", "pip", "install", "--disable-pip-version-check", f"torch==={torch_v}",
                    f"torchvision=={tv_v}", "lightly", "safetensors"], check=True)
    r = subprocess.run([str(py), "-c", check], capture_output=True, text=True, check=True)
    if r.stdout.split() != [torch_v, tv_v]:
        raise RuntimeError(f"{venv}: lightly's install resolved torch/torchvision {r.stdout.strip()}, "
                           f"not ours ({torch_v} {tv_v}); the comparison would not be like for like")
    return py


def plan_runs(args, lightly_py: Path | None, work: Path) -> list[dict]:
    common = ["--backbone", args.backbone, "--image-size", str(args.image_size),
              "--batch-size", str(args.batch_size), "--minutes", str(args.minutes), "--seed", str(args.seed)]
    if not args.no_knn:  # snapshots feed the kNN-vs-time curve
        common += ["--snapshot-minutes", str(args.minutes / args.snapshots)]
    runs = []
    for m in args.methods:
        runs.append({"name": f"ours-{m}", "impl": "ours", "method": m, "dir": work / f"ours-{m}",
                     "cmd": [sys.executable, "-m", "pipelines.pretrain", "--data", args.data, "--method", m,
                             "--out", str(work / f"ours-{m}"), "--log-every", "1", "--no-progress", *common]})
    variants = [("", [])] + ([("-bf16", ["--bf16"])] if args.lightly_bf16 else [])
    if lightly_py is None:  # --skip-lightly
        variants = []
    for suffix, flag in variants:
        for m in args.methods:
            name = f"lightly-{m}{suffix}"
            runs.append({"name": name, "impl": "lightly", "method": m, "dir": work / name,
                         "cmd": [str(lightly_py), str(ROOT / "bench" / "lightly_worker.py"), "--data", args.data,
                                 "--method", m, "--out", str(work / name), *flag, *common]})
    return runs


def throughput(run_dir: Path, batch_size: int, warmup_steps: int = WARMUP_STEPS) -> dict:
    rates = [r["img_per_s"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
             if "img_per_s" in r]
    after = rates[warmup_steps:] or rates
    return {"median_img_per_s": statistics.median(after), "mean_img_per_s": len(rates) * batch_size /
            sum(batch_size / r for r in rates), "steps": len(rates)}


def evaluate_runs(runs: list[dict], args) -> dict:
    """Final kNN (full split) + baselines, and the kNN-vs-time curve on a subset."""
    device = pick_device("auto")
    full = EvalConfig(dataset="fashion-mnist", probe_iters=0, limit_train=args.limit_train, limit_test=args.limit_test)
    sub = EvalConfig(dataset="fashion-mnist", probe_iters=0, limit_train=args.curve_limit_train,
                     limit_test=args.curve_limit_test)
    out = {}
    for tag, cfg in (("final", full), ("curve", sub)):
        xtr, ytr, xte, yte, _ = load_split(cfg, args.image_size)
        res = {"train_size": len(xtr), "test_size": len(xte)}

        def knn(run_dir: Path) -> float:
            encoder = load_encoder(run_dir, device)
            return evaluate_features(str(run_dir), embed_tensor(encoder, xtr), ytr,
                                     embed_tensor(encoder, xte), yte, cfg)["knn_top1"]

        torch.manual_seed(args.seed)  # the first run's encoder at random init, preprocessed as it is
        rand = random_init_like(load_encoder(runs[0]["dir"], device).cfg, xtr, device)
        res["random_init"] = evaluate_features("random_init", embed_tensor(rand, xtr), ytr,
                                               embed_tensor(rand, xte), yte, cfg)["knn_top1"]
        res["raw_pixels"] = evaluate_features("raw_pixels", raw_pixel_features(xtr), ytr,
                                              raw_pixel_features(xte), yte, cfg)["knn_top1"]
        for run in runs:
            if tag == "final":
                res[run["name"]] = knn(run["dir"])
            else:
                points = []
                for snap in sorted((run["dir"] / "snapshots").glob("step*")) + [run["dir"]]:
                    seconds = json.loads((snap / "summary.json").read_text())["seconds"]
                    points.append([seconds, knn(snap)])
                res[run["name"]] = points
        out[tag] = res
    return out


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = results["knn"]["curve"]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for run in results["runs"]:
        pts = curve[run["name"]]
        ax.plot([s / 60 for s, _ in pts], [a for _, a in pts], marker="o", lw=1.5,
                ls="-" if run["impl"] == "ours" else "--", label=run["name"])
    for key, style in (("random_init", ":"), ("raw_pixels", "-.")):
        ax.axhline(curve[key], color="grey", ls=style, lw=1, label=key.replace("_", " "))
    ax.set_xlabel("wall-clock minutes since the run started")
    ax.set_ylabel(f"kNN top-1 % ({curve['train_size']} train / {curve['test_size']} test)")
    ax.set_title(f"Fashion-MNIST, {results['config']['backbone']}, batch {results['config']['batch_size']}, "
                 f"{results['config']['minutes']:g} min each")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def print_table(results: dict) -> None:
    final = results["knn"]["final"] if results["knn"] else {}
    print(f"\n{'run':<22}{'median img/s':>13}{'mean img/s':>12}{'steps':>7}{'kNN top-1':>11}")
    for run in results["runs"]:
        acc = f"{final[run['name']]:>10.2f}%" if final else f"{'-':>11}"
        print(f"{run['name']:<22}{run['median_img_per_s']:>13.1f}{run['mean_img_per_s']:>12.1f}{run['steps']:>7}{acc}")
    for key in ("random_init", "raw_pixels") if final else ():
        print(f"{key.replace('_', ' '):<54}{final[key]:>10.2f}%")
    print(f"compute-bound (ours, SimCLR step on pre-made tensors): {results['compute_bound_img_per_s']:.1f} img/s")
    for m, c in results["comparison"].items():
        bound = (f", ours/compute-bound {c['ours_over_compute_bound']:.2f} (goal >= {GOAL_VS_COMPUTE})"
                 if "ours_over_compute_bound" in c else "")
        bf16 = f", ours/lightly-bf16 {c['ours_over_lightly_bf16']:.2f}x" if "ours_over_lightly_bf16" in c else ""
        acc = f", kNN ours {c['knn_ours']:.2f}% vs lightly {c['knn_lightly']:.2f}%" if "knn_lightly" in c else ""
        vs = (f"ours/lightly {c['ours_over_lightly']:.2f}x (goal >= {GOAL_VS_LIGHTLY})" if "ours_over_lightly" in c
              else "lightly not run")
        print(f"{m}: {vs}{bf16}{bound}{acc}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0, help="wall-clock budget of each run")
    p.add_argument("--backbone", default="smallcnn", choices=["smallcnn", "resnet18"])
    p.add_argument("--methods", nargs="+", default=["simclr", "moco"], choices=["simclr", "moco"])
    p.add_argument("--lightly-bf16", action="store_true", help="also lightly with bf16 autocast + channels_last")
    p.add_argument("--skip-lightly", action="store_true",
                   help="ours only (no lightly venv): throughput and kNN without the comparison")
    p.add_argument("--data", default=str(ROOT / "data" / "fmnist-train"), help="unlabeled image folder")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--snapshots", type=int, default=5, help="backbone snapshots per run for the kNN curve")
    p.add_argument("--limit-train", type=int, default=None, help="final kNN: train images (default all 60k)")
    p.add_argument("--limit-test", type=int, default=None, help="final kNN: test images (default all 10k)")
    p.add_argument("--curve-limit-train", type=int, default=10000)
    p.add_argument("--curve-limit-test", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warmup-steps", type=int, default=WARMUP_STEPS,
                   help="steps left out of the median throughput (ResNet-18 on CPU: 3 is plenty)")
    p.add_argument("--no-knn", action="store_true",
                   help="throughput only: skip the kNN evaluations (ResNet-18 on CPU: 10 min is < 40 steps)")
    p.add_argument("--work", default=str(ROOT / "runs" / "train_vs_lightly"), help="run folders")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "train_vs_lightly.json"))
    return p.parse_args(argv)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if not Path(args.data).is_dir():
        raise SystemExit(f"error: --data {args.data} is not a folder (make one with pipelines.export_fashion_mnist)")
    lightly_py = None if args.skip_lightly else ensure_lightly_venv()
    lightly_version = None if lightly_py is None else subprocess.run(
        [str(lightly_py), "-c", "import lightly; print(lightly.__version__)"],
        capture_output=True, text=True, check=True).stdout.strip()
    precision = pick_precision("auto", pick_device("auto"))
    compute_bound = time_steps(args.backbone, args.image_size, args.batch_size, precision, True, steps=5)
    log.info("compute-bound SimCLR step (%s, channels_last): %.1f img/s", precision, compute_bound)
    work = Path(args.work)
    runs = plan_runs(args, lightly_py, work)
    for run in runs:
        log.info("running %s for %g min", run["name"], args.minutes)
        shutil.rmtree(run["dir"], ignore_errors=True)  # no snapshots or logs of an earlier run
        t0 = time.perf_counter()
        subprocess.run(run.pop("cmd"), cwd=ROOT, check=True)
        run["wall_s"] = time.perf_counter() - t0
        run.update(throughput(run["dir"], args.batch_size, args.warmup_steps))
        run["epochs"] = json.loads((run["dir"] / "summary.json").read_text())["epoch"]
        run["precision"] = "bf16" if run["name"].endswith("-bf16") else (precision if run["impl"] == "ours" else "fp32")
    knn = None if args.no_knn else evaluate_runs(runs, args)
    by_name = {r["name"]: r for r in runs}
    comparison = {}
    for m in args.methods:
        ours, theirs = by_name[f"ours-{m}"], by_name.get(f"lightly-{m}")
        comparison[m] = {}
        if theirs:
            comparison[m]["ours_over_lightly"] = ours["median_img_per_s"] / theirs["median_img_per_s"]
        if knn:
            comparison[m]["knn_ours"] = knn["final"][ours["name"]]
            if theirs:
                comparison[m]["knn_lightly"] = knn["final"][theirs["name"]]
        if m == "simclr":  # the compute-bound rate is of a SimCLR step
            comparison[m]["ours_over_compute_bound"] = ours["median_img_per_s"] / compute_bound
        if f"lightly-{m}-bf16" in by_name:
            bf16 = by_name[f"lightly-{m}-bf16"]
            comparison[m]["ours_over_lightly_bf16"] = ours["median_img_per_s"] / bf16["median_img_per_s"]
    results = {
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                    "cpu_bf16": cpu_has_bf16(), "device": str(pick_device("auto"))},
        "versions": {"torch": torch.__version__, "lightly": lightly_version},
        "config": {k: v for k, v in vars(args).items() if k not in ("work", "out")},
        "warmup_steps_skipped": args.warmup_steps,
        "compute_bound_img_per_s": compute_bound,
        "runs": [{**r, "dir": str(r["dir"])} for r in runs], "knn": knn, "comparison": comparison,
        "goals": {m: {**({"throughput_vs_lightly": c["ours_over_lightly"] >= GOAL_VS_LIGHTLY}
                         if "ours_over_lightly" in c else {}),
                      **({"knn_above_lightly": c["knn_ours"] > c["knn_lightly"]} if "knn_lightly" in c else {}),
                      **({"throughput_vs_compute_bound": c["ours_over_compute_bound"] >= GOAL_VS_COMPUTE}
                         if "ours_over_compute_bound" in c else {})} for m, c in comparison.items()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, results)
    if knn:
        plot(results, out.with_suffix(".png"))
    print_table(results)
    print(f"wrote {out}" + (f" and {out.with_suffix('.png')}" if knn else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
