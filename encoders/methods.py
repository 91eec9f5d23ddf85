"""Self-supervised methods behind one interface.

Each method is an `nn.Module` with
- `backbone`: the encoder kept after training (h, not z),
- `forward(x) -> z`: the projection used by its loss,
- `training_loss(view_a, view_b) -> loss`: one step's loss from two batches of views,
- `after_optimizer_step()`: updates outside autograd (MoCo's momentum encoder).
New methods (BYOL, DINO, ...) are further subclasses of `ContrastiveMethod`.
Legend: N batch, D embedding dim, K queue length, W ranks.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from encoders import distributed
from encoders.heads import MoCoProjectionHead, SimCLRProjectionHead
from encoders.losses import MoCoInfoNCELoss, NTXentLoss


class ContrastiveMethod(nn.Module):
    def __init__(self, backbone: nn.Module, head: nn.Module, criterion: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.criterion = criterion

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))  # (N, 3, S, S) -> (N, D)

    def training_loss(self, view_a: torch.Tensor, view_b: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def after_optimizer_step(self) -> None:
        pass


class SimCLR(ContrastiveMethod):
    """Chen et al. 2020: shared encoder + MLP head, NT-Xent over the 2N views.

    gather_distributed: negatives from all ranks (see `NTXentLoss`)."""

    def __init__(self, backbone: nn.Module, proj_dim: int = 128, temperature: float = 0.5,
                 gather_distributed: bool = False):
        super().__init__(backbone, SimCLRProjectionHead(backbone.feat_dim, out_dim=proj_dim),
                         NTXentLoss(temperature, gather_distributed=gather_distributed))

    def training_loss(self, view_a, view_b):
        n = view_a.shape[0]
        z = self(torch.cat([view_a, view_b]))  # one pass, BN sees both views: (2N, D)
        return self.criterion(z[:n], z[n:])


class MoCo(ContrastiveMethod):
    """MoCo v2 (He et al. 2020; Chen et al. 2020b): momentum key encoder + FIFO queue.

    The key encoder is an EMA of the query encoder, never trained by gradients. The queue
    holds the last K keys (K, D), L2-normalised; both are buffers, so they live in every
    checkpoint's state_dict.

    gather_distributed: every rank enqueues the keys of all ranks, in rank order, so the
    queue stays identical on all ranks and equals the one-process queue of the global
    batch. Each rank's BN sees its own batch (no shuffle-BN); use SyncBatchNorm for
    global statistics.
    """

    def __init__(self, backbone: nn.Module, proj_dim: int = 128, temperature: float = 0.2,
                 queue_size: int = 4096, momentum: float = 0.99, gather_distributed: bool = False):
        super().__init__(backbone, MoCoProjectionHead(backbone.feat_dim, out_dim=proj_dim),
                         MoCoInfoNCELoss(temperature))
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.momentum = momentum
        self.gather_distributed = gather_distributed
        self.key_backbone = copy.deepcopy(backbone)
        self.key_head = copy.deepcopy(self.head)
        for p in self.key_params():
            p.requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, proj_dim), dim=1))  # (K, D)
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def key_params(self):
        yield from self.key_backbone.parameters()
        yield from self.key_head.parameters()

    def query_params(self):
        yield from self.backbone.parameters()
        yield from self.head.parameters()

    @torch.no_grad()
    def momentum_update(self) -> None:
        """key <- m * key + (1 - m) * query, for every parameter (BN buffers are copied
        from their own forward passes, as in the reference implementation)."""
        m = self.momentum
        for pk, pq in zip(self.key_params(), self.query_params()):
            pk.mul_(m).add_(pq.detach(), alpha=1 - m)

    @torch.no_grad()
    def forward_key(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.key_head(self.key_backbone(x)).float(), dim=1)  # (N, D)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """FIFO: overwrite the oldest len(keys) rows, wrapping around the end."""
        k = self.queue.shape[0]
        n = keys.shape[0]
        if n > k:
            keys, n = keys[-k:], k
        idx = (self.queue_ptr + torch.arange(n, device=keys.device)) % k  # (n,)
        self.queue[idx] = keys.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + n) % k)

    def training_loss(self, view_a, view_b):
        q = self(view_a)  # (N, D)
        k = self.forward_key(view_b)  # (N, D), no gradient
        loss = self.criterion(q, k, self.queue.clone())
        self.enqueue(distributed.gather_no_grad(k) if self.gather_distributed else k)  # (W*N, D)
        return loss

    def after_optimizer_step(self) -> None:
        self.momentum_update()


METHODS = {"simclr": SimCLR, "moco": MoCo}
