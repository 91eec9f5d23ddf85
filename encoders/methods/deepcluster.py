"""DeepCluster (Caron et al. 2018): each epoch, K-means on the current features gives
pseudo-labels, and the network is trained to classify them."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from encoders import distributed
from encoders.augment import ViewSpec
from encoders.methods.base import EpochContext, Method, MethodSettings, option
from encoders.whitening import pca_whiten


def refill_empty_clusters(labels: np.ndarray, k: int, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Every cluster non-empty (the paper's fix): an empty cluster takes over half of the
    largest one, split along a random direction through its members (as a centroid copy
    with a small perturbation would split it). Needs M >= K."""
    labels = labels.copy()
    for j in range(k):
        if (labels == j).any():
            continue
        big = int(np.bincount(labels, minlength=k).argmax())
        members = np.flatnonzero(labels == big)
        side = x[members] @ rng.standard_normal(x.shape[1])  # (m,) position along a random direction
        moved = members[np.argsort(side, kind="stable")[len(members) // 2:]]
        labels[moved] = j
    return labels


def normalized_mutual_info(a: np.ndarray, b: np.ndarray) -> float:
    """NMI(a, b) = I(a; b) / sqrt(H(a) H(b)) (the paper's measure between consecutive epochs)."""
    from sklearn.metrics import normalized_mutual_info_score

    return float(normalized_mutual_info_score(a, b, average_method="geometric"))


@dataclass(frozen=True)
class DeepClusterSettings(MethodSettings):
    clusters: int | None = option(None, "K, the pseudo-classes (None: M/20 within 10..1000)")
    pca_dim: int = option(64, "PCA-whitening size before K-means (256 in the paper)")


class DeepCluster(Method):
    """Backbone + a linear classifier over K pseudo-classes, re-initialised (N(0, 0.01),
    zero bias, fresh optimizer state) at each epoch. `on_epoch_start` embeds the collection,
    PCA-whitens and L2-normalises it, runs the K-means it is lent (faiss, from the pipeline),
    refills empty clusters and keeps the labels (M,) in a buffer; `epoch_order` samples
    images uniformly over clusters. Under torchrun every rank embeds the whole collection and
    rank 0's labels are used by all."""

    Settings = DeepClusterSettings

    def __init__(self, backbone: nn.Module, n_images: int, settings: DeepClusterSettings = DeepClusterSettings(),
                 seed: int = 0):
        super().__init__(backbone, ViewSpec(n_global=1))
        k, pca_dim = settings.clusters, settings.pca_dim
        if k is None:
            k = min(n_images, max(10, min(1000, n_images // 20)))
        if not 2 <= k <= n_images:
            raise ValueError(f"DeepCluster needs 2 <= K <= the {n_images} images, got K={k}")
        self.k, self.pca_dim, self.seed = k, pca_dim, seed
        self.head = nn.Linear(backbone.feat_dim, k)
        self.criterion = nn.CrossEntropyLoss()
        self.register_buffer("labels", torch.full((n_images,), -1, dtype=torch.long))  # (M,) -1: none yet

    @classmethod
    def build(cls, backbone, settings, facts):
        return cls(backbone, facts.n_images, settings, seed=facts.seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))  # (N, 3, S, S) -> (N, K) logits

    def training_loss(self, views, indices):
        targets = self.labels[indices]  # (N,)
        if bool((targets < 0).any()):
            raise RuntimeError("DeepCluster has no pseudo-labels yet: on_epoch_start must run first")
        return self.criterion(self(views[0]).float(), targets)

    def assign(self, feats: torch.Tensor, ctx: EpochContext, epoch: int) -> np.ndarray:
        """Pseudo-labels (M,) of features (M, D): PCA-whitening, L2, K-means, empty clusters refilled."""
        x = pca_whiten(feats, self.pca_dim).numpy()
        labels = np.asarray(ctx.kmeans(x, self.k, self.seed + epoch), dtype=np.int64)
        return refill_empty_clusters(labels, self.k, x, np.random.default_rng(self.seed * 7_919 + epoch))

    def on_epoch_start(self, epoch: int, ctx: EpochContext) -> dict[str, float]:
        labels = torch.from_numpy(self.assign(ctx.embed_all(), ctx, epoch)).to(self.labels.device)
        labels = distributed.broadcast_from_rank0(labels)
        before = self.labels.cpu().numpy()
        stats = {"clusters": self.k, "largest_cluster": int(torch.bincount(labels, minlength=self.k).max())}
        if (before >= 0).all():
            stats["nmi_previous"] = normalized_mutual_info(before, labels.cpu().numpy())
        self.labels.copy_(labels)
        self.reset_head(epoch)
        ctx.forget_optimizer_state(self.head.parameters())
        return stats

    @torch.no_grad()
    def reset_head(self, epoch: int) -> None:
        g = torch.Generator().manual_seed(self.seed * 104_729 + epoch)
        self.head.weight.copy_(torch.randn(self.head.weight.shape, generator=g) * 0.01)
        self.head.bias.zero_()

    def epoch_order(self, epoch, n, generator):
        """n indices drawn uniformly over the non-empty clusters (each cluster ~n/K images,
        with replacement when it has fewer), shuffled: DeepCluster's `UnifLabelSampler`."""
        labels = self.labels.cpu()
        clusters = [torch.nonzero(labels == j).flatten() for j in range(self.k)]
        clusters = [c for c in clusters if len(c)]
        per = n // len(clusters) + 1
        picks = [c[torch.randint(len(c), (per,), generator=generator)] if len(c) < per
                 else c[torch.randperm(len(c), generator=generator)[:per]] for c in clusters]
        order = torch.cat(picks)
        return order[torch.randperm(len(order), generator=generator)][:n]
