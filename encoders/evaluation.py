"""Frozen-feature evaluation, as the field reports it: weighted kNN and linear probe.

Features are (M, D) float32, L2-normalised; labels int64 (M,). Legend: M train size,
Q test size, C classes, k neighbours.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


@torch.no_grad()
def knn_predict(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
                num_classes: int, k: int = 200, temperature: float = 0.1, chunk: int = 1024) -> torch.Tensor:
    """Weighted kNN of Wu et al. 2018 (InstDisc): the k most cosine-similar training
    features vote for their class with weight exp(sim / T). Returns (Q,) predictions."""
    k = min(k, train_feats.shape[0])
    preds = []
    for i in range(0, test_feats.shape[0], chunk):
        sim = test_feats[i:i + chunk] @ train_feats.T  # (q, M)
        top_sim, top_idx = sim.topk(k, dim=1)  # (q, k)
        weights = (top_sim / temperature).exp()  # (q, k)
        votes = torch.zeros(sim.shape[0], num_classes, dtype=weights.dtype)
        votes.scatter_add_(1, train_labels[top_idx], weights)  # (q, C)
        preds.append(votes.argmax(dim=1))
    return torch.cat(preds)


def knn_accuracy(train_feats: np.ndarray, train_labels: np.ndarray, test_feats: np.ndarray,
                 test_labels: np.ndarray, k: int = 200, temperature: float = 0.1) -> float:
    c = int(max(train_labels.max(), test_labels.max())) + 1
    pred = knn_predict(torch.from_numpy(train_feats), torch.from_numpy(train_labels),
                       torch.from_numpy(test_feats), c, k, temperature)
    return float((pred.numpy() == test_labels).mean() * 100)


def linear_probe_accuracy(train_feats: np.ndarray, train_labels: np.ndarray, test_feats: np.ndarray,
                          test_labels: np.ndarray, epochs: int = 100, batch_size: int = 1024,
                          lr: float = 1e-2, weight_decay: float = 1e-5, seed: int = 0) -> float:
    """Linear classifier on frozen features (standardised with train statistics),
    AdamW with a cosine schedule, no augmentation. Returns test top-1 in percent."""
    g = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(train_feats)
    y = torch.from_numpy(train_labels)
    mean, std = x.mean(0, keepdim=True), x.std(0, keepdim=True).clamp_min(1e-6)
    x = (x - mean) / std
    xt = (torch.from_numpy(test_feats) - mean) / std
    c = int(max(train_labels.max(), test_labels.max())) + 1
    torch.manual_seed(seed)
    clf = torch.nn.Linear(x.shape[1], c)
    opt = torch.optim.AdamW(clf.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = max(1, x.shape[0] // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
    for _ in range(epochs):
        perm = torch.randperm(x.shape[0], generator=g)
        for i in range(steps_per_epoch):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            loss = F.cross_entropy(clf(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        pred = clf(xt).argmax(1).numpy()
    return float((pred == test_labels).mean() * 100)
