"""Offline: how the post-hoc whitening (shrinkage, PCA truncation) changes Fashion-MNIST kNN / NMI
and mixed-folder NMI of already trained encoders, without retraining.

    python bench/whitening_probe.py RUN_DIR_FMNIST RUN_DIR_MIXED   # folders named *fmnist* / *mixed*

Writes bench/results/whitening_probe.json (--out).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import datasets  # noqa: E402
from encoders.embed import Encoder, embed_tensor  # noqa: E402
from encoders.evaluation import knn_accuracy  # noqa: E402
from encoders.fashion_mnist import load_fashion_mnist  # noqa: E402
from encoders.imagefolder import decode_folder  # noqa: E402
from encoders.store import load_encoder  # noqa: E402
from encoders.whitening import fit_whitening  # noqa: E402
from methods_shootout import nmi_ari  # noqa: E402
from pipelines.evaluate import arrays_to_images  # noqa: E402

SHRINKAGE = (0.1, 0.3, 1.0)  # 0.1: the default of encoders/whitening.py
KEEP = (256, 128, 64, 32)  # principal directions kept (all: 256)


def whitened(fit: np.ndarray, shrinkage: float, keep=KEEP) -> dict:
    """{k: x (N, D) -> whitened on the top-k principal axes, L2-normalised}, from the project's own
    `fit_whitening` on `fit` (its axes come in ascending variance: the top k are the last columns)."""
    w = fit_whitening(torch.from_numpy(fit), shrinkage)

    def apply(x: np.ndarray, k: int) -> np.ndarray:
        out = (torch.from_numpy(x).float() - w.mean) @ w.proj[:, -k:]  # (N, k)
        return F.normalize(out, dim=1).numpy()
    return {k: (lambda x, k=k: apply(x, k)) for k in keep}


def probe_fmnist(run: str, encoder, shrinkages=SHRINKAGE, keep=KEEP) -> list[dict]:
    (xtr, ytr), (xte, yte) = load_fashion_mnist("train"), load_fashion_mnist("test")
    ftr, fte = (embed_tensor(encoder, arrays_to_images(x, encoder.cfg.image_size)) for x in (xtr, xte))
    sample = min(16384, len(ftr))  # as pretrain's WHITEN_SAMPLE
    fit = ftr[np.random.default_rng(0).choice(len(ftr), sample, replace=False)]
    out = []
    for s in shrinkages:
        for k, f in whitened(fit, s, keep).items():
            out.append({"run": run, "s": s, "k": k, "knn": knn_accuracy(f(ftr), ytr, f(fte), yte),
                        **nmi_ari(f(fte), yte, 10)})
            print(json.dumps(out[-1]), flush=True)
    return out


def probe_mixed(run: str, encoder, shrinkages=SHRINKAGE, keep=KEEP) -> list[dict]:
    folder = datasets.get("mixed")
    paths, images, _ = decode_folder(folder, encoder.cfg.image_size, progress=False)
    labels = datasets.labels_for(folder, paths)
    feats = embed_tensor(encoder, images)
    out = []
    for s in shrinkages:
        for k, f in whitened(feats, s, keep).items():
            out.append({"run": run, "s": s, "k": k, **nmi_ari(f(feats), labels, 20)})
            print(json.dumps(out[-1]), flush=True)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="encoder run folders, named *fmnist* or *mixed*")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "whitening_probe.json")
    p.add_argument("--shrinkage", type=float, nargs="+", default=SHRINKAGE, help="shrinkages to try")
    p.add_argument("--keep", type=int, nargs="+", default=KEEP, help="principal directions kept, each tried")
    args = p.parse_args(argv)
    res = []
    for run in args.runs:
        saved = load_encoder(run, torch.device("cpu"))
        plain = Encoder(saved.backbone, replace(saved.cfg, whiten=False))  # the embeddings before the saved whitening
        res += (probe_fmnist if "fmnist" in Path(run).name else probe_mixed)(run, plain, args.shrinkage, args.keep)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
