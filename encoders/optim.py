"""Optimisers and the per-step learning-rate schedule used by pretraining."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


class LARS(torch.optim.Optimizer):
    """LARS (You et al. 2017) as used by SimCLR for large batches: SGD with momentum whose
    per-layer step is scaled by trust * ||w|| / ||g + wd w||. Groups with
    `lars_exclude=True` (biases, BN) get plain SGD with momentum and no weight decay."""

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 1e-6,
                 trust_coefficient: float = 0.001):
        if lr < 0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      trust_coefficient=trust_coefficient, lars_exclude=False))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad
                if not group["lars_exclude"]:
                    d_p = d_p.add(p, alpha=group["weight_decay"])
                    w_norm, g_norm = torch.norm(p), torch.norm(d_p)
                    trust = torch.where((w_norm > 0) & (g_norm > 0),
                                        group["trust_coefficient"] * w_norm / g_norm, torch.ones_like(w_norm))
                    d_p = d_p.mul(trust)
                buf = self.state[p].get("momentum_buffer")
                if buf is None:
                    buf = self.state[p]["momentum_buffer"] = d_p.clone()
                else:
                    buf.mul_(group["momentum"]).add_(d_p)
                p.add_(buf, alpha=-group["lr"])


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay (and LARS adaptation) on weight matrices / kernels only, not on
    biases and normalisation parameters, as in SimCLR and DINO."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay, "lars_exclude": False},
        {"params": no_decay, "weight_decay": 0.0, "lars_exclude": True},
    ]


def build_optimizer(name: str, model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    groups = param_groups(model, weight_decay)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "lars":
        return LARS(groups, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; choose sgd, adamw or lars")


def warmup_cosine(base_lr: float, total_steps: int, warmup_steps: int, final_lr: float = 0.0) -> np.ndarray:
    """Per-step learning rates: linear warm-up from 0, then half-cosine to `final_lr`."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    warmup_steps = min(warmup_steps, total_steps)
    warm = np.linspace(0, base_lr, warmup_steps, endpoint=False) + base_lr / max(warmup_steps, 1)
    rest = total_steps - warmup_steps
    t = np.arange(rest) / max(rest, 1)
    cos = final_lr + 0.5 * (base_lr - final_lr) * (1 + np.cos(math.pi * t))
    return np.concatenate([warm[:warmup_steps], cos])


class Schedule:
    """The run's length and its learning rate per step, the one owner of `total_steps`:
    linear warm-up (`warmup_epochs`, at most a tenth of the run), then cosine to 0 at
    `total_steps`. A function of the total alone, so a resumed run rebuilds the same one;
    `refit(total)` moves the end (a `--minutes` run that falls behind its budget)."""

    def __init__(self, base_lr: float, total_steps: int, warmup_epochs: float, steps_per_epoch: int):
        self.base_lr, self.warmup_epochs, self.steps_per_epoch = base_lr, warmup_epochs, steps_per_epoch
        self.refit(total_steps)

    def refit(self, total_steps: int) -> None:
        warmup_steps = min(int(round(self.warmup_epochs * self.steps_per_epoch)), max(total_steps // 10, 1))
        self.total_steps = total_steps
        self.lrs = warmup_cosine(self.base_lr, total_steps, warmup_steps)

    def lr(self, step: int) -> float:
        return float(self.lrs[min(step, len(self.lrs) - 1)])
