"""SwAV (Caron et al. 2020): online codes from Sinkhorn-Knopp over learnable prototypes,
each view predicting the codes of the others (swapped prediction); multi-crop."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from encoders import distributed
from encoders.heads import ProjectionHead, SwAVPrototypes
from encoders.losses import positive_temperature
from encoders.methods.base import Method, MultiCropSettings, option


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, iterations: int = 3, epsilon: float = 0.05,
             gather_distributed: bool = False) -> torch.Tensor:
    """Soft codes (B, K) for prototype scores (B, K): the transport plan of exp(scores / eps)
    rescaled in turn so that every prototype gets 1/K of the mass and every sample 1/B, B
    the global batch (sums all-reduced over ranks under `gather_distributed`); returned with
    rows summing to 1 (swav's `distributed_sinkhorn`)."""
    q = torch.exp(scores.float() / epsilon).T  # (K, B)
    k, b = q.shape
    sum_ = distributed.sum_over_ranks if gather_distributed else (lambda x: x)
    if gather_distributed:
        b *= distributed.world_size()
    q /= sum_(q.sum())
    for _ in range(iterations):
        q /= sum_(q.sum(dim=1, keepdim=True)) * k  # (K, 1): each prototype's mass -> 1/K
        q /= q.sum(dim=0, keepdim=True) * b  # (1, B): each sample's mass -> 1/B
    return (q * b).T  # (B, K), rows sum to 1


class SwAVLoss(nn.Module):
    """Swapped prediction. forward(scores: V x (N, K) prototype scores, global views first;
    codes: G x (N, K) Sinkhorn codes of the global views): the mean over g of the mean over
    v != g of the cross-entropy -sum_K q_g log softmax(scores_v / T), averaged over N."""

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        self.temperature = positive_temperature(temperature)

    def forward(self, scores: list[torch.Tensor], codes: list[torch.Tensor]) -> torch.Tensor:
        loss = 0.0
        for g, q in enumerate(codes):
            others = [v for v in range(len(scores)) if v != g]
            ce = [-(q * F.log_softmax(scores[v].float() / self.temperature, dim=1)).sum(1).mean() for v in others]
            loss = loss + sum(ce) / len(others)
        return loss / len(codes)


@dataclass(frozen=True)
class SwAVSettings(MultiCropSettings):
    local_crops: int = option(6, "multi-crop: small views per image")
    proj_dim: int = option(128, "projection head output size")
    prototypes: int = option(256, "number of prototypes K")
    temperature: float = option(0.1, "softmax temperature of the prototype scores")
    sinkhorn_iters: int = option(3, "Sinkhorn-Knopp iterations")
    sinkhorn_epsilon: float = option(0.05, "Sinkhorn-Knopp entropy regularisation")
    swav_queue: int = option(0, "earlier batches' features joining Sinkhorn (0: none; for batches < 256)")
    freeze_head_steps: int = option(50, "first steps with the prototypes frozen")


class SwAV(Method):
    """Backbone + Linear-BN-ReLU-Linear projector, L2-normalised, scored against K
    prototypes (unit rows, re-normalised after every step; frozen for the first
    `freeze_head_steps` steps). Codes come from the global views only, over the global
    batch plus, with `swav_queue > 0`, the features of earlier batches (per rank
    `swav_queue / W` rows per global view, so the ranks' queues together hold the global
    batches), used once the queue is full."""

    Settings = SwAVSettings

    def __init__(self, backbone: nn.Module, settings: SwAVSettings = SwAVSettings(), gather_distributed: bool = False):
        super().__init__(backbone, settings.views)
        s = settings
        self.projector = ProjectionHead(backbone.feat_dim, backbone.feat_dim, s.proj_dim)
        self.prototypes = SwAVPrototypes(s.proj_dim, s.prototypes)
        self.criterion = SwAVLoss(s.temperature)
        self.sinkhorn_iters, self.sinkhorn_epsilon = s.sinkhorn_iters, s.sinkhorn_epsilon
        self.freeze_prototypes_steps, self.gather_distributed = s.freeze_head_steps, gather_distributed
        rows = s.swav_queue // distributed.world_size() if gather_distributed else s.swav_queue
        self.register_buffer("queue", torch.zeros(2, rows, s.proj_dim))  # (G, L, D), newest first
        self.register_buffer("queue_filled", torch.zeros((), dtype=torch.long))
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        self._new_features = None  # this step's global-view features (G, N, D), queued after the step

    @classmethod
    def build(cls, backbone, settings, facts):
        return cls(backbone, settings, gather_distributed=facts.gather_distributed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projector(self.backbone(x)), dim=1)  # (N, 3, S, S) -> (N, D), unit rows

    def training_loss(self, views, indices):
        n, trainable = views[0].shape[0], bool(self.steps_done >= self.freeze_prototypes_steps)
        z = list(self(torch.cat(views[:2])).chunk(2))  # 2 x (N, D)
        if len(views) > 2:
            z += self(torch.cat(views[2:])).chunk(len(views) - 2)
        scores = [self.prototypes(zv, trainable=trainable) for zv in z]  # V x (N, K)
        codes = []
        for g in range(2):
            s = scores[g].detach()
            if self.queue.shape[1] and self.queue_filled >= self.queue.shape[1]:
                s = torch.cat([s, self.prototypes(self.queue[g]).detach()])  # (N + L, K)
            codes.append(sinkhorn(s, self.sinkhorn_iters, self.sinkhorn_epsilon, self.gather_distributed)[:n])
        self._new_features = torch.stack(z[:2]).detach()  # (G, N, D)
        return self.criterion(scores, codes)

    @torch.no_grad()
    def after_optimizer_step(self, step, total_steps):
        self.prototypes.normalize_()
        self.steps_done.fill_(step + 1)
        if self._new_features is not None and self.queue.shape[1]:
            new = self._new_features.to(self.queue.dtype)[:, :self.queue.shape[1]]  # (G, n, D)
            self.queue.copy_(torch.cat([new, self.queue[:, :self.queue.shape[1] - new.shape[1]]], dim=1))
            self.queue_filled.add_(new.shape[1])
        self._new_features = None
