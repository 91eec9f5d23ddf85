"""Pretraining's loop, method-agnostic: batches and views from (seed, step), one optimizer
step through the method's `training_loss` / `after_optimizer_step`, epochs with the
method's between-epoch hook, and the `--minutes` calibration.

The loop never looks at the method's name: what differs between SimCLR, MoCo, BYOL, DINO,
SwAV, NPID and DeepCluster lives in `encoders.methods` (see `encoders.methods.base.Method`).
"""
from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from encoders import distributed
from encoders.augment import AugmentConfig, BatchMultiCrop
from encoders.embed import Encoder, embed_tensor
from encoders.files import crash_point
from encoders.methods import EpochContext, Method
from encoders.optim import Schedule
from encoders.runtime import autocast
from pipelines.run_dir import CHECKPOINT

log = logging.getLogger("pipelines.pretrain")


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def step_generator(seed: int, step: int, device: torch.device, rank: int = 0) -> torch.Generator:
    """Augmentation randomness of (seed, step) for the images of one rank (rank 0: all
    images of a one-process run)."""
    return torch.Generator(device=device).manual_seed(seed * 7_919 + step * 104_729 + 17 + rank * 1_000_000_007)


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; nothing of that step was kept."""


@dataclass
class StepSettings:
    batch_size: int
    seed: int
    channels_last: bool
    precision: str


class Trainer:
    """Holds what one step needs; `step(i)` runs global step i and returns its loss."""

    def __init__(self, method: Method, optimizer, images: torch.Tensor, device: torch.device,
                 settings: StepSettings, aug_cfg: AugmentConfig, schedule: Schedule, encoder: Encoder):
        """`encoder`: the method's backbone as trained (no whitening), for the between-epoch embeddings."""
        self.method, self.optimizer, self.images, self.device = method, optimizer, images, device
        self.s, self.schedule, self.encoder = settings, schedule, encoder
        self.augment = BatchMultiCrop(aug_cfg, method.views)
        self.steps_per_epoch = len(images) // settings.batch_size
        self.rank, self.world = distributed.rank(), distributed.world_size()
        self.loss_fn = distributed.data_parallel(method, device)  # DDP under torchrun
        self.forget_order()
        self._ready_epoch = -1

    def forget_order(self) -> None:
        self._order_epoch, self._order = -1, None

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's (images (N, 3, S, S) uint8 on the device, their indices (N,))."""
        epoch, i = divmod(step, self.steps_per_epoch)
        if epoch != self._order_epoch:
            g = torch.Generator().manual_seed(self.s.seed * 1_000_003 + epoch)
            order = self.method.epoch_order(epoch, len(self.images), g)
            self._order = epoch_permutation(len(self.images), self.s.seed, epoch) if order is None else order
            self._order_epoch = epoch
        b = self.s.batch_size
        idx = self._order[i * b:(i + 1) * b]  # the global batch
        n = len(idx) // self.world
        idx = idx[self.rank * n:(self.rank + 1) * n]  # this rank's slice
        x = self.images[idx.to(self.images.device)].to(self.device, non_blocking=True)
        return x, idx.to(self.device)

    def views(self, step: int) -> tuple[list[torch.Tensor], torch.Tensor]:
        x, idx = self.batch(step)
        g = step_generator(self.s.seed, step, self.device, self.rank)
        fmt = torch.channels_last if self.s.channels_last else torch.contiguous_format
        return [v.contiguous(memory_format=fmt) for v in self.augment(x, g)], idx

    def step(self, step: int) -> torch.Tensor:
        for group in self.optimizer.param_groups:
            group["lr"] = self.schedule.lr(step)
        views, idx = self.views(step)
        with autocast(self.device, self.s.precision):
            loss = self.loss_fn(views, idx)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.method.after_optimizer_step(step, self.schedule.total_steps)
        return distributed.mean_over_ranks(loss.detach())  # the global batch's loss, on every rank

    def begin_epoch(self, epoch: int, step: int) -> dict | None:
        """Run the method's between-epoch hook once, if `step` is the epoch's first step (a run
        resumed mid-epoch keeps the checkpointed state). Returns the hook's numbers, or None."""
        if step != epoch * self.steps_per_epoch or self._ready_epoch == epoch:
            return None
        self._ready_epoch = epoch
        stats = self.method.on_epoch_start(epoch, self.epoch_context())
        self.method.train()
        self.forget_order()
        return stats

    def epoch_context(self) -> EpochContext:
        def embed_all() -> torch.Tensor:
            return torch.from_numpy(embed_tensor(self.encoder, self.images, 256))

        def forget(params) -> None:
            for p in params:
                self.optimizer.state.pop(p, None)

        return EpochContext(embed_all=embed_all, forget_optimizer_state=forget, kmeans=kmeans_labels)


