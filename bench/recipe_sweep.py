"""Recipe sweeps on short proxies: pretrain in-process, then score the encoder on the jobs
the product does, beside raw pixels.

    python bench/recipe_sweep.py --data fmnist-10k --steps 300 --set backbone=smallcnn lr=1e-3 ...
    python bench/recipe_sweep.py --data photos --minutes 3 --eval photos
    python bench/recipe_sweep.py --baselines-only --eval fmnist mixed photos

Scores: `fmnist` kNN top-1 (60k bank -> 10k test, k=200, T=0.1) and K-means NMI (K=10, test
set); `mixed` K-means NMI/ARI (K=20) on the Fashion-MNIST + MNIST folder; `photos` copy
detection recall@1 (bench/datasets.py photos, every edit of encoders.copies). Appends one
JSON line per run to bench/results/recipe_sweep.jsonl.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import datasets  # noqa: E402  (bench/datasets.py)
from encoders.copies import copy_recall, make_copies  # noqa: E402
from encoders.embed import Encoder, EncoderConfig, embed_images, embed_tensor  # noqa: E402
from encoders.evaluation import knn_accuracy, raw_pixel_features  # noqa: E402
from encoders.fashion_mnist import load_fashion_mnist  # noqa: E402
from encoders.imagefolder import decode_folder, decode_images, open_rgb, scan_images  # noqa: E402
from encoders.store import load_encoder  # noqa: E402
from methods_shootout import nmi_ari  # noqa: E402  (bench/methods_shootout.py)
from pipelines.evaluate import arrays_to_images  # noqa: E402
from pipelines.pretrain import parse_args, run  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "recipe_sweep.jsonl"
log = logging.getLogger("recipe_sweep")
_CACHE: dict = {}


def cached(key, fn):
    if key not in _CACHE:
        _CACHE[key] = fn()
    return _CACHE[key]


def features(encoder: Encoder | None, images: torch.Tensor) -> np.ndarray:
    return raw_pixel_features(images) if encoder is None else embed_tensor(encoder, images)


def variant(encoder: Encoder, **changes) -> Encoder:
    """The same backbone and whitening, embedding with other test-time options."""
    cfg = replace(encoder.cfg, **changes)
    return Encoder(encoder.backbone, cfg, encoder.whiten if cfg.whiten else None)


def eval_fmnist(encoder: Encoder | None, enc: EncoderConfig) -> dict:
    s = enc.image_size
    xtr, ytr = load_fashion_mnist("train")
    xte, yte = load_fashion_mnist("test")
    tr = cached(("fm-tr", s), lambda: arrays_to_images(xtr, s))
    te = cached(("fm-te", s), lambda: arrays_to_images(xte, s))
    ftr, fte = features(encoder, tr), features(encoder, te)
    out = {"knn": knn_accuracy(ftr, ytr, fte, yte), **nmi_ari(fte, yte, 10)}
    if encoder is not None:
        c_tr, c_te = centred(ftr, fte)
        out["centred"] = {"knn": knn_accuracy(c_tr, ytr, c_te, yte), **nmi_ari(c_te, yte, 10)}
        flipped = variant(encoder, flip_average=not enc.flip_average)
        ftr, fte = features(flipped, tr), features(flipped, te)
        out[f"flip_{flipped.cfg.flip_average}"] = {"knn": knn_accuracy(ftr, ytr, fte, yte), **nmi_ari(fte, yte, 10)}
    return out


def eval_mixed(encoder: Encoder | None, enc: EncoderConfig) -> dict:
    folder = datasets.get("mixed")
    paths, images, _ = cached(("mixed", enc.image_size), lambda: decode_folder(folder, enc.image_size, progress=False))
    labels = datasets.labels_for(folder, paths)
    f = features(encoder, images)
    out = nmi_ari(f, labels, 20)
    if encoder is not None:
        out["centred"] = nmi_ari(centred(f)[0], labels, 20)
        flipped = variant(encoder, flip_average=not enc.flip_average)
        out[f"flip_{flipped.cfg.flip_average}"] = nmi_ari(features(flipped, images), labels, 20)
    return out


def centred(db: np.ndarray, *others: np.ndarray):
    """Subtract the collection's mean embedding, renormalise (the queries get the same shift)."""
    mu = db.mean(0, keepdims=True)

    def norm(x):
        return (x - mu) / np.linalg.norm(x - mu, axis=1, keepdims=True).clip(1e-8)
    return (norm(db), *(norm(o) for o in others))


