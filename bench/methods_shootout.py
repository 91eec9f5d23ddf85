"""Every pretraining method under the same wall-clock budget on this machine, through the
product's own commands, beside raw pixels and the same backbone at random initialisation.

    python bench/methods_shootout.py                       # all methods, 10 / 3 / 3 minutes
    python bench/methods_shootout.py --methods simclr moco --fmnist-minutes 2 --photos-minutes 1

Tasks (collections from bench/datasets.py; pretraining never sees a label):
- fmnist: `pipelines.pretrain --data <60k Fashion-MNIST train PNGs> --minutes F --snapshot-minutes 1`,
  then kNN top-1 and linear probe on the 10k test set (`pipelines.evaluate --dataset
  fashion-mnist`) and NMI/ACC/ARI of the default clusterer (K=10) of the test features, at 1, 2, 5 and F minutes
  (snapshots);
- mixed: pretrain on 5k Fashion-MNIST + 5k MNIST in one folder, NMI/ACC/ARI of the default clusterer (K=20);
- photos: pretrain on the real-photo folder, `pipelines.evaluate --copies` recall@1.
Only `--data`, `--out`, `--method`, `--minutes` (and `--snapshot-minutes`) are passed: every
other setting is the automatic default. Throughput: the median img/s of the run's
metrics.jsonl against the method's compute-bound rate (its training step on tensors
already in memory, no data pipeline). Writes bench/results/methods_shootout.{json,png}.
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import datasets  # noqa: E402
from encoders.embed import embed_tensor  # noqa: E402
from encoders.evaluation import cluster_scores, raw_pixel_features  # noqa: E402
from encoders.fashion_mnist import load_fashion_mnist  # noqa: E402
from encoders.imagefolder import decode_folder  # noqa: E402
from encoders.store import load_encoder  # noqa: E402
from index.clusters import ClusterSettings, cluster_collection  # noqa: E402
from pipelines.evaluate import arrays_to_images, random_init_like  # noqa: E402
from pipelines.pretrain import METHODS  # noqa: E402

log = logging.getLogger("methods_shootout")
RESULTS = ROOT / "bench" / "results"
CHECKPOINTS = (1, 2, 5)  # minutes at which fmnist snapshots are scored, besides the end


def sh(*args: str) -> None:
    cmd = [sys.executable, "-m", *args]
    log.info("$ %s", " ".join(cmd[2:]))
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def pretrain(method: str, data: Path, out: Path, minutes: float, snapshots: bool = False) -> dict:
    sh("pipelines.pretrain", "--data", str(data), "--out", str(out), "--method", method, "--minutes", str(minutes),
       "--no-progress", *(["--snapshot-minutes", "1"] if snapshots else []))
    rates = [json.loads(line)["img_per_s"] for line in (out / "metrics.jsonl").read_text().splitlines()
             if '"img_per_s"' in line]
    cfg = json.loads((out / "config.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    return {"median_img_per_s": statistics.median(rates[1:] or rates), "steps": summary["step"],
            "epochs": summary["epoch"], "auto": cfg["training"].get("auto_reasons", {}),
            "backbone": cfg["backbone"], "image_size": cfg["image_size"], "batch_size": cfg["training"]["batch_size"]}


def nmi_ari(feats: np.ndarray, labels: np.ndarray, k: int) -> dict:
    """NMI, ACC, ARI of the product's default clusterer at the true K, with its seconds."""
    t0 = time.perf_counter()
    pred = cluster_collection(feats, k, ClusterSettings(stability_runs=0)).clustering.labels
    return {**cluster_scores(labels, pred), "cluster_seconds": round(time.perf_counter() - t0, 2)}


def fmnist_scores(run: Path, linear: bool, with_baselines: bool = False) -> dict:
    """kNN (+ linear) through `pipelines.evaluate`, and NMI of the test features; raw pixels
    and random init are scored once, with the first method."""
    out = run / "eval_shootout.json"
    sh("pipelines.evaluate", "--encoder", str(run), "--dataset", "fashion-mnist", "--out", str(out),
       *([] if linear else ["--probe-iters", "0"]), *(["--baselines"] if with_baselines else []))
    r = json.loads(out.read_text())["pretrained"]
    encoder = load_encoder(run, torch.device("cpu"))
    x, y = load_fashion_mnist("test")
    feats = embed_tensor(encoder, arrays_to_images(x, encoder.cfg.image_size))
    scores = {"knn": r["knn_top1"], **nmi_ari(feats, y, 10)}
    if linear:
        scores["linear"] = r["linear_top1"]
    return scores


def snapshot_at(run: Path, minutes: float) -> Path | None:
    """The last snapshot taken at or before `minutes` into the run."""
    best = None
    for snap in sorted((run / "snapshots").glob("step*")):
        if json.loads((snap / "summary.json").read_text())["seconds"] <= minutes * 60 + 5:
            best = snap
    return best


