"""NPID, instance discrimination with a memory bank (Wu et al. 2018): each image is its own
class, represented by a running average of its features in a bank of M rows."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from encoders import distributed
from encoders.augment import ViewSpec
from encoders.losses import positive_temperature
from encoders.methods.base import Method, MethodSettings, option


class NPIDLoss(nn.Module):
    """Non-parametric softmax over the positive and K sampled negatives.

    forward(v (N, D), positive (N, D), negatives (N, K, D)): v the features of the batch,
    positive their own bank entries, negatives K bank entries sampled per image; all L2-
    normalised. Logits [v.pos, v.neg_1..K] / T, cross-entropy with the positive at index 0."""

    def __init__(self, temperature: float = 0.07):
        super().__init__()
        self.temperature = positive_temperature(temperature)

    def forward(self, v: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        l_pos = (v * positive).sum(dim=1, keepdim=True)  # (N, 1)
        l_neg = torch.einsum("nd,nkd->nk", v, negatives)  # (N, K)
        logits = torch.cat([l_pos, l_neg], dim=1) / self.temperature  # (N, 1 + K)
        return F.cross_entropy(logits, torch.zeros(v.shape[0], dtype=torch.long, device=v.device))


@dataclass(frozen=True)
class NPIDSettings(MethodSettings):
    proj_dim: int = option(128, "feature size (the paper's 128)")
    temperature: float = option(0.07, "non-parametric softmax temperature")
    negatives: int = option(4096, "bank entries sampled as negatives per image")
    bank_momentum: float = option(0.5, "bank <- m * bank + (1 - m) * feature")


class NPID(Method):
    """Backbone + linear layer to `proj_dim`, L2-normalised (the paper's 128-d feature).
    Buffers: the bank (M, D) of unit rows (random at start), updated after each step as
    bank[i] <- normalise(m * bank[i] + (1 - m) * v_i), and the step count. Negatives are
    drawn uniformly from the bank with a generator of (seed, step) for the global batch, so
    a resumed run and a run over W ranks (each taking its rows) draw the same ones; under
    torchrun every rank applies the updates of the whole global batch."""

    Settings = NPIDSettings

    def __init__(self, backbone: nn.Module, n_images: int, settings: NPIDSettings = NPIDSettings(), seed: int = 0,
                 gather_distributed: bool = False):
        super().__init__(backbone, ViewSpec(n_global=1))
        proj_dim, negatives, bank_momentum = settings.proj_dim, settings.negatives, settings.bank_momentum
        if not 0.0 <= bank_momentum < 1.0:
            raise ValueError(f"bank momentum must be in [0, 1), got {bank_momentum}")
        self.head = nn.Linear(backbone.feat_dim, proj_dim)
        self.criterion = NPIDLoss(settings.temperature)
        self.n_negatives, self.bank_momentum, self.seed = negatives, bank_momentum, seed
        self.gather_distributed = gather_distributed
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("bank", F.normalize(torch.randn(n_images, proj_dim, generator=g), dim=1))  # (M, D)
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        self._pending = None  # (features (N, D), indices (N,)) of this step, written after it

    @classmethod
    def build(cls, backbone, settings, facts):
        return cls(backbone, facts.n_images, settings, seed=facts.seed, gather_distributed=facts.gather_distributed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.backbone(x)).float(), dim=1)  # (N, 3, S, S) -> (N, D)

    def sample_negatives(self, n: int) -> torch.Tensor:
        """(n, K) bank rows for this rank's n images: rows r*n.. of the global batch's draw."""
        w, r = (distributed.world_size(), distributed.rank()) if self.gather_distributed else (1, 0)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(self.steps_done) * 7_919 + 11)
        idx = torch.randint(len(self.bank), (w * n, self.n_negatives), generator=g)  # (W*n, K)
        return idx[r * n:(r + 1) * n].to(self.bank.device)

    def training_loss(self, views, indices):
        v = self(views[0])  # (N, D)
        neg = self.bank[self.sample_negatives(v.shape[0])]  # (N, K, D)
        self._pending = (v.detach(), indices)
        return self.criterion(v, self.bank[indices], neg)

    @torch.no_grad()
    def after_optimizer_step(self, step, total_steps):
        if self._pending is not None:
            v, idx = self._pending
            if self.gather_distributed:
                v, idx = distributed.gather_no_grad(v), distributed.gather_no_grad(idx)  # (W*N, D), (W*N,)
            m = self.bank_momentum
            self.bank[idx] = F.normalize(m * self.bank[idx] + (1 - m) * v.to(self.bank.dtype), dim=1)
            self._pending = None
        self.steps_done.fill_(step + 1)
