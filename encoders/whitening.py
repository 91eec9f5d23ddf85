"""PCA-whitening of representations, fitted on the collection the encoder was trained on.

Self-supervised features after a short training are dominated by a few directions of large
variance (brightness, ink amount, background) that say little about what an image shows;
cosine similarity and K-means then mostly see those. Whitening (centre, rotate onto the
principal axes, divide each by its standard deviation) gives every direction equal weight,
the standard post-processing of retrieval descriptors (Jegou & Chum, ECCV 2012). Its gain in
kNN and K-means NMI: bench/results/recipe_sweep.jsonl (docs/results.md).

Shrinkage keeps it stable on small collections: each direction is divided by
sqrt(variance + shrinkage * mean variance), so directions with (near) zero variance, e.g.
all but M-1 of them for M < D images, are not blown up. Legend: M images, D feature dim.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_SHRINKAGE = 0.1


class Whitening(nn.Module):
    """h (N, D) -> (h - mean) @ proj, (N, d), d <= D (the top-d principal axes when d < D).
    Buffers only: saved with the encoder's weights."""

    def __init__(self, dim: int, out_dim: int | None = None):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))  # (D,)
        self.register_buffer("proj", torch.eye(dim)[:, : out_dim or dim])  # (D, d)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return (h - self.mean) @ self.proj  # (N, D) @ (D, d)


@torch.no_grad()
def fit_whitening(feats: torch.Tensor, shrinkage: float = DEFAULT_SHRINKAGE, out_dim: int | None = None) -> Whitening:
    """Fit on float (M, D) features (M >= 2): mean, principal axes and their variances; with
    `out_dim` d < D, only the d axes of largest variance are kept (shrinkage still uses the mean
    variance of all D)."""
    if feats.dim() != 2 or feats.shape[0] < 2:
        raise ValueError(f"whitening needs (M, D) features with M >= 2, got {tuple(feats.shape)}")
    if shrinkage < 0:
        raise ValueError(f"shrinkage must be >= 0, got {shrinkage}")
    d = feats.shape[1]
    out_dim = out_dim or d
    if not 1 <= out_dim <= d:
        raise ValueError(f"whitening to {out_dim} dimensions asked of {d}-dimensional features")
    mean, var, axes = principal_axes(feats.double())
    scale = (var + shrinkage * var.mean()).clamp_min(1e-12).rsqrt()  # (D,)
    w = Whitening(d, out_dim)
    w.mean.copy_(mean.float())
    w.proj.copy_((axes * scale)[:, d - out_dim:].float())  # (D, d): project on the top-d axes, then scale each
    return w


def principal_axes(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean (D,), variances (D,) ascending and >= 0, axes (D, D) as columns) of (M, D) features."""
    mean = x.mean(0)  # (D,)
    cov = (x - mean).T @ (x - mean) / max(x.shape[0] - 1, 1)  # (D, D)
    var, axes = torch.linalg.eigh(cov)  # ascending
    return mean, var.clamp_min(0), axes


@torch.no_grad()
def pca_whiten(feats: torch.Tensor, dim: int, eps: float = 1e-5) -> torch.Tensor:
    """(M, D) -> (M, d) float32, d = min(dim, D, M - 1): centred, projected on the top-d
    principal axes, each divided by its standard deviation, then L2-normalised (DeepCluster's
    PCA-256 + whitening + L2 before K-means; applied once, nothing kept)."""
    x = feats.double()
    mean, var, axes = principal_axes(x)
    d = max(1, min(dim, x.shape[1], x.shape[0] - 1))
    y = ((x - mean) @ axes[:, -d:].flip(1)) / (var[-d:].flip(0) + eps).sqrt()  # (M, D) @ (D, d) -> (M, d)
    return F.normalize(y, dim=1).float()