def run_fmnist(method: str, work: Path, minutes: float, with_baselines: bool = False) -> dict:
    run = work / f"{method}-fmnist"
    res = pretrain(method, datasets.get("fmnist-train"), run, minutes, snapshots=True)
    curve = {}
    for m in [c for c in CHECKPOINTS if c < minutes]:
        snap = snapshot_at(run, m)
        if snap is not None:
            curve[m] = fmnist_scores(snap, linear=False)
    curve[minutes] = fmnist_scores(run, linear=True, with_baselines=with_baselines)
    return {**res, "curve": curve, "final": curve[minutes]}


def run_mixed(method: str, work: Path, minutes: float) -> dict:
    folder = datasets.get("mixed")
    run = work / f"{method}-mixed"
    res = pretrain(method, folder, run, minutes)
    encoder = load_encoder(run, torch.device("cpu"))
    paths, images, _ = decode_folder(folder, encoder.cfg.image_size, progress=False)
    return {**res, "final": nmi_ari(embed_tensor(encoder, images), datasets.labels_for(folder, paths), 20)}


def run_photos(method: str, work: Path, minutes: float) -> dict:
    folder = datasets.get("photos")
    run = work / f"{method}-photos"
    res = pretrain(method, folder, run, minutes)
    sh("pipelines.evaluate", "--encoder", str(run), "--copies", str(folder))
    r = json.loads((run / "eval_copies.json").read_text())
    return {**res, "final": {"recall_at_1": r["encoder"]["recall_at_1"], "by_edit": r["encoder"]["by_edit"]},
            "raw_pixels": r["raw_pixels"]}


def baselines(encoder_run: Path) -> dict:
    """Raw pixels and the same backbone at random init, at the encoder's image size."""
    enc = load_encoder(encoder_run, torch.device("cpu")).cfg
    torch.manual_seed(0)
    out = {}
    x, y = load_fashion_mnist("test")
    test = arrays_to_images(x, enc.image_size)
    rand = random_init_like(enc, test, "cpu")
    out["fmnist_raw"] = nmi_ari(raw_pixel_features(test), y, 10)
    out["fmnist_random"] = nmi_ari(embed_tensor(rand, test), y, 10)
    folder = datasets.get("mixed")
    paths, images, _ = decode_folder(folder, enc.image_size, progress=False)
    labels = datasets.labels_for(folder, paths)
    out["mixed_raw"] = nmi_ari(raw_pixel_features(images), labels, 20)
    out["mixed_random"] = nmi_ari(embed_tensor(random_init_like(enc, images, "cpu"), images), labels, 20)
    r = json.loads((encoder_run / "eval_shootout.json").read_text())
    if "raw_pixels" in r:
        out["fmnist_raw"].update(knn=r["raw_pixels"]["knn_top1"], linear=r["raw_pixels"]["linear_top1"])
        out["fmnist_random"].update(knn=r["random_init"]["knn_top1"], linear=r["random_init"]["linear_top1"])
    return out


