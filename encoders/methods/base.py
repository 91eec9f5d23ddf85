"""The interface every self-supervised method implements; the training loop knows only this.

A method is one `nn.Module` that
- states its options and their defaults once, in its `Settings` dataclass, and is built
  from them by `build(backbone, settings, facts)` (`facts`: what it takes from the run),
- keeps the encoder to save as `backbone` (h, not z),
- declares the views it trains on in `views` (an `encoders.augment.ViewSpec`),
- computes one step's loss in `training_loss(views, indices)` without changing any state,
- applies the step's state updates in `after_optimizer_step(step, total_steps)`: EMA
  teachers, queues, centres, memory banks, schedules,
- keeps every piece of its state in parameters and buffers, so `state_dict()` is its checkpoint,
- may run work between epochs in `on_epoch_start(epoch, ctx)` (DeepCluster's K-means) and
  choose the epoch's image order in `epoch_order` (sampling uniformly over clusters).
Legend: N batch, D embedding dim, V views, M collection size.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Iterable

import numpy as np
import torch
from torch import nn

from encoders.augment import ViewSpec


def option(default, help: str):
    """A settings field: its default and its help text (the command line's `--help`), stated once."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class MethodSettings:
    """A method's own options; each method subclasses it with `option(default, help)` fields."""


@dataclass(frozen=True)
class MultiCropSettings(MethodSettings):
    """Options of a method that trains on 2 global views plus `local_crops` small ones."""

    local_crops: int = option(0, "multi-crop: small views per image")
    local_size: int | None = option(None, "local crop side in px (None: 96/224 of the image size)")

    @property
    def views(self) -> ViewSpec:
        return ViewSpec.multi_crop(self.local_crops, self.local_size)


@dataclass(frozen=True)
class RunFacts:
    """What a method takes from the run rather than from its settings."""

    n_images: int  # M, the collection's readable images
    seed: int = 0
    gather_distributed: bool = False  # under torchrun: negatives, queues, statistics from all ranks


@dataclass
class EpochContext:
    """What the pipeline lends a method between epochs (encoders/ imports no FAISS, so the
    K-means is passed in).

    embed_all() -> (M, D) float features of every image of the collection, backbone in eval mode,
        the same on every rank;
    kmeans(x (M, D) float32, k, seed) -> labels (M,) int64;
    forget_optimizer_state(params): drop the optimizer's momentum for re-initialised parameters.
    """

    embed_all: Callable[[], torch.Tensor]
    kmeans: Callable[[np.ndarray, int, int], np.ndarray]
    forget_optimizer_state: Callable[[Iterable[nn.Parameter]], None]


class Method(nn.Module):
    """Base class; see the module docstring for the contract."""

    Settings: ClassVar[type[MethodSettings]] = MethodSettings
    views: ViewSpec

    def __init__(self, backbone: nn.Module, views: ViewSpec = ViewSpec()):
        super().__init__()
        self.backbone = backbone
        self.views = views

    @classmethod
    def build(cls, backbone: nn.Module, settings: MethodSettings, facts: RunFacts) -> "Method":
        """The method on `backbone`, from its own `settings` and the run's `facts`."""
        raise NotImplementedError

    def training_loss(self, views: list[torch.Tensor], indices: torch.Tensor) -> torch.Tensor:
        """views: global views (N, 3, S, S) first, then local ones (N, 3, s, s); indices:
        (N,) the images' positions in the collection. Returns the scalar loss."""
        raise NotImplementedError

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        """Called once after the optimizer took global step `step` (0-based) of `total_steps`."""

    def on_epoch_start(self, epoch: int, ctx: EpochContext) -> dict[str, float]:
        """Work before an epoch's first step; returns numbers to log."""
        return {}

    def epoch_order(self, epoch: int, n: int, generator: torch.Generator) -> torch.Tensor | None:
        """The (n,) image indices the epoch visits in order; None: a uniform permutation."""
        return None

    @classmethod
    def checkpoint_problem(cls, state_dict: dict) -> str | None:
        """Why a saved state_dict cannot be resumed by this version of the method, or None."""
        return None


# ---- exponential moving averages (lightly `models/utils.py` update_momentum / cosine_schedule) ----

@torch.no_grad()
def update_momentum(target: nn.Module, online: nn.Module, m: float) -> None:
    """target <- m * target + (1 - m) * online, parameter by parameter."""
    for pt, po in zip(target.parameters(), online.parameters()):
        pt.mul_(m).add_(po.detach(), alpha=1 - m)


def cosine_momentum(step: int, total_steps: int, base: float, final: float = 1.0) -> float:
    """BYOL's schedule: base at step 0 rising to `final` at the last step along a half cosine,
    m = final - (final - base) * (cos(pi * step / total) + 1) / 2."""
    t = min(step, total_steps) / max(total_steps, 1)
    return final - (final - base) * (math.cos(math.pi * t) + 1) / 2


def no_grad_copy(module: nn.Module) -> nn.Module:
    """A deep copy whose parameters take no gradient (EMA targets, teachers, key encoders)."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target
