"""The encoder's read-out: global average ("avg") vs the 2x2 quadrant averages ("grid", whitened to
all its dimensions or to the backbone's width), on the same trained backbones, for clustering
(labelled collections, through the product's default clusterer, raw pixels beside) and for finding
edited copies of photos (`pipelines.evaluate --copies`' edits).

    python bench/readout_bench.py --encoder fmnist=RUN_A mixed=RUN_B mnist-5k=RUN_C --photos-encoder RUN_D
    python bench/readout_bench.py --smoke --out /tmp/x.json

Collections: fmnist = the 10k Fashion-MNIST test images (RUN_A pretrained on the 60k training images);
mixed, mnist-5k, photos = the folders of bench/datasets.py (each encoder pretrained on its folder).
Whitening is fitted on each collection's own embeddings, as pretraining fits it on its folder.
Writes bench/results/readout.json.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import datasets  # noqa: E402
from bench.machine import machine_line  # noqa: E402
from encoders.copies import copy_recall, make_copies, prepare_original  # noqa: E402
from encoders.embed import Encoder, embed_tensor  # noqa: E402
from encoders.evaluation import cluster_scores, knn_accuracy, raw_pixel_features  # noqa: E402
from encoders.fashion_mnist import load_fashion_mnist  # noqa: E402
from encoders.imagefolder import decode_images, open_rgb  # noqa: E402
from encoders.store import load_encoder  # noqa: E402
from index.clusters import ClusterSettings, cluster_collection  # noqa: E402
from pipelines.evaluate import arrays_to_images  # noqa: E402

log = logging.getLogger("readout_bench")
RESULTS = ROOT / "bench" / "results"


def variants(enc: Encoder, images: torch.Tensor) -> dict[str, Encoder]:
    """The same backbone read out three ways, each whitened on `images`."""
    d = enc.cfg.feat_dim
    out = {}
    for name, readout, dims in (("avg", "avg", 0), ("grid", "grid", 0), (f"grid, whitened to {d}", "grid", d)):
        plain = Encoder(enc.backbone, replace(enc.cfg, readout=readout, whiten=False, whiten_dim=dims))
        out[name] = plain.with_whitening(images) if enc.cfg.whiten else plain
    return out


def clustering(x: np.ndarray, y: np.ndarray) -> dict:
    k = len(np.unique(y))
    t0 = time.perf_counter()
    fixed = cluster_collection(x, k, ClusterSettings(stability_runs=0))
    auto = cluster_collection(x, None, ClusterSettings(stability_runs=0))
    return {**{m: round(v, 4) for m, v in cluster_scores(y, fixed.clustering.labels).items()},
            "auto_k": auto.k, "auto_nmi": round(cluster_scores(y, auto.clustering.labels)["nmi"], 4),
            "seconds": round(time.perf_counter() - t0, 1)}


def copies(enc: Encoder, folder: Path) -> dict:
    """Recall@1 of the original for every edit of every photo (the report's edits, 512 px working size)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".json"))
    originals = [prepare_original(open_rgb(p, draft_size=512), 512) for p in files]
    edited, src, names = make_copies(originals, seed=0)
    size = enc.cfg.image_size
    db_images, q_images = decode_images(originals, size), decode_images(edited, size)
    out = {}
    for name, e in variants(enc, db_images).items():
        out[name] = copy_recall(embed_tensor(e, db_images), embed_tensor(e, q_images), src, names)
    out["raw pixels"] = copy_recall(raw_pixel_features(db_images), raw_pixel_features(q_images), src, names)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--encoder", nargs="*", default=[], help="COLLECTION=RUN_DIR (fmnist, mixed, mnist-5k)")
    p.add_argument("--photos-encoder", type=Path, help="an encoder pretrained on data/bench/photos")
    p.add_argument("--limit", type=int, default=None, help="images per collection (default: all)")
    p.add_argument("--smoke", action="store_true", help="a tiny run on a 2-step encoder (tests)")
    p.add_argument("--out", type=Path, default=RESULTS / "readout.json")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    runs = dict(item.split("=", 1) for item in a.encoder)
    if a.smoke:
        from cluster_bench import smoke_encoder

        runs, a.limit = {"fmnist": str(smoke_encoder(a.out.parent / "smoke-encoder"))}, a.limit or 300
    results = {"machine": machine_line(),
               "date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv), "encoders": runs,
               "clustering": {}, "copies": None}
    for name, run in runs.items():
        enc = load_encoder(run)
        images, y = datasets.labelled_images(name, enc.cfg.image_size)
        images, y = images[:a.limit], y[:a.limit]
        row = {v: clustering(embed_tensor(e, images), y) for v, e in variants(enc, images).items()}
        row["raw pixels"] = clustering(raw_pixel_features(images), y)
        if name == "fmnist":  # kNN classification of the test images by the 60k training images
            xtr, ytr = load_fashion_mnist("train")
            train = arrays_to_images(xtr[:a.limit], enc.cfg.image_size)
            for v, e in variants(enc, train).items():
                row[v]["knn_top1"] = round(knn_accuracy(embed_tensor(e, train), ytr[:a.limit],
                                                        embed_tensor(e, images), y), 4)
        results["clustering"][name] = row
        for v, r in row.items():
            log.info("%s %s: NMI %.3f ACC %.3f, automatic K %d (true %d) NMI %.3f, kNN %s", name, v, r["nmi"],
                     r["acc"], r["auto_k"], len(np.unique(y)), r["auto_nmi"], r.get("knn_top1", "-"))
    if a.photos_encoder:
        results["copies"] = copies(load_encoder(a.photos_encoder), datasets.get("photos"))
        for v, r in results["copies"].items():
            log.info("photos copies %s: recall@1 %.3f", v, r["recall_at_1"])
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=1))
    log.info("wrote %s", a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