def compute_bound(method: str, backbone: str, size: int, batch: int, steps: int = 5) -> float:
    """img/s of the method's training step (forward, backward, optimizer, state updates) on
    views already in memory: no decoding, no augmentation."""
    from encoders.methods import EpochContext
    from pipelines.pretrain import LR_DEFAULTS, PretrainConfig, build_method
    from pipelines.train_loop import kmeans_labels

    cfg = PretrainConfig(method=method, backbone=backbone, image_size=size, batch_size=batch, small_stem=size <= 64,
                         images=batch)  # the method's own settings at their defaults
    model = build_method(cfg).to(memory_format=torch.channels_last).train()
    # the between-epoch hook on random features (DeepCluster: pseudo-labels); its own cost is not timed
    model.on_epoch_start(0, EpochContext(embed_all=lambda: torch.randn(batch, model.backbone.feat_dim),
                                         kmeans=kmeans_labels, forget_optimizer_state=lambda params: None))
    opt = torch.optim.AdamW(model.parameters(), lr=LR_DEFAULTS["adamw"][0])
    spec = model.views
    local = spec.local_px(size)
    views = [torch.randn(batch, 3, size, size) for _ in range(spec.n_global)]
    views += [torch.randn(batch, 3, local, local) for _ in range(spec.n_local)]
    views = [v.contiguous(memory_format=torch.channels_last) for v in views]
    indices = torch.arange(batch)
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        loss = model.training_loss(views, indices)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.after_optimizer_step(i, steps + 2)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    base = results.get("baselines", {})
    ax = axes[0]
    for m, r in results["methods"].items():
        if "fmnist" in r:
            xs = sorted(r["fmnist"]["curve"], key=float)
            ax.plot([float(x) for x in xs], [r["fmnist"]["curve"][x]["knn"] for x in xs], "o-", label=m)
    if "knn" in base.get("fmnist_raw", {}):
        ax.axhline(base["fmnist_raw"]["knn"], color="grey", ls="--", label="raw pixels")
        ax.axhline(base["fmnist_random"]["knn"], color="grey", ls=":", label="random init")
    ax.set(xlabel="pretraining minutes (2-core CPU)", ylabel="kNN top-1 (%)", title="Fashion-MNIST kNN")
    ax.legend()
    for ax, task, key, title in ((axes[1], "mixed", "nmi", "clustering NMI, mixed folder (K=20)"),
                                 (axes[2], "photos", "recall_at_1", "copy detection recall@1, real photos")):
        names = [m for m in results["methods"] if task in results["methods"][m]]
        vals = [results["methods"][m][task]["final"][key] for m in names]
        ax.bar(names, vals, color="tab:blue")
        ref = base.get("mixed_raw", {}).get("nmi") if task == "mixed" else next(
            (results["methods"][m]["photos"]["raw_pixels"]["recall_at_1"] for m in names), None)
        if ref is not None:
            ax.axhline(ref, color="grey", ls="--", label="raw pixels")
            ax.legend()
        ax.set(title=title, ylim=(0, 1))
    fig.suptitle(f"{results['machine']}, {results['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", nargs="+", default=sorted(METHODS), choices=sorted(METHODS))
    p.add_argument("--tasks", nargs="+", default=["fmnist", "mixed", "photos"])
    p.add_argument("--fmnist-minutes", type=float, default=10.0)
    p.add_argument("--mixed-minutes", type=float, default=3.0)
    p.add_argument("--photos-minutes", type=float, default=3.0)
    p.add_argument("--work", default="/tmp/shootout")
    p.add_argument("--out", default=str(RESULTS / "methods_shootout.json"))
    args = p.parse_args(argv)
    work = Path(args.work)
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {}
    results.update(machine=f"{torch.get_num_threads()}-thread CPU, torch {torch.__version__}",
                   date=time.strftime("%Y-%m-%d"), budgets={t: getattr(args, f"{t}_minutes") for t in args.tasks})
    results.setdefault("methods", {})
    runners = {"fmnist": run_fmnist, "mixed": run_mixed, "photos": run_photos}
    for method in args.methods:
        r = results["methods"].setdefault(method, {})
        for task in args.tasks:
            extra = {"with_baselines": True} if task == "fmnist" and method == args.methods[0] else {}
            r[task] = runners[task](method, work, getattr(args, f"{task}_minutes"), **extra)
            t = r[task]
            t["compute_bound_img_per_s"] = compute_bound(method, t["backbone"], t["image_size"], t["batch_size"])
            t["vs_compute_bound"] = t["median_img_per_s"] / t["compute_bound_img_per_s"]
            log.info("%s %s: %s", method, task, json.dumps(t["final"]))
            out.write_text(json.dumps(results, indent=1))
    if "fmnist" in args.tasks:
        results["baselines"] = baselines(work / f"{args.methods[0]}-fmnist")
    out.write_text(json.dumps(results, indent=1))
    plot(results, out.with_suffix(".png"))
    print_summary(results)
    return 0


def print_summary(results: dict) -> None:
    print(f"\n{'method':<12}{'FMNIST kNN':>11}{'linear':>8}{'NMI':>6}{'mixed NMI':>10}{'copies R@1':>11}{'img/s':>7}"
          f"{'/bound':>7}")
    for m, r in results["methods"].items():
        f, x, ph = r.get("fmnist", {}), r.get("mixed", {}), r.get("photos", {})
        fin = f.get("final", {})
        print(f"{m:<12}{fin.get('knn', float('nan')):>11.2f}{fin.get('linear', float('nan')):>8.2f}"
              f"{fin.get('nmi', float('nan')):>6.3f}{x.get('final', {}).get('nmi', float('nan')):>10.3f}"
              f"{ph.get('final', {}).get('recall_at_1', float('nan')):>11.3f}"
              f"{f.get('median_img_per_s', float('nan')):>7.0f}{f.get('vs_compute_bound', float('nan')):>7.2f}")
    b = results.get("baselines", {})
    for name in ("raw", "random"):
        fr, mx = b.get(f"fmnist_{name}", {}), b.get(f"mixed_{name}", {})
        print(f"{name + ' pixels' if name == 'raw' else 'random init':<12}{fr.get('knn', float('nan')):>11.2f}"
              f"{fr.get('linear', float('nan')):>8.2f}{fr.get('nmi', float('nan')):>6.3f}"
              f"{mx.get('nmi', float('nan')):>10.3f}")
    scored = {m: r for m, r in results["methods"].items() if "fmnist" in r}
    if scored:
        best = max(scored, key=lambda m: scored[m]["fmnist"]["final"]["knn"])
        print(f"\nbest Fashion-MNIST kNN in the budget: {best}. `auto` trains simclr by default: see "
              f"docs/results.md for why.")


if __name__ == "__main__":
    sys.exit(main())