def eval_photos(encoder: Encoder | None, enc: EncoderConfig, raw_size: int = 16) -> dict:
    folder = datasets.get("photos")
    originals = cached("photos", lambda: [open_rgb(p) for p in scan_images(folder)])
    copies, src, names = cached("copies", lambda: make_copies(originals, seed=0))
    if encoder is None:
        db = raw_pixel_features(decode_images(originals, raw_size))
        q = raw_pixel_features(decode_images(copies, raw_size))
        return copy_recall(db, q, src, names)
    out = {}
    for flip, grey in ((False, False), (True, False), (True, True)):
        averaged = variant(encoder, flip_average=flip, grey_average=grey)
        db, q = embed_images(averaged, originals), embed_images(averaged, copies)
        tag = "flip" * flip + "grey" * grey or "plain"
        out[tag] = copy_recall(db, q, src, names)
    return out


EVALS = {"fmnist": eval_fmnist, "mixed": eval_mixed, "photos": eval_photos}


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="fmnist-10k", choices=list(datasets.BUILDERS))
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--minutes", type=float, default=None)
    p.add_argument("--set", nargs="*", default=[], help="pretraining option=value (a pipelines.pretrain flag)")
    p.add_argument("--eval", nargs="*", default=["fmnist"], choices=list(EVALS))
    p.add_argument("--baselines-only", action="store_true")
    p.add_argument("--tag", default="")
    p.add_argument("--out-dir", default="/tmp/sweep_run", help="the run folder")
    p.add_argument("--out", type=Path, default=OUT, help="JSON lines file the record is appended to")
    args = p.parse_args(argv)
    rec = {"tag": args.tag, "data": args.data, "steps": args.steps, "minutes": args.minutes, "set": args.set,
           "date": time.strftime("%Y-%m-%d %H:%M")}
    if args.baselines_only:
        for name in args.eval:
            for size in ((16, 32, 64) if name == "photos" else (32,)):
                enc = EncoderConfig(image_size=size)
                r = EVALS[name](None, enc, size) if name == "photos" else EVALS[name](None, enc)
                print(f"raw pixels {size}px {name}: {json.dumps(r)}")
                rec[f"raw{size}_{name}"] = r
    else:
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in (kv.split("=", 1) for kv in args.set)]
        cfg = parse_args(["--data", str(datasets.get(args.data)), "--out", args.out_dir, "--no-progress",
                          "--log-every", "50", "--checkpoint-minutes", "1e9", *flags,
                          *(["--minutes", str(args.minutes)] if args.minutes else [])])
        if args.steps:
            n = len(scan_images(cfg.data))
            cfg = replace(cfg, epochs=args.steps / max(1, n // cfg.batch_size))  # steps per epoch = n // batch
        t0 = time.perf_counter()
        summary = run(cfg)
        rec["train_seconds"] = time.perf_counter() - t0
        rec["summary"] = {k: summary[k] for k in ("step", "epoch", "final_loss")}
        rec["config"] = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
        encoder = load_encoder(args.out_dir, torch.device("cpu"))
        for name in args.eval:
            rec[name] = EVALS[name](encoder, encoder.cfg)
            print(f"{args.tag} {name}: {json.dumps(rec[name])}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as f:
        f.write(json.dumps(rec, default=str) + "\n")


if __name__ == "__main__":
    main()
