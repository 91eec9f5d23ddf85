"""SimCLR (Chen et al. 2020): one encoder + MLP head, NT-Xent over the views of a batch."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from encoders.heads import SimCLRProjectionHead
from encoders.losses import NTXentLoss
from encoders.methods.base import Method, MultiCropSettings, option


@dataclass(frozen=True)
class SimCLRSettings(MultiCropSettings):
    proj_dim: int = option(128, "projection head output size")
    # 0.5 in the paper; 0.2 measured better in CPU-minute runs (bench/results/recipe_sweep.jsonl)
    temperature: float = option(0.2, "contrastive softmax temperature")


class SimCLR(Method):
    """gather_distributed: negatives from all ranks (see `NTXentLoss`). With local crops
    (`views.n_local > 0`), every pair of views is a positive pair and the loss is the mean of
    NT-Xent over the pairs (each pair one batch of 2N anchors)."""

    Settings = SimCLRSettings

    def __init__(self, backbone: nn.Module, settings: SimCLRSettings = SimCLRSettings(),
                 gather_distributed: bool = False):
        super().__init__(backbone, settings.views)
        self.head = SimCLRProjectionHead(backbone.feat_dim, out_dim=settings.proj_dim)
        self.criterion = NTXentLoss(settings.temperature, gather_distributed=gather_distributed)

    @classmethod
    def build(cls, backbone, settings, facts):
        return cls(backbone, settings, gather_distributed=facts.gather_distributed)

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

