"""Pretrain an image encoder on an unlabeled folder with any method of `encoders.methods`.

    python -m pipelines.pretrain --data DIR --method {simclr,moco,byol,dino,swav,npid,deepcluster} --out RUN_DIR

The folder is decoded once (in parallel) into a uint8 cache at training resolution;
each step augments the batch with per-sample random parameters on the model's device.
Data order and augmentations come from (seed, step), so `--resume` continues
with exactly the losses an uninterrupted run would have had.
RUN_DIR ends with encoder.safetensors + config.json (the `Encoder`), metrics.jsonl,
loss.png, and checkpoint.pt (for --resume).

Data parallel: `torchrun --nproc-per-node W -m pipelines.pretrain ...`. --batch-size is
the global batch; each rank takes its 1/W slice of the same (seed, step) batch, the
losses gather across ranks, and only rank 0 writes RUN_DIR.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from encoders import distributed
from encoders.augment import AugmentConfig
from encoders.backbones import build_backbone
from encoders.decoded import save_decoded
from encoders.embed import Encoder, EncoderConfig
from encoders.files import atomic_write_json
from encoders.imagefolder import decode_folder, downsample, scan_images
from encoders.methods import METHODS, Method, RunFacts
from encoders.optim import Schedule, build_optimizer
from encoders.recipe import Hardware, describe_collection
from encoders.runtime import pick_device, pick_precision
from encoders.store import ENCODER_FILE, save_encoder
from pipelines.cli import run_cli
from pipelines.pretrain_config import (  # noqa: F401 (re-exported)
    AUTO_FIELDS,
    LR_DEFAULTS,
    WARM_START,
    PretrainConfig,
    check,
    from_saved,
    parse_args,
    resolve,
    with_data,
)
from pipelines.run_dir import (
    CHECKPOINT,
    METRICS,
    SNAPSHOTS,
    Checkpointer,
    CheckpointLoadError,
    load_checkpoint,
    plot_losses,
    trim_metrics,
)
from pipelines.train_loop import MetricsLog, Pacer, StepSettings, Trainer, TrainingDiverged, fit_to_budget, train

log = logging.getLogger("pipelines.pretrain")

WHITEN_SAMPLE = 16384  # images whose embeddings fit the whitening


@dataclass(frozen=True)
class Process:
    """This process's place in the run: device, precision and rank."""
    device: torch.device
    precision: str
    is_main: bool
    world: int


def join_process(cfg: PretrainConfig) -> Process:
    """Join torchrun's process group if there is one; check what depends on the world size."""
    device = distributed.init_from_env(pick_device(cfg.device))
    proc = Process(device, pick_precision(cfg.precision, device), distributed.rank() == 0, distributed.world_size())
    if not proc.is_main:  # rank 0 logs and writes RUN_DIR; the others only train
        logging.getLogger().setLevel(logging.WARNING)
    if cfg.sync_bn and proc.world > 1 and device.type != "cuda":
        raise ValueError("--sync-bn needs CUDA: torch's SyncBatchNorm does not run on CPU (gloo)")
    return proc


def start_or_resume(cfg: PretrainConfig, run_dir: Path, proc: Process) -> tuple[PretrainConfig, dict | None]:
    """(the run's config with every `auto` resolved and this process's device, its checkpoint
    or None for a new run)."""
    ckpt = load_checkpoint(run_dir, proc.device) if cfg.resume else None
    here = {"device": str(proc.device), "precision": proc.precision, "progress": cfg.progress and proc.is_main}
    if ckpt is None:
        if cfg.resume:
            log.info("no checkpoint in %s; starting a new run", run_dir)
        if cfg.init_from:
            return replace(warm_start_config(cfg, proc), **here), None
        files = scan_images(cfg.data)
        if not files:
            raise ValueError(f"--data {cfg.data}: no image files found")
        return replace(resolve(cfg, describe_collection(files), Hardware.detect(proc.device)), **here), None
    saved = from_saved(ckpt["config"], cfg)
    problem = METHODS[saved.method].checkpoint_problem(ckpt["model"])
    if problem:
        raise CheckpointLoadError(f"{run_dir / CHECKPOINT}: {problem}; delete it to start over")
    log.info("resuming %s from step %d of %d", run_dir, ckpt["step"], ckpt["total_steps"])
    return replace(saved, **here), ckpt


