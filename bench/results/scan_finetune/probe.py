"""Probe: SCAN with the backbone fine-tuned on augmented views (not a frozen head), on the 10k
Fashion-MNIST test images, from a pretrained run. One JSON line per evaluation.

SCAN (Van Gansbeke et al. 2020; wvangansbeke/Unsupervised-Classification): each image's k nearest
neighbours in the pretrained embedding; a cluster head on the backbone, trained (backbone too)
so that an augmented image and an augmented neighbour get the same soft assignment
(-log <p_a, p_n>) while the mean assignment keeps high entropy (weight 5); then optional
self-labelling: images whose weak view is assigned with probability > 0.99 train the
strong view on that label.

    python bench/results/scan_finetune/probe.py OUT.jsonl RUN [--epochs E] [--selflabel S]
        [--head-only | --frozen-weights]
"""
import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import datasets  # noqa: E402
from encoders.augment import AugmentConfig, BatchSimCLRAugment, normalize_batch  # noqa: E402
from encoders.embed import embed_tensor, read_out  # noqa: E402
from encoders.evaluation import cluster_scores  # noqa: E402
from encoders.store import load_encoder  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("run")
p.add_argument("--k", type=int, default=10)
p.add_argument("--neighbours", type=int, default=20)
p.add_argument("--epochs", type=int, default=10)
p.add_argument("--selflabel", type=int, default=0)
p.add_argument("--entropy", type=float, default=5.0)
p.add_argument("--lr", type=float, default=1e-4)
p.add_argument("--sl-lr", type=float, default=1e-4)
p.add_argument("--threshold", type=float, default=0.99)
p.add_argument("--batch", type=int, default=128)
p.add_argument("--heads", type=int, default=5)
p.add_argument("--head-only", action="store_true")  # backbone frozen, BatchNorm in eval mode
p.add_argument("--frozen-weights", action="store_true")  # backbone frozen, BatchNorm statistics from the views
p.add_argument("--head", choices=["linear", "bn", "mlp"], default="linear")
p.add_argument("--min-scale", type=float, default=0.2)
p.add_argument("--tag", default="")
a = p.parse_args()
torch.manual_seed(0)
g = torch.Generator().manual_seed(0)

enc = load_encoder(Path(a.run), torch.device("cpu"))
cfg = enc.cfg
images, y = datasets.labelled_images("fmnist", cfg.image_size)  # uint8 (M, 3, S, S), (M,)
x = embed_tensor(enc, images)  # (M, D)
sim = x @ x.T  # (M, M)
np.fill_diagonal(sim, -np.inf)
nn_idx = torch.from_numpy(np.argpartition(-sim, a.neighbours, axis=1)[:, :a.neighbours])  # (M, k)
nn_acc = float((y[nn_idx.numpy()] == y[:, None]).mean())
del sim

tune = not (a.head_only or a.frozen_weights)
backbone = copy.deepcopy(enc.backbone).train().requires_grad_(tune)  # saved encoders load frozen
readout_dim = cfg.readout_dim


def make_head() -> nn.Module:
    if a.head == "linear":
        return nn.Linear(readout_dim, a.k)
    if a.head == "bn":
        return nn.Sequential(nn.BatchNorm1d(readout_dim), nn.Linear(readout_dim, a.k))
    return nn.Sequential(nn.Linear(readout_dim, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, a.k))


heads = nn.ModuleList(make_head() for _ in range(a.heads))
params = list(heads.parameters()) + (list(backbone.parameters()) if tune else [])
opt = torch.optim.Adam(params, lr=a.lr, weight_decay=1e-4)
strong = BatchSimCLRAugment(AugmentConfig(image_size=cfg.image_size, min_scale=a.min_scale, normalize=cfg.normalize,
                                          mean=cfg.mean, std=cfg.std))
weak = BatchSimCLRAugment(AugmentConfig(image_size=cfg.image_size, min_scale=0.8, jitter_p=0.0, grey_p=0.0,
                                        blur_p=0.0, normalize=cfg.normalize, mean=cfg.mean, std=cfg.std))


