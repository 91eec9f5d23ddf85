"""Projection heads: h (N, D_in) -> z (N, D_out). Dropped after pretraining."""
from __future__ import annotations

from torch import nn


class ProjectionHead(nn.Sequential):
    """Linear-BN-ReLU-Linear, the SimCLR / MoCo v2 MLP head."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, last_bn: bool = False):
        layers = [
            nn.Linear(in_dim, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim, bias=not last_bn),
        ]
        if last_bn:
            layers.append(nn.BatchNorm1d(out_dim, affine=False))
        super().__init__(*layers)


class SimCLRProjectionHead(ProjectionHead):
    """SimCLR v1: hidden = input width, 128-d output (Chen et al. 2020)."""

    def __init__(self, in_dim: int, hidden_dim: int | None = None, out_dim: int = 128):
        super().__init__(in_dim, hidden_dim or in_dim, out_dim)


class MoCoProjectionHead(ProjectionHead):
    """MoCo v2: 2-layer MLP, hidden = input width, 128-d output (Chen et al. 2020b)."""

    def __init__(self, in_dim: int, hidden_dim: int | None = None, out_dim: int = 128):
        super().__init__(in_dim, hidden_dim or in_dim, out_dim)