def warm_start_config(cfg: PretrainConfig, proc: Process) -> PretrainConfig:
    """--init-from RUN: RUN's settings (method, backbone, size, recipe), this invocation's data, out,
    length and seed. Raises ValueError when RUN has no checkpoint."""
    old = load_checkpoint(Path(cfg.init_from), proc.device)
    if old is None:
        raise ValueError(f"--init-from {cfg.init_from}: no {CHECKPOINT} there (a finished pretrain run leaves one)")
    if cfg.epochs is None and cfg.minutes is None:
        raise ValueError("--init-from: say how long to train with --minutes or --epochs")
    saved = from_saved(old["config"], cfg)
    log.info("warm start from %s (%s, %s at %d px, step %d)", cfg.init_from, saved.method, saved.backbone,
             saved.image_size, old["step"])
    return replace(saved, **{k: getattr(cfg, k) for k in WARM_START})


def warm_start(model: torch.nn.Module, run_dir: Path, device: torch.device) -> None:
    """Load another run's model weights into `model`; entries whose shape depends on the collection
    (NPID's memory bank, DeepCluster's per-image labels) start fresh and are named in the log."""
    state = load_checkpoint(run_dir, device)["model"]
    own = model.state_dict()
    fits = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    fresh = sorted(set(own) - set(fits))
    model.load_state_dict(fits, strict=False)
    log.info("loaded %d of %d weight tensors from %s%s", len(fits), len(own), run_dir / CHECKPOINT,
             f"; fresh (size depends on the collection): {', '.join(fresh)}" if fresh else "")


def log_config(cfg: PretrainConfig) -> None:
    """Every automatic choice with its reason, and the method's settings."""
    for name, why in cfg.auto_reasons.items():
        log.info("auto %s = %s", name, why)
    log.info("%s settings: %s", cfg.method, cfg.settings)


def check_world(cfg: PretrainConfig, proc: Process) -> None:
    if cfg.batch_size % proc.world or cfg.batch_size // proc.world < 2:
        raise ValueError(f"--batch-size {cfg.batch_size} is the global batch: make it a multiple of the "
                         f"{proc.world} processes, at least 2 images each")


def load_images(cfg: PretrainConfig, proc: Process):
    """(paths, uint8 (M, 3, S, S) images on the device when they fit, skip report)."""
    workers = cfg.workers
    if workers is None and proc.world > 1:  # every rank decodes the folder: share the node's CPUs
        workers = max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", proc.world)))
    paths, images, skips = decode_folder(cfg.data, max(cfg.cache_size or 0, cfg.image_size), workers=workers,
                                         progress=cfg.progress)
    log.info("%d images decoded at %d px from %s; %s", len(paths), cfg.image_size, cfg.data, skips.summary())
    if proc.is_main and images.shape[-1] == cfg.image_size:  # indexing and the report take them from here
        save_decoded(cfg.out, paths, images)
    if proc.device.type == "cuda":
        images = images.to(proc.device) if images.numel() < 4 << 30 else images.pin_memory()
    return paths, images, skips


def build_method(cfg: PretrainConfig) -> Method:
    """The method `cfg.method` names, from the registry, on a fresh backbone, built from its own settings."""
    backbone = build_backbone(cfg.backbone, cfg.small_stem)
    gather = distributed.is_dist()  # negatives, queues, statistics from all ranks under torchrun
    model = METHODS[cfg.method].build(backbone, cfg.settings, RunFacts(cfg.images, cfg.seed, gather))
    if cfg.sync_bn and gather:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # SimCLR's "global BN"
    return model


def build_training(cfg: PretrainConfig, device: torch.device):
    """(the method on `device`, its optimizer, the learning rate for this batch size)."""
    model = build_method(cfg).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    base_lr = cfg.lr * cfg.batch_size / 256
    return model, build_optimizer(cfg.optimizer, model, base_lr, cfg.weight_decay), base_lr


def budget_deadline(cfg: PretrainConfig, t_start: float) -> float | None:
    """When a `--minutes` run stops training: the whitening fit at the end (embedding a sample
    of the images) is part of the budget."""
    if not cfg.minutes:
        return None
    reserve = min(20.0, 0.05 * cfg.minutes * 60) if cfg.whiten else 0.0
    return t_start + cfg.minutes * 60 - reserve