def features(v: torch.Tensor) -> torch.Tensor:
    return read_out(backbone, v.contiguous(memory_format=torch.channels_last), cfg.readout)  # (N, R D)


@torch.no_grad()
def predict() -> torch.Tensor:
    backbone.eval()
    heads.eval()
    out = []
    for i in range(0, len(images), 1000):
        v = normalize_batch(images[i:i + 1000], cfg.mean, cfg.std, cfg.normalize)
        h = features(v)
        out.append(torch.stack([hd(h).softmax(1) for hd in heads]))  # (H, N, K)
    backbone.train(not a.head_only)
    heads.train()
    return torch.cat(out, 1)  # (H, M, K)


def scan_loss(la: torch.Tensor, ln: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pa, pn = la.softmax(1), ln.softmax(1)  # (N, K)
    consistency = -torch.log((pa * pn).sum(1).clamp_min(1e-7)).mean()
    mean = pa.mean(0)  # (K,)
    entropy = -(mean * torch.log(mean.clamp_min(1e-8))).sum()
    return consistency - a.entropy * entropy, consistency


out = Path(a.out)
out.parent.mkdir(parents=True, exist_ok=True)
t0 = time.perf_counter()
losses = torch.zeros(a.heads)


def report(stage: str, epoch: int) -> None:
    prob = predict()  # (H, M, K)
    best = int(losses.argmin()) if losses.any() else 0
    pred = prob[best].argmax(1).numpy()
    row = {"tag": a.tag, "run": a.run, "backbone_trained": tune, "stage": stage, "epoch": epoch,
           "head": best, "nn_acc": round(nn_acc, 4),
           **{k: round(v, 4) for k, v in cluster_scores(y, pred).items()},
           "clusters": int(len(np.unique(pred))), "seconds": round(time.perf_counter() - t0, 1),
           "args": vars(a)}
    print(json.dumps({k: v for k, v in row.items() if k != "args"}), flush=True)
    with out.open("a") as f:
        f.write(json.dumps(row) + "\n")


backbone.train(not a.head_only)
m = len(images)
for epoch in range(1, a.epochs + 1):
    perm = torch.randperm(m, generator=g)
    losses.zero_()
    for i in range(0, m - a.batch + 1, a.batch):
        idx = perm[i:i + a.batch]
        nb = nn_idx[idx, torch.randint(a.neighbours, (len(idx),), generator=g)]
        v = torch.cat([strong(images[idx], g), strong(images[nb], g)])  # (2N, 3, S, S)
        h = features(v)
        total = 0
        for j, hd in enumerate(heads):
            la, ln = hd(h).chunk(2)
            loss, _ = scan_loss(la, ln)
            losses[j] += loss.item()
            total = total + loss
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
    if epoch % 2 == 0 or epoch == a.epochs:
        report("scan", epoch)

best = int(losses.argmin())
heads = nn.ModuleList([heads[best]])
losses = torch.zeros(1)
opt = torch.optim.Adam(list(heads.parameters()) + list(backbone.parameters()), lr=a.sl_lr, weight_decay=1e-4)
for epoch in range(1, a.selflabel + 1):
    backbone.train()
    perm = torch.randperm(m, generator=g)
    kept = 0
    for i in range(0, m - a.batch + 1, a.batch):
        idx = perm[i:i + a.batch]
        with torch.no_grad():
            pw = heads[0](features(weak(images[idx], g))).softmax(1)  # (N, K)
        conf, target = pw.max(1)
        kept += int((conf > a.threshold).sum())
        keep = conf > a.threshold
        if not keep.any():
            continue
        # class-balanced weights over the confident targets, as SCAN's ConfidenceBasedCE
        counts = torch.bincount(target[keep], minlength=a.k).float()
        w = torch.where(counts > 0, counts.sum() / counts.clamp_min(1), torch.zeros_like(counts))
        w = w / w[counts > 0].mean()
        logits = heads[0](features(strong(images[idx][keep], g)))
        loss = F.cross_entropy(logits, target[keep], weight=w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    print("confident", kept, flush=True)
    report("selflabel", epoch)
