"""Evaluate a pretrained encoder on labelled data: weighted kNN and linear-probe top-1.

    python -m pipelines.evaluate --encoder RUN_DIR --dataset fashion-mnist
    python -m pipelines.evaluate --encoder RUN_DIR --train DIR --test DIR   # one subfolder per class
    python -m pipelines.evaluate --encoder RUN_DIR --copies DIR   # no labels: find edited copies

`--copies` needs no labels: it edits a sample of DIR's own photos in memory (crop, tone,
mirror, greyscale, JPEG, rotation; DIR is only read) and reports how often each copy's
nearest neighbour among all of DIR's images is its original, for the encoder and for raw
pixels. Writes RUN_DIR/eval_copies.json.

Always the final encoder in RUN_DIR (no best-of-epochs). `--baselines` adds the same
backbone at random initialisation and raw pixels, evaluated by the same code.
Writes RUN_DIR/eval_<dataset>.json (or --out).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from encoders.backbones import build_backbone
from encoders.copies import (
    EDITS,
    REPORT_FILE,
    copies_working_size,
    copy_recall,
    make_copies,
    pick_sample,
    prepare_original,
)
from encoders.decoded import load_decoded
from encoders.embed import Encoder, EncoderConfig, embed_tensor
from encoders.evaluation import knn_accuracy, linear_probe_accuracy, raw_pixel_features
from encoders.fashion_mnist import load_fashion_mnist
from encoders.files import atomic_write_json
from encoders.imagefolder import (
    SkipReport,
    decode_folder,
    decode_images,
    downsample,
    iter_decoded,
    open_rgb,
    resize_center_crop,
    scan_images,
)
from encoders.runtime import pick_device
from encoders.store import load_encoder
from pipelines.cli import run_cli

log = logging.getLogger("pipelines.evaluate")


@dataclass
class EvalConfig:
    encoder: str = ""
    dataset: str | None = None
    train: str | None = None
    test: str | None = None
    k: int = 200
    temperature: float = 0.1
    probe_iters: int = 100
    baselines: bool = False
    limit_train: int | None = None
    limit_test: int | None = None
    device: str = "auto"
    out: str | None = None
    seed: int = 0
    copies: str | None = None
    copies_sample: int = 200
    copies_working_size: int | None = None  # None: encoders.copies.copies_working_size(image size); 0: full size


def arrays_to_images(arr: np.ndarray, size: int) -> torch.Tensor:
    """Greyscale uint8 (N, H, W) -> uint8 (N, 3, S, S) through the indexing preprocessing."""
    tf = resize_center_crop(size)
    return torch.stack([tf(Image.fromarray(a, mode="L").convert("RGB")).as_subclass(torch.Tensor) for a in arr])


def decode_labelled(root: str, size: int) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    """A folder with one subfolder per class -> (images, labels, class names)."""
    classes = sorted(p.name for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"{root}: expected one subfolder per class, found none")
    images, labels = [], []
    for c, name in enumerate(classes):
        _, imgs, skips = decode_folder(Path(root) / name, size, progress=False)
        if skips.total:
            log.warning("%s/%s: %s", root, name, skips.summary())
        images.append(imgs)
        labels.append(np.full(len(imgs), c, dtype=np.int64))
    return torch.cat(images), np.concatenate(labels), classes


def load_split(cfg: EvalConfig, size: int) -> tuple[torch.Tensor, np.ndarray, torch.Tensor, np.ndarray, str]:
    if cfg.dataset == "fashion-mnist":
        (xtr, ytr), (xte, yte) = load_fashion_mnist("train"), load_fashion_mnist("test")
        if cfg.limit_train:
            xtr, ytr = xtr[:cfg.limit_train], ytr[:cfg.limit_train]
        if cfg.limit_test:
            xte, yte = xte[:cfg.limit_test], yte[:cfg.limit_test]
        return arrays_to_images(xtr, size), ytr, arrays_to_images(xte, size), yte, "fashion-mnist"
    xtr, ytr, ctr = decode_labelled(cfg.train, size)
    xte, yte, cte = decode_labelled(cfg.test, size)
    if ctr != cte:
        raise ValueError(f"--train classes {ctr} differ from --test classes {cte}")
    return xtr, ytr, xte, yte, Path(cfg.test).name or "folders"


def evaluate_features(name: str, ftr, ytr, fte, yte, cfg: EvalConfig) -> dict:
    t0 = time.perf_counter()
    knn = knn_accuracy(ftr, ytr, fte, yte, k=cfg.k, temperature=cfg.temperature)
    t1 = time.perf_counter()
    lin = linear_probe_accuracy(ftr, ytr, fte, yte, max_iter=cfg.probe_iters) if cfg.probe_iters else float("nan")
    t2 = time.perf_counter()
    log.info("%s: kNN top-1 %.2f%% (%.1fs), linear top-1 %.2f%% (%.1fs)", name, knn, t1 - t0, lin, t2 - t1)
    return {"knn_top1": knn, "linear_top1": lin, "dim": int(ftr.shape[1]), "seconds": t2 - t0}


RAW_SIZES = (16, 32)  # raw-pixel baselines for copies; the best one is reported


def features(encoder: Encoder, images: torch.Tensor, raw_sizes: list[int]) -> tuple[np.ndarray, dict]:
    """uint8 (n, 3, S, S) -> (float32 (n, D) embeddings, {size: uint8 (n, 3, size, size) raw pixels})."""
    return embed_tensor(encoder, images), {s: downsample(images, s) for s in raw_sizes}


def folder_features(encoder: Encoder, root: str, raw_sizes: list[int], run_dir: str | None = None
                    ) -> tuple[list[Path], np.ndarray, dict, SkipReport]:
    """Every readable image under `root`, decoded (or taken from what pretraining saved in `run_dir`)
    and embedded batch by batch (the folder's pixels are never all in memory)
    -> (paths, float32 (M, D), {size: uint8 (M, 3, size, size)}, skip report)."""
    skips = SkipReport()
    files = scan_images(root, skips)
    if not files:
        raise ValueError(f"{root}: no image files found ({skips.summary()})")
    rows, emb, raw = [], [], {s: [] for s in raw_sizes}
    decoded = load_decoded(run_dir, encoder.cfg.image_size) if run_dir else None
    for idx, images, bad in iter_decoded(files, encoder.cfg.image_size, decoded=decoded):
        for i, err in bad:
            skips.add(files[i], err.reason, err.detail)
        if len(idx):
            rows += idx.tolist()
            e, r = features(encoder, images, raw_sizes)
            emb.append(e)
            for size in raw_sizes:
                raw[size].append(r[size])
    if len(rows) < 2:
        raise ValueError(f"{root}: copy detection needs at least 2 readable images, found {len(rows)} "
                         f"({skips.summary()})")
    return [files[i] for i in rows], np.concatenate(emb), {s: torch.cat(v) for s, v in raw.items()}, skips


def load_original(path: Path, working_size: int) -> Image.Image:
    """An original as the edits see it: decoded at `working_size` (0: full resolution)."""
    if not working_size:
        return open_rgb(path)
    return prepare_original(open_rgb(path, draft_size=working_size), working_size)


def copies_features(encoder: Encoder, paths: list[Path], rows: np.ndarray, cfg: EvalConfig, working_size: int,
                    raw_sizes: list[int], chunk: int = 16) -> tuple[np.ndarray, dict, np.ndarray, list[str]]:
    """Edit `paths[rows]` `chunk` originals at a time (only their copies' S x S pixels are kept)
    -> (float32 (Q, D), {size: uint8 (Q, 3, size, size)}, row of each copy's original (Q,), edit names)."""
    rng = np.random.default_rng(cfg.seed)
    emb, raw, src, names = [], {s: [] for s in raw_sizes}, [], []
    chunk = chunk if working_size else 1  # at full resolution, one photo's copies at a time
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        copies, s, n = make_copies([load_original(paths[r], working_size) for r in part], seed=rng)
        e, r = features(encoder, decode_images(copies, encoder.cfg.image_size), raw_sizes)
        emb.append(e)
        for size in raw_sizes:
            raw[size].append(r[size])
        src.append(part[s])
        names += n
    return np.concatenate(emb), {s: torch.cat(v) for s, v in raw.items()}, np.concatenate(src), names


def run_copies(cfg: EvalConfig) -> dict:
    """Copy detection on an unlabeled folder (see the module docstring)."""
    encoder = load_encoder(cfg.encoder, pick_device(cfg.device))
    enc = encoder.cfg
    working = copies_working_size(enc.image_size) if cfg.copies_working_size is None else cfg.copies_working_size
    sizes = sorted({min(s, enc.image_size) for s in RAW_SIZES})
    paths, emb, raw_db, skips = folder_features(encoder, cfg.copies, sizes, cfg.encoder)
    rows = pick_sample(len(paths), cfg.copies_sample, cfg.seed)
    log.info("%s: %d images (%s); %d of them edited %d ways at %s", cfg.copies, len(paths), skips.summary(),
             len(rows), len(EDITS), f"{working} px" if working else "full resolution")
    q_emb, raw_q, src, names = copies_features(encoder, paths, rows, cfg, working, sizes)
    results = {"encoder_path": str(cfg.encoder), "folder": str(cfg.copies), "images": len(paths),
               "edited": len(rows), "edits": list(EDITS), "working_size": working, "skipped": skips.as_dict(),
               "encoder": copy_recall(emb, q_emb, src, names)}
    raw = {size: copy_recall(raw_pixel_features(raw_db[size]), raw_pixel_features(raw_q[size]), src, names)
           for size in sizes}
    best = max(raw, key=lambda s: raw[s]["recall_at_1"])
    results["raw_pixels"] = {**raw[best], "size": best}
    out = Path(cfg.out) if cfg.out else Path(cfg.encoder) / REPORT_FILE
    atomic_write_json(out, results)
    results["out"] = str(out)
    return results


def print_copies(results: dict) -> None:
    enc, raw = results["encoder"], results["raw_pixels"]
    print(f"\nedited copies of {results['edited']} of the {results['images']} images in {results['folder']}: "
          f"is the original the nearest image?")
    print(f"{'edit':<13}{'encoder':>9}{'raw ' + str(raw['size']) + 'px':>10}")
    for name in results["edits"]:
        print(f"{name:<13}{enc['by_edit'][name]:>9.3f}{raw['by_edit'][name]:>10.3f}")
    print(f"{'all':<13}{enc['recall_at_1']:>9.3f}{raw['recall_at_1']:>10.3f}")
    verdict = "better than" if enc["recall_at_1"] > raw["recall_at_1"] else "NOT better than"
    print(f"the encoder is {verdict} raw pixels on this folder; written to {results['out']}")


def run(cfg: EvalConfig) -> dict:
    device = pick_device(cfg.device)
    encoder = load_encoder(cfg.encoder, device)
    enc = encoder.cfg
    xtr, ytr, xte, yte, name = load_split(cfg, enc.image_size)
    log.info("%s: %d train / %d test images at %d px", name, len(xtr), len(xte), enc.image_size)
    results = {"encoder": str(cfg.encoder), "method": enc.method, "backbone": enc.backbone,
               "image_size": enc.image_size, "dataset": name, "train_size": len(xtr), "test_size": len(xte),
               "k": cfg.k, "temperature": cfg.temperature, "config": asdict(cfg)}
    summary = Path(cfg.encoder) / "summary.json"
    if summary.is_file():
        s = json.loads(summary.read_text())
        results.update(trained_steps=s.get("step"), trained_epochs=s.get("epoch"))
    results["pretrained"] = evaluate_features("pretrained", embed_tensor(encoder, xtr), ytr,
                                              embed_tensor(encoder, xte), yte, cfg)
    if cfg.baselines:
        torch.manual_seed(cfg.seed)
        rand = random_init_like(enc, xtr, device)
        results["random_init"] = evaluate_features("random_init", embed_tensor(rand, xtr), ytr,
                                                   embed_tensor(rand, xte), yte, cfg)
        results["raw_pixels"] = evaluate_features("raw_pixels", raw_pixel_features(xtr), ytr,
                                                  raw_pixel_features(xte), yte, cfg)
    out = Path(cfg.out) if cfg.out else Path(cfg.encoder) / f"eval_{name}.json"
    atomic_write_json(out, results)
    results["out"] = str(out)
    return results


def random_init_like(enc: EncoderConfig, unlabeled: torch.Tensor, device) -> Encoder:
    """The encoder at random initialisation, preprocessed the same way: with `enc.whiten`,
    whitening fitted on the embeddings of `unlabeled` images (no labels used), as
    pretraining fits it on its collection."""
    rand = Encoder(build_backbone(enc.backbone, enc.small_stem).to(device).eval(), replace(enc, whiten=False))
    return rand.with_whitening(unlabeled) if enc.whiten else rand


def print_table(results: dict) -> None:
    rows = [(k, v) for k, v in results.items() if isinstance(v, dict) and "knn_top1" in v]
    print(f"\n{results['dataset']}: {results['train_size']} train / {results['test_size']} test, "
          f"{results['backbone']} ({results['method']}), kNN k={results['k']} T={results['temperature']}")
    print(f"{'features':<14}{'kNN top-1':>11}{'linear top-1':>14}")
    for name, r in rows:
        print(f"{name:<14}{r['knn_top1']:>10.2f}%{r['linear_top1']:>13.2f}%")
    print(f"written to {results['out']}")


def parse_args(argv=None) -> EvalConfig:
    p = argparse.ArgumentParser(prog="python -m pipelines.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--encoder", required=True, help="run folder with encoder.safetensors + config.json")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", choices=["fashion-mnist"])
    src.add_argument("--train", help="labelled folder (one subfolder per class) for the kNN bank / probe")
    src.add_argument("--copies", help="unlabeled folder: find edited copies of its own images (no labels needed)")
    p.add_argument("--test", help="labelled folder to evaluate on (with --train)")
    p.add_argument("--k", type=int, default=200)
    p.add_argument("--temperature", type=float, default=0.1)
    p.add_argument("--probe-iters", type=int, default=100, help="L-BFGS iterations of the linear probe (0: kNN only)")
    p.add_argument("--baselines", action="store_true", help="also random-init backbone and raw pixels")
    p.add_argument("--limit-train", type=int, default=None)
    p.add_argument("--limit-test", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="JSON file (default RUN_DIR/eval_<dataset>.json)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--copies-sample", type=int, default=200, help="with --copies: how many images to edit")
    p.add_argument("--copies-working-size", type=int, default=None,
                   help="with --copies: edit photos at this many px (0: full resolution; default: from the "
                        "encoder's image size, see encoders.copies.copies_working_size)")
    args = p.parse_args(argv)
    if args.train and not args.test:
        p.error("--train needs --test")
    return EvalConfig(**vars(args))


def main(argv=None) -> int:
    cfg = parse_args(argv)
    work = (lambda: print_copies(run_copies(cfg))) if cfg.copies else (lambda: print_table(run(cfg)))
    return run_cli(work, errors=(ValueError, FileNotFoundError))  # EncoderLoadError is a ValueError


if __name__ == "__main__":
    sys.exit(main())