def restore(run_dir: Path, ckpt: dict, model, optimizer) -> None:
    """Load the checkpoint into the model and optimizer."""
    try:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise CheckpointLoadError(f"{run_dir / CHECKPOINT} does not fit the model its config describes "
                                  f"({' '.join(str(e).split())[:150]}); delete it to start over") from None


def clear_old_run(run_dir: Path) -> None:
    """A new run in an old folder starts a new log, new snapshots, and no stale encoder
    (an old run's weights never pair with the new config.json)."""
    (run_dir / METRICS).unlink(missing_ok=True)
    shutil.rmtree(run_dir / SNAPSHOTS, ignore_errors=True)
    (run_dir / ENCODER_FILE).unlink(missing_ok=True)


def start_from(cfg: PretrainConfig, run_dir: Path, ckpt: dict | None, model, optimizer, proc) -> None:
    """The weights and run folder a run starts from: a resumed run its checkpoint's (metrics past its
    step dropped); a new one the weights of --init-from, if given, or its own initialisation, in a
    folder cleared of an older run's files."""
    if ckpt is not None:
        restore(run_dir, ckpt, model, optimizer)
        if proc.is_main:
            trim_metrics(run_dir, ckpt["step"])
        return
    if cfg.init_from:
        warm_start(model, Path(cfg.init_from), proc.device)
    if proc.is_main:
        clear_old_run(run_dir)


