"""Contrastive losses as small modules. Legend: N batch, D embedding dim, K negatives."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class NTXentLoss(nn.Module):
    """SimCLR's NT-Xent: InfoNCE over 2N views, each with 1 positive and 2N-2 negatives.

    forward(z_a, z_b): z_a, z_b are (N, D) projections of two views of the same N images
    (row i of z_a and row i of z_b are a positive pair). Normalised inside. Returns the
    mean loss over all 2N anchors. With all embeddings equal it is exactly log(2N - 1).
    """

    def __init__(self, temperature: float = 0.5):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        if z_a.shape != z_b.shape or z_a.dim() != 2:
            raise ValueError(f"expected two (N, D) tensors of one shape, got {tuple(z_a.shape)} and {tuple(z_b.shape)}")
        n = z_a.shape[0]
        z = F.normalize(torch.cat([z_a, z_b]).float(), dim=1)  # (2N, D)
        logits = z @ z.T / self.temperature  # (2N, 2N)
        self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
        logits = logits.masked_fill(self_mask, float("-inf"))
        labels = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)  # (2N,)
        return F.cross_entropy(logits, labels)


class MoCoInfoNCELoss(nn.Module):
    """MoCo's InfoNCE: each query against its key (positive, index 0) and K queued keys.

    forward(q, k, negatives): q, k are (N, D) query / key embeddings, negatives (K, D)
    the queue (keys of earlier batches, no gradient). Normalised inside.
    """

    def __init__(self, temperature: float = 0.2):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, q: torch.Tensor, k: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        q = F.normalize(q.float(), dim=1)
        k = F.normalize(k.float(), dim=1)
        negatives = F.normalize(negatives.float(), dim=1)
        l_pos = (q * k).sum(dim=1, keepdim=True)  # (N, 1)
        l_neg = q @ negatives.T  # (N, K)
        logits = torch.cat([l_pos, l_neg], dim=1) / self.temperature  # (N, 1 + K)
        labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)  # positives at 0
        return F.cross_entropy(logits, labels)
