"""How much the default clustering of the 10k Fashion-MNIST test images moves with the sample the
whitening is fitted on: each run's backbone with its saved whitening (pretraining's seeded sample of
16,384 training images), refitted on two other seeded samples of 16,384, and on all 60,000; NMI /
ACC at the true K, and the automatic K.

    python bench/results/tta/whiten_sample_probe.py OUT.jsonl RUN [RUN ...]
"""
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import datasets  # noqa: E402
from encoders.embed import Encoder, embed_tensor  # noqa: E402
from encoders.evaluation import cluster_scores  # noqa: E402
from encoders.fashion_mnist import load_fashion_mnist  # noqa: E402
from encoders.store import load_encoder  # noqa: E402
from index.clusters import ClusterSettings, cluster_collection  # noqa: E402
from pipelines.evaluate import arrays_to_images  # noqa: E402
from pipelines.pretrain import WHITEN_SAMPLE  # noqa: E402

out = Path(sys.argv[1])
train = None
for run in sys.argv[2:]:
    saved = load_encoder(Path(run), torch.device("cpu"))
    if train is None:
        train = arrays_to_images(load_fashion_mnist("train")[0], saved.cfg.image_size)  # uint8 (60000, 3, S, S)
    images, y = datasets.labelled_images("fmnist", saved.cfg.image_size)
    fits = {"saved": saved}
    for seed in (1, 2):
        pick = torch.from_numpy(np.sort(np.random.default_rng(seed).permutation(len(train))[:WHITEN_SAMPLE]))
        fits[f"sample seed {seed}"] = Encoder(saved.backbone, saved.cfg).with_whitening(train[pick])
    fits["all 60,000"] = Encoder(saved.backbone, saved.cfg).with_whitening(train)
    for fit, encoder in fits.items():
        t0 = time.perf_counter()
        x = embed_tensor(encoder, images)
        res = cluster_collection(x, 10, ClusterSettings(stability_runs=0))
        row = {"run": run, "whitening": fit, **{m: round(float(v), 4) for m, v in
                                                cluster_scores(y, res.clustering.labels).items()},
               "made_by": res.made_by, "seconds": round(time.perf_counter() - t0, 1)}
        auto = cluster_collection(x, None, ClusterSettings(stability_runs=0))
        row["automatic_k"] = {"k": auto.k, "k_by": auto.k_by,
                              **{m: round(float(v), 4) for m, v in cluster_scores(y, auto.clustering.labels).items()}}
        datasets.append_json_line(out, row)