def run(cfg: PretrainConfig) -> dict:
    """Train, save RUN_DIR; returns the summary. Raises ValueError (bad input, a checkpoint
    that does not fit) and TrainingDiverged (non-finite loss)."""
    t_start = time.perf_counter()
    run_dir = Path(cfg.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    proc = join_process(cfg)
    cfg, ckpt = start_or_resume(cfg, run_dir, proc)  # a new run resolves its `auto` settings here
    check_world(cfg, proc)
    torch.manual_seed(cfg.seed)
    paths, images, skips = load_images(cfg, proc)
    cfg = with_data(cfg, len(images))  # final: logged and saved, never changed
    log_config(cfg)

    model, optimizer, base_lr = build_training(cfg, proc.device)
    spe = len(images) // cfg.batch_size
    start_step = ckpt["step"] if ckpt else 0
    longest = int(round(cfg.epochs * spe)) if cfg.epochs is not None else None  # an --epochs plan: the most steps
    planned = ckpt["total_steps"] if ckpt else longest
    schedule = Schedule(base_lr, max(planned or 0, 10), cfg.warmup_epochs, spe)  # refitted below
    start_from(cfg, run_dir, ckpt, model, optimizer, proc)
    enc_cfg = encoder_config(cfg, model.backbone.feat_dim)
    trained = Encoder(model.backbone, replace(enc_cfg, whiten=False, readout="avg"))  # what the method's head sees
    trainer = Trainer(model, optimizer, images, proc.device,
                      StepSettings(cfg.batch_size, cfg.seed, cfg.channels_last, cfg.precision),
                      augment_config(cfg), schedule, trained)
    deadline = budget_deadline(cfg, t_start)
    metrics = MetricsLog(run_dir / METRICS, proc.is_main)
    try:
        first_hook = trainer.begin_epoch(start_step // spe, start_step)  # DeepCluster needs labels to time a step
        if first_hook:
            metrics.write({"epoch_start": start_step // spe, "step": start_step, **first_hook})
        if planned is None or (cfg.minutes and ckpt is None):  # the steps that fit the budget
            fit = fit_to_budget(trainer, deadline, cfg.batch_size)
            planned = fit if planned is None else min(planned, fit)
        schedule.refit(planned)
        stop_step = min(planned, cfg.max_steps) if cfg.max_steps is not None else planned
        if proc.is_main:
            atomic_write_json(run_dir / "config.json", asdict(enc_cfg))
        checkpointer = Checkpointer(run_dir, model, optimizer, cfg, schedule, proc.is_main, t_start,
                                    cfg.checkpoint_minutes * 60,
                                    cfg.snapshot_minutes * 60 if cfg.snapshot_minutes else None,
                                    export=lambda: encoder_to_save(model.backbone, enc_cfg, images, cfg.seed))
        metrics.write({"step": start_step, "total_steps": schedule.total_steps})  # the schedule's end, as fitted
        pacer = make_pacer(deadline, schedule, metrics, proc.device, longest, cfg.max_steps)
        step, epochs = train(cfg, trainer, proc, start_step, stop_step, pacer, checkpointer, metrics)
    finally:
        metrics.close()
    checkpointer.maybe_save(step, force=True)
    summary = {"run_dir": str(run_dir), "step": step, "total_steps": schedule.total_steps, "epoch": step / spe,
               "finished": step >= schedule.total_steps, "images": len(images), "skipped": skips.as_dict(),
               "seconds": time.perf_counter() - t_start,
               "final_loss": epochs[-1]["loss"] if epochs else None, "processes": proc.world}
    if proc.is_main:
        finish_run_dir(run_dir, encoder_to_save(model.backbone, enc_cfg, images, cfg.seed), summary, skips)
    return summary


def augment_config(cfg: PretrainConfig) -> AugmentConfig:
    return AugmentConfig(image_size=cfg.image_size, min_scale=cfg.min_scale, blur_p=cfg.blur_p, grey_p=cfg.grey_p,
                         jitter_strength=cfg.jitter_strength, normalize=cfg.normalize)


def make_pacer(deadline: float | None, schedule: Schedule, metrics: MetricsLog, device, longest: int | None,
               last_step: int | None) -> Pacer | None:
    """A `--minutes` run's pacer: if the run falls behind, its schedule ends earlier; if it runs
    faster early on than its first timed steps promised, later (up to `longest` steps, an
    `--epochs` plan); metrics.jsonl records the new end (the checkpoint saves the schedule's, so
    `--resume` rebuilds the same schedule). `last_step` (`--max-steps`) still stops the run."""
    if deadline is None:
        return None
    return Pacer(deadline, schedule, lambda step, total: metrics.write({"step": step, "total_steps": total}), device,
                 longest=longest, last_step=last_step)


def encoder_config(cfg: PretrainConfig, feat_dim: int) -> EncoderConfig:
    """What config.json records: architecture, preprocessing, embedding options, the run's config."""
    return EncoderConfig(backbone=cfg.backbone, small_stem=bool(cfg.small_stem), feat_dim=feat_dim,
                         image_size=cfg.image_size, method=cfg.method, training=asdict(cfg),
                         normalize=cfg.normalize, flip_average=cfg.flip_average, grey_average=cfg.grey_average,
                         whiten=cfg.whiten, readout=cfg.readout, whiten_dim=cfg.whiten_dim)


@torch.no_grad()
def encoder_to_save(backbone, enc_cfg: EncoderConfig, images: torch.Tensor, seed: int) -> Encoder:
    """The encoder as saved: with `enc_cfg.whiten`, a copy of the backbone with the whitening
    fitted on the embeddings of (a seeded sample of) the training images; the training model
    itself is left as it is."""
    encoder = Encoder(backbone, replace(enc_cfg, whiten=False))
    if not enc_cfg.whiten:
        return encoder
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(images), generator=g)[:WHITEN_SAMPLE].sort().values
    sample = images[idx.to(images.device)]
    return encoder.with_whitening(downsample(sample, enc_cfg.image_size))  # decoded larger (cache_size)


def finish_run_dir(run_dir: Path, encoder: Encoder, summary: dict, skips) -> None:
    """The encoder (whitening fitted now), the loss plot and summary.json (rank 0)."""
    save_encoder(run_dir, encoder)
    plot_losses(run_dir)
    atomic_write_json(run_dir / "summary.json", summary)
    log.info("saved %s (step %d/%d, %.2f epochs); %s", run_dir / ENCODER_FILE, summary["step"],
             summary["total_steps"], summary["epoch"], skips.summary())


def main(argv=None) -> int:
    cfg = parse_args(argv)

    def work():
        check(cfg)
        try:
            run(cfg)
        except TrainingDiverged as e:
            raise TrainingDiverged(f"{e}. Try a lower --lr or --precision fp32.") from None
        finally:
            distributed.shutdown()
    return run_cli(work, errors=(ValueError, TrainingDiverged))


if __name__ == "__main__":
    sys.exit(main())
