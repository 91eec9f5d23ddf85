"""SimCLR (Chen et al. 2020): one encoder + MLP head, NT-Xent over the views of a batch."""
from __future__ import annotations

import torch
from torch import nn

from encoders.heads import SimCLRProjectionHead
from encoders.losses import NTXentLoss
from encoders.methods.base import Method, ViewSpec


class SimCLR(Method):
    """gather_distributed: negatives from all ranks (see `NTXentLoss`). With local crops
    (`views.n_local > 0`), every pair of views is a positive pair and the loss is the mean of
    NT-Xent over the pairs (each pair one batch of 2N anchors)."""

    default_temperature = 0.2  # 0.5 in the paper; 0.2 measured better in CPU-minute runs (docs/results.md)

    def __init__(self, backbone: nn.Module, proj_dim: int = 128, temperature: float = 0.5,
                 gather_distributed: bool = False, views: ViewSpec = ViewSpec()):
        super().__init__(backbone, views)
        self.head = SimCLRProjectionHead(backbone.feat_dim, out_dim=proj_dim)
        self.criterion = NTXentLoss(temperature, gather_distributed=gather_distributed)

    @classmethod
    def from_config(cls, backbone, cfg, gather_distributed, n_images):
        return cls(backbone, cfg.proj_dim, cfg.temperature, gather_distributed, multi_crop(cfg))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))  # (N, 3, S, S) -> (N, D)

    def embed_views(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        """Views of one size in one pass (BN sees them together): V x (N, D)."""
        out = []
        for size in dict.fromkeys(v.shape[-1] for v in views):
            same = [v for v in views if v.shape[-1] == size]
            out += self(torch.cat(same)).chunk(len(same))  # (len(same) * N, D) -> len(same) x (N, D)
        return out

    def training_loss(self, views, indices):
        z = self.embed_views(views)
        pairs = [(i, j) for i in range(len(z)) for j in range(i + 1, len(z))]
        return sum(self.criterion(z[i], z[j]) for i, j in pairs) / len(pairs)


def multi_crop(cfg, default_local: int = 0) -> ViewSpec:
    """The ViewSpec a config asks for: 2 global views plus `cfg.local_crops` local ones
    (None: `default_local`) of `cfg.local_size` px (None: 96/224 of the image size)."""
    n_local = default_local if cfg.local_crops is None else cfg.local_crops
    size = cfg.local_size or max(8, round(cfg.image_size * 96 / 224))
    return ViewSpec(n_global=2, n_local=n_local, local_size=size if n_local else 0)
