"""BYOL (Grill et al. 2020): online encoder + projector + predictor regress an EMA target
network's projection of the other view; no negatives."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from encoders.heads import BYOLProjectionHead
from encoders.methods.base import Method, MethodSettings, cosine_momentum, no_grad_copy, option, update_momentum


class BYOLLoss(nn.Module):
    """forward(p, z): p (N, D) online predictions, z (N, D) target projections (detached by
    the caller). Returns the mean over N of ||p/|p| - z/|z|||^2 = 2 - 2 cos(p, z)."""

    def forward(self, p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        cos = (F.normalize(p.float(), dim=1) * F.normalize(z.float(), dim=1)).sum(dim=1)  # (N,)
        return (2 - 2 * cos).mean()


@dataclass(frozen=True)
class BYOLSettings(MethodSettings):
    proj_dim: int = option(128, "projection head output size")
    momentum: float = option(0.99, "EMA momentum of the target network at step 0, rising to 1 (cosine)")


class BYOL(Method):
    """The target (backbone + projector) is an EMA of the online one whose momentum rises
    from `momentum` (0.99) to 1 along a half cosine over the run (`cosine_momentum`).
    Symmetric loss: the mean of L(p(v1), z'(v2)) and L(p(v2), z'(v1)). Heads: hidden width
    2 x the backbone's (4096 for ResNet-50, as the paper), output `proj_dim`."""

    Settings = BYOLSettings

    def __init__(self, backbone: nn.Module, settings: BYOLSettings = BYOLSettings()):
        super().__init__(backbone)
        proj_dim, momentum = settings.proj_dim, settings.momentum
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        hidden = 2 * backbone.feat_dim
        self.projector = BYOLProjectionHead(backbone.feat_dim, hidden, proj_dim)
        self.predictor = BYOLProjectionHead(proj_dim, hidden, proj_dim)
        self.target_backbone = no_grad_copy(backbone)
        self.target_projector = no_grad_copy(self.projector)
        self.criterion = BYOLLoss()
        self.base_momentum = momentum
        self.last_momentum = momentum

    @classmethod
    def build(cls, backbone, settings, facts):
        return cls(backbone, settings)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.backbone(x))  # (N, 3, S, S) -> (N, D)

    def training_loss(self, views, indices):
        n = views[0].shape[0]
        p = self.predictor(self(torch.cat(views[:2])))  # (2N, D): both views in one pass, BN sees both
        with torch.no_grad():
            z = self.target_projector(self.target_backbone(torch.cat(views[:2])))  # (2N, D)
        return (self.criterion(p[:n], z[n:]) + self.criterion(p[n:], z[:n])) / 2

    def after_optimizer_step(self, step, total_steps):
        self.last_momentum = cosine_momentum(step, total_steps, self.base_momentum)
        update_momentum(self.target_backbone, self.backbone, self.last_momentum)
        update_momentum(self.target_projector, self.projector, self.last_momentum)
