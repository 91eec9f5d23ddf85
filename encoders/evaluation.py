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
                          test_labels: np.ndarray, max_iter: int = 100, l2: float = 1e-4) -> float:
    """Multinomial logistic regression on frozen features (standardised with train
    statistics), fitted full-batch with L-BFGS and an L2 penalty, no augmentation (the
    linear probe of CLIP / DINO-style evaluations). Returns test top-1 in percent."""
    x = torch.from_numpy(train_feats).float()
    y = torch.from_numpy(train_labels)
    mean, std = x.mean(0, keepdim=True), x.std(0, keepdim=True).clamp_min(1e-6)
    x = (x - mean) / std
    xt = (torch.from_numpy(test_feats).float() - mean) / std
    c = int(max(train_labels.max(), test_labels.max())) + 1
    w = torch.zeros(x.shape[1], c, requires_grad=True)  # (D, C)
    b = torch.zeros(c, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-7, tolerance_change=1e-9)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ w + b, y) + l2 * (w * w).sum()  # (M, C) logits
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        pred = (xt @ w + b).argmax(1).numpy()
    return float((pred == test_labels).mean() * 100)


def raw_pixel_features(images: torch.Tensor) -> np.ndarray:
    """The baseline every tool gets for free: uint8 (M, 3, S, S) -> float32 (M, 3*S*S) pixels,
    each image's mean removed and L2-normalised (so cosine = correlation of the pixels)."""
    x = images.float().flatten(1)  # (M, 3*S*S)
    x = x - x.mean(1, keepdim=True)
    return F.normalize(x, dim=1).numpy()


def contingency(labels: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (clusters x classes) count table of a clustering `pred` (M,) against classes `labels` (M,),
    with both renumbered 0.. in sorted order: (table, classes (M,), clusters (M,))."""
    _, y = np.unique(labels, return_inverse=True)
    _, p = np.unique(pred, return_inverse=True)
    table = np.zeros((p.max() + 1, y.max() + 1), np.int64)  # (clusters, classes)
    np.add.at(table, (p, y), 1)
    return table, y, p


def cluster_scores(labels: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """How well a clustering `pred` (M,) recovers classes `labels` (M,), as clustering papers report it:
    NMI, ARI, and ACC = accuracy under the best one-to-one matching of clusters to classes (Hungarian,
    over the (clusters x classes) contingency table; unmatched clusters count as errors)."""
    from scipy.optimize import linear_sum_assignment
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    table, y, p = contingency(labels, pred)
    rows, cols = linear_sum_assignment(-table)
    return {"nmi": float(normalized_mutual_info_score(y, p)), "ari": float(adjusted_rand_score(y, p)),
            "acc": float(table[rows, cols].sum() / len(y))}
