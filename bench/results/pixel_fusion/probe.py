"""Probe: cluster the learned embedding joined with the raw pixels (PCA to 64, unit norm, weight w),
so that cosine similarity is the learned one plus w times the pixels' one. Default clusterer at the
true K; output in probe.txt beside this file.

    python bench/results/pixel_fusion/probe.py
"""
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import datasets  # noqa: E402
from encoders.embed import embed_tensor  # noqa: E402
from encoders.evaluation import cluster_scores, raw_pixel_features  # noqa: E402
from encoders.store import load_encoder  # noqa: E402
from index.clusters import ClusterSettings, cluster_collection  # noqa: E402

for name, run, k in [("fmnist", "runs/fm10_pacer", 10), ("mixed", "runs/mx3_pacer", 20)]:
    enc = load_encoder(ROOT / run, torch.device("cpu"))
    images, y = datasets.labelled_images(name, enc.cfg.image_size)
    z = embed_tensor(enc, images)  # (M, D)
    p = PCA(64, random_state=0).fit_transform(raw_pixel_features(images))  # (M, 64)
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    for tag, x in [("learned", z), ("pix64", p), ("cat1", np.hstack([z, p])), ("cat.5", np.hstack([z, 0.5 * p]))]:
        t = time.perf_counter()
        res = cluster_collection(x.astype(np.float32), k, ClusterSettings(stability_runs=0))
        s = cluster_scores(y, res.clustering.labels)
        print(name, tag, {a: round(b, 4) for a, b in s.items()}, round(time.perf_counter() - t, 1), flush=True)
