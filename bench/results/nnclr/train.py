"""Probe: NNCLR (Dwibedi et al. 2021) positives in place of SimCLR's, same everything else.

Each view's projection is replaced, as the anchor, by its nearest neighbour in a FIFO support set
of earlier projections, so the positive pair is "my neighbour and my other view". `--mix` weighs
that loss against plain NT-Xent (1 = NNCLR only). Until the support set is full, the anchor is the
view itself (SimCLR). Registers the method as `nnclr` and runs `pipelines.pretrain`:

    python bench/results/nnclr/train.py --data data/bench/fmnist-train --out RUN --method nnclr --minutes 3 [--mix 0.5]
"""
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT)]

from encoders.methods import METHODS  # noqa: E402
from encoders.methods.base import option  # noqa: E402
from encoders.methods.simclr import SimCLR, SimCLRSettings  # noqa: E402


@dataclass(frozen=True)
class NNCLRSettings(SimCLRSettings):
    support: int = option(8192, "projections kept for the nearest-neighbour positives")
    mix: float = option(1.0, "weight of the nearest-neighbour loss (the rest: NT-Xent)")


class NNCLR(SimCLR):
    Settings = NNCLRSettings

    def __init__(self, backbone, settings=NNCLRSettings(), gather_distributed=False):
        super().__init__(backbone, settings, gather_distributed)
        self.temperature, self.mix = settings.temperature, settings.mix
        self.register_buffer("bank", torch.zeros(settings.support, settings.proj_dim))  # (K, D)
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))
        self._keys = None

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """(N, D) unit rows -> (N, D) their nearest rows of the bank (itself while it fills)."""
        if int(self.filled) < self.bank.shape[0]:
            return z.detach()
        return self.bank[(z.detach() @ self.bank.T).argmax(1)]  # (N, K) -> (N, D)

    def training_loss(self, views, indices):
        z_a, z_b = (F.normalize(z.float(), dim=1) for z in self.embed_views(views[:2]))
        labels = torch.arange(z_a.shape[0], device=z_a.device)
        nn_loss = 0.5 * (F.cross_entropy(self.nearest(z_a) @ z_b.T / self.temperature, labels)
                         + F.cross_entropy(self.nearest(z_b) @ z_a.T / self.temperature, labels))
        self._keys = z_a.detach()
        if self.mix >= 1:
            return nn_loss
        return self.mix * nn_loss + (1 - self.mix) * self.criterion(z_a, z_b)

    @torch.no_grad()
    def after_optimizer_step(self, step, total_steps):
        n, k = self._keys.shape[0], self.bank.shape[0]
        idx = (self.filled + torch.arange(n, device=self.bank.device)) % k
        self.bank[idx] = self._keys
        self.filled += n


METHODS["nnclr"] = NNCLR

if __name__ == "__main__":
    from pipelines.pretrain import main
    sys.exit(main())
