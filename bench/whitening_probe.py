"""Offline: how the post-hoc whitening (shrinkage, PCA truncation) changes Fashion-MNIST kNN / NMI
and mixed-folder NMI of already trained encoders, without retraining.

    python bench/whitening_probe.py RUN_DIR_FMNIST RUN_DIR_MIXED   # folders named *fmnist* / *mixed*
"""
from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import datasets  # noqa: E402
from encoders.embed import embed_tensor  # noqa: E402
from encoders.evaluation import knn_accuracy  # noqa: E402
from encoders.fashion_mnist import load_fashion_mnist  # noqa: E402
from encoders.imagefolder import decode_folder  # noqa: E402
from encoders.store import load_encoder  # noqa: E402
from methods_shootout import nmi_ari  # noqa: E402
from pipelines.evaluate import arrays_to_images  # noqa: E402


def whiten(train: np.ndarray, x: np.ndarray, s: float, k: int) -> np.ndarray:
    """x (N, D) whitened like encoders/whitening.py (shrinkage s), fitted on train, keeping the top k axes; L2."""
    mean = train.mean(0)
    cov = np.cov((train - mean).T)
    var, axes = np.linalg.eigh(cov)
    order = np.argsort(var)[::-1][:k]
    var, axes = np.clip(var[order], 0, None), axes[:, order]
    proj = axes / np.sqrt(var + s * var.mean())
    out = (x - mean) @ proj
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)

res = []
for run in sys.argv[1:]:
    backbone, enc = load_encoder(run, torch.device("cpu"))
    raw_cfg = replace(enc, whiten=False)
    if "fmnist" in run:
        xtr, ytr = load_fashion_mnist("train"); xte, yte = load_fashion_mnist("test")
        ftr = embed_tensor(backbone, arrays_to_images(xtr, enc.image_size), raw_cfg).astype(np.float64)
        fte = embed_tensor(backbone, arrays_to_images(xte, enc.image_size), raw_cfg).astype(np.float64)
        fit = ftr[np.random.default_rng(0).choice(len(ftr), 16384, replace=False)]
        for s in (0.1, 0.3, 1.0):
            for k in (256, 128, 64, 32):
                a, b = whiten(fit, ftr, s, k), whiten(fit, fte, s, k)
                r = {"run": run, "s": s, "k": k, "knn": knn_accuracy(a, ytr, b, yte), **nmi_ari(b, yte, 10)}
                print(json.dumps(r), flush=True); res.append(r)
    else:
        folder = datasets.get("mixed")
        paths, images, _ = decode_folder(folder, enc.image_size, progress=False)
        labels = datasets.labels_for(folder, paths)
        f = embed_tensor(backbone, images, raw_cfg).astype(np.float64)
        for s in (0.1, 0.3, 1.0):
            for k in (256, 128, 64, 32):
                r = {"run": run, "s": s, "k": k, **nmi_ari(whiten(f, f, s, k), labels, 20)}
                print(json.dumps(r), flush=True); res.append(r)
json.dump(res, open(ROOT / "bench" / "results" / "whitening_probe.json", "w"), indent=1)