def kmeans_labels(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """faiss K-means labels (M,) of float32 (M, d): lent to methods, since encoders/ imports no faiss."""
    from index.clusters import kmeans  # imported on first use: only DeepCluster pays for loading faiss

    return kmeans(x, k, seed=seed, nredo=1, niter=20).labels


class MetricsLog:
    """metrics.jsonl, written by rank 0 only (other ranks get a no-op)."""

    def __init__(self, path, enabled: bool):
        self.f = open(path, "a") if enabled else None

    def write(self, rec: dict) -> None:
        if self.f is not None:
            self.f.write(json.dumps(rec) + "\n")
            self.f.flush()

    def close(self) -> None:
        if self.f is not None:
            self.f.close()


class Pacer:
    """Keeps a `--minutes` run on time. The schedule is fitted to the budget from a few timed
    steps at the start, which can be off either way: the run later goes slower (other jobs on
    the machine, checkpoints, snapshots) and would reach the deadline with its cosine
    unfinished, or it goes faster than those first steps (allocator and thread warm-up) and
    would end with budget left over. So every `every` steps the rate so far is measured and the
    schedule refitted to end at the step that fits: earlier whenever the steps left would end
    after the deadline; later only in the first `extend_until` of the schedule, while the
    learning rate is still near its peak, and never beyond `longest` (an `--epochs` plan).
    `on_refit(step, total)` is told. `last_step` (`--max-steps`) stops the run whatever the
    schedule. All processes take rank 0's decision."""

    def __init__(self, deadline: float, schedule: Schedule, on_refit, device: torch.device, every: int = 20,
                 longest: int | None = None, last_step: int | None = None, extend_until: float = 0.25):
        self.deadline, self.schedule, self.on_refit = deadline, schedule, on_refit
        self.device, self.every = device, every
        self.longest, self.last_step, self.extend_until = longest, last_step, extend_until
        self.t0, self.first = None, None

    @property
    def stop(self) -> int:
        total = self.schedule.total_steps
        return total if self.last_step is None else min(total, self.last_step)

    def expired(self) -> bool:
        return distributed.any_rank(time.perf_counter() >= self.deadline, self.device)

    def after_step(self, step: int) -> int:
        """Called after `step` steps are done; returns the step to stop at. The rate is the
        average since the first call, so recurring pauses (checkpoints) count at their share."""
        now = time.perf_counter()
        if self.first is None:
            self.t0, self.first = now, step
        if (step - self.first) % self.every or step == self.first:
            return self.stop
        rate = (step - self.first) / max(now - self.t0, 1e-9)  # steps/s
        fits = step + max(1, int((self.deadline - now) * rate * 0.97))
        total = self.schedule.total_steps
        if fits < 0.99 * total:
            new = fits
        elif fits > 1.02 * total and step <= self.extend_until * total:
            new = fits if self.longest is None else max(total, min(fits, self.longest))
        else:
            new = total
        new = distributed.from_rank0(new, self.device)
        if new != total:
            log.info("%s the budget at step %d (%.2f steps/s): the schedule now ends at step %d instead of %d",
                     "behind" if new < total else "ahead of", step, rate, new, total)
            self.schedule.refit(new)
            self.on_refit(step, new)
        return self.stop


def train_one_epoch(trainer: Trainer, epoch: int, start_step: int, stop_step: int, pacer: Pacer | None,
                    checkpointer, bar, metrics: MetricsLog, log_every: int) -> dict[str, float]:
    """Run global steps from max(start, epoch start) to the epoch's end or the stop: `stop_step`,
    or for a `--minutes` run its `pacer`'s, which may move either way, or the deadline; returns stats."""
    spe, bs = trainer.steps_per_epoch, trainer.s.batch_size
    first, epoch_end = max(start_step, epoch * spe), (epoch + 1) * spe
    last = min(pacer.stop if pacer is not None else stop_step, epoch_end)
    loss_sum, n, step = torch.zeros(()), 0, first
    window_t, window_imgs = time.perf_counter(), 0
    stopped_early = False
    while step < last:
        t0 = time.perf_counter()
        loss = trainer.step(step)
        loss_value = float(loss)  # syncs; the step's time is now real
        if not math.isfinite(loss_value):
            raise TrainingDiverged(f"loss is {loss_value} at step {step}")
        loss_sum += loss.float().cpu()
        n += 1
        window_imgs += bs
        lr = trainer.optimizer.param_groups[0]["lr"]
        bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.3g}", img_s=f"{bs / (time.perf_counter() - t0):.0f}",
                        epoch=epoch)
        bar.update(1)
        if (step + 1) % log_every == 0 or step + 1 == last:
            now = time.perf_counter()
            metrics.write({"step": step + 1, "epoch": epoch, "loss": loss_value, "lr": lr,
                           "img_per_s": window_imgs / (now - window_t), "time": time.time()})
            window_t, window_imgs = now, 0
        checkpointer.maybe_save(step + 1)
        crash_point(f"pretrain:after_step:{step + 1}")
        step += 1
        if pacer is not None:
            last = min(epoch_end, pacer.after_step(step))
            bar.total = max(bar.total, pacer.stop)
            if step < last and pacer.expired():
                stopped_early = True
                break
    return {"epoch": epoch, "loss": float(loss_sum / max(n, 1)), "steps": n, "last_step": step,
            "stopped_early": stopped_early}


