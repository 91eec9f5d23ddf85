"""MoCo v2 (He et al. 2020; Chen et al. 2020b): momentum key encoder + FIFO queue."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from encoders import distributed
from encoders.heads import MoCoProjectionHead
from encoders.losses import MoCoInfoNCELoss
from encoders.methods.base import Method, MethodSettings, no_grad_copy, option, update_momentum


@dataclass(frozen=True)
class MoCoSettings(MethodSettings):
    proj_dim: int = option(128, "projection head output size")
    temperature: float = option(0.2, "contrastive softmax temperature")
    queue_size: int = option(4096, "negative keys in the queue")
    momentum: float = option(0.99, "EMA momentum of the key encoder")


class MoCo(Method):
    """The key encoder is an EMA of the query encoder, never trained by gradients. The queue
    holds the last K keys (K, D), L2-normalised; both are buffers, so they live in every
    checkpoint's state_dict. `training_loss` only computes the loss; the step's keys enter
    the queue in `after_optimizer_step`, before the momentum update (the same order of
    effects as moco's builder).

    gather_distributed: every rank enqueues the keys of all ranks, in rank order, so the
    queue stays identical on all ranks and equals the one-process queue of the global
    batch. Each rank's BN sees its own batch (no shuffle-BN); use SyncBatchNorm for
    global statistics.
    """

    Settings = MoCoSettings

    def __init__(self, backbone: nn.Module, settings: MoCoSettings = MoCoSettings(), gather_distributed: bool = False):
        super().__init__(backbone)
        proj_dim, queue_size, momentum = settings.proj_dim, settings.queue_size, settings.momentum
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.head = MoCoProjectionHead(backbone.feat_dim, out_dim=proj_dim)
        self.criterion = MoCoInfoNCELoss(settings.temperature)
        self.momentum = momentum
        self.gather_distributed = gather_distributed
        self.key_backbone = no_grad_copy(backbone)
        self.key_head = no_grad_copy(self.head)
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, proj_dim), dim=1))  # (K, D)
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self._keys = None  # this step's keys, (N, D), until after_optimizer_step

    @classmethod
    def build(cls, backbone, settings, facts):
        return cls(backbone, settings, gather_distributed=facts.gather_distributed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))  # (N, 3, S, S) -> (N, D)

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
        update_momentum(self.key_backbone, self.backbone, self.momentum)
        update_momentum(self.key_head, self.head, self.momentum)

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

    def training_loss(self, views, indices):
        q = self(views[0])  # (N, D)
        self._keys = self.forward_key(views[1])  # (N, D), no gradient; enqueued after the step
        return self.criterion(q, self._keys, self.queue)

    def after_optimizer_step(self, step, total_steps):
        if self._keys is not None:
            keys, self._keys = self._keys, None
            self.enqueue(distributed.gather_no_grad(keys) if self.gather_distributed else keys)  # (W*N, D)
        self.momentum_update()

    @classmethod
    def checkpoint_problem(cls, state_dict):
        if "head.1.running_mean" in state_dict:
            return ("it was written by an earlier MoCo whose projection head had BatchNorm (Linear-BN-ReLU-"
                    "Linear); MoCo v2's head is Linear-ReLU-Linear, so this run cannot be resumed")
        return None