def train_epochs(trainer: Trainer, start_step: int, stop_step: int, pacer: Pacer | None, checkpointer,
                 bar, metrics: MetricsLog, log_every: int) -> tuple[int, list[dict]]:
    """Epochs from the one holding `start_step` until the stop (`stop_step`, or the pacer's) or
    the deadline; returns (the step reached, per-epoch stats). Raises TrainingDiverged."""
    spe, step, done = trainer.steps_per_epoch, start_step, []
    epoch = start_step // spe
    while step < (pacer.stop if pacer is not None else stop_step):
        hook = trainer.begin_epoch(epoch, step)
        if hook:
            metrics.write({"epoch_start": epoch, "step": step, **hook})
        stats = train_one_epoch(trainer, epoch, step, stop_step, pacer, checkpointer, bar, metrics, log_every)
        step = stats["last_step"]
        done.append(stats)
        if not stats["stopped_early"] and step % spe == 0:
            metrics.write({"epoch_end": epoch, "mean_loss": stats["loss"], "step": step})
        if stats["stopped_early"] or (pacer is not None and pacer.expired()):
            log.info("time budget reached at step %d", step)
            break
        epoch += 1
    return step, done


def calibrate_steps_per_second(trainer: Trainer, n_warm: int = 5, n_timed: int = 5, slow_s: float = 2.0) -> float:
    """Time a few real steps on a copy of the state, then restore it: the run itself
    stays a pure function of (seed, step). The first steps run slower (allocator and
    cache warm-up: 230 vs 342 img/s measured for smallcnn), so several are discarded.
    These steps are spent budget, so when the first one takes over `slow_s` seconds
    (ResNet-18 on a CPU: ~13 s) only 2 + 2 are run instead of n_warm + n_timed."""
    model_state = copy.deepcopy(trainer.method.state_dict())
    opt_state = copy.deepcopy(trainer.optimizer.state_dict())
    t0 = time.perf_counter()
    float(trainer.step(0))
    if distributed.any_rank(time.perf_counter() - t0 > slow_s, trainer.device):  # all ranks run the same steps
        n_warm, n_timed = min(n_warm, 2), min(n_timed, 2)
    for i in range(1, n_warm):
        float(trainer.step(i))
    t0 = time.perf_counter()
    for i in range(n_warm, n_warm + n_timed):
        float(trainer.step(i))
    rate = n_timed / (time.perf_counter() - t0)
    trainer.method.load_state_dict(model_state)
    trainer.optimizer.load_state_dict(opt_state)
    trainer.forget_order()
    return rate


def fit_to_budget(trainer: Trainer, deadline: float, batch_size: int) -> int:
    """The steps that fit before `deadline`, from a few timed steps (the same on every rank)."""
    rate = calibrate_steps_per_second(trainer)
    remaining = deadline - time.perf_counter() - 5.0  # keep a few seconds to save
    fit = distributed.from_rank0(max(1, int(remaining * rate * 0.97)), trainer.device)
    log.info("measured %.2f steps/s (%.0f img/s): %d steps (%.2f epochs) fit in the budget",
             rate, rate * batch_size, fit, fit / trainer.steps_per_epoch)
    return fit


def train(cfg, trainer: Trainer, proc, start_step: int, stop_step: int,
          pacer: Pacer | None, checkpointer, metrics: MetricsLog) -> tuple[int, list[dict]]:
    """Steps start_step..stop_step with a progress bar; (the step reached, per-epoch stats).
    Raises TrainingDiverged, naming the checkpoint that is left."""
    log.info("training %s/%s on %s (%s, channels_last=%s): %d images, batch %d, %d steps/epoch, "
             "steps %d..%d, optimizer %s lr %.3g, %s, %d process(es)", cfg.method, cfg.backbone, proc.device,
             proc.precision, cfg.channels_last, len(trainer.images), cfg.batch_size, trainer.steps_per_epoch,
             start_step, stop_step, cfg.optimizer, cfg.lr * cfg.batch_size / 256,
             trainer.method.views, proc.world)
    trainer.method.train()
    bar = tqdm(total=stop_step, initial=start_step, desc="pretrain", unit="step", disable=not cfg.progress,
               dynamic_ncols=True)
    try:
        return train_epochs(trainer, start_step, stop_step, pacer, checkpointer, bar, metrics, cfg.log_every)
    except TrainingDiverged as e:
        raise TrainingDiverged(f"{e}. Nothing was saved from this step; the last checkpoint is "
                               f"{checkpointer.run_dir / CHECKPOINT}") from None
    finally:
        bar.close()
