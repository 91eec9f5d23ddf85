"""What `pipelines.pretrain` keeps in RUN_DIR besides the encoder: the checkpoint
(`--resume`), metrics.jsonl and its loss plot, and backbone snapshots.

Every file is written atomically (`encoders.files.atomic_write_with`); the checkpoint is
read with `torch.load(weights_only=True)`, so a file that would run code is refused.
"""
from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

from encoders.embed import Encoder
from encoders.files import atomic_write_bytes, atomic_write_json, atomic_write_with
from encoders.optim import Schedule
from encoders.store import save_encoder
from encoders.typed_json import FieldError, typed_dict

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
SNAPSHOTS = "snapshots"


# ---- checkpoints: one helper to save, one to restore, a fixed dict ----

def save_checkpoint(run_dir: Path, model, optimizer, step: int, total_steps: int, cfg) -> None:
    """RUN_DIR/checkpoint.pt: model, optimizer, step, total_steps and the run's config dataclass."""
    ckpt = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
            "total_steps": total_steps, "config": asdict(cfg)}
    atomic_write_with(run_dir / CHECKPOINT, lambda tmp: torch.save(ckpt, tmp), size=tensor_bytes(ckpt))


def tensor_bytes(obj) -> int:
    """Bytes of the tensors in a nested dict/list: about what torch.save writes."""
    if isinstance(obj, torch.Tensor):
        return obj.nelement() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


class Checkpointer:
    """When to write: RUN_DIR/checkpoint.pt every `every_s` seconds and when forced, and an
    encoder snapshot each time the run passes a multiple of `snapshot_s` seconds (None: no
    snapshots). Rank 0 only (`enabled`); the model is the same on every rank. The total
    steps saved are the schedule's."""

    def __init__(self, run_dir: Path, model, optimizer, cfg, schedule: Schedule, enabled: bool, t_start: float,
                 every_s: float, snapshot_s: float | None, export):
        self.run_dir, self.model, self.optimizer, self.cfg, self.schedule = run_dir, model, optimizer, cfg, schedule
        self.enabled, self.t_start, self.every_s = enabled, t_start, every_s
        self.snapshot_s = snapshot_s
        self.export = export  # () -> the Encoder as saved (with its whitening fitted now)
        self.last_save = time.perf_counter()
        self.next_snapshot = snapshot_s if snapshot_s else math.inf

    def maybe_save(self, step: int, force: bool = False) -> None:
        if not self.enabled:
            return
        if force or time.perf_counter() - self.last_save >= self.every_s:
            save_checkpoint(self.run_dir, self.model, self.optimizer, step, self.schedule.total_steps, self.cfg)
            self.last_save = time.perf_counter()
        elapsed = time.perf_counter() - self.t_start
        if elapsed >= self.next_snapshot:
            save_snapshot(self.run_dir, self.export(), step, elapsed)
            self.next_snapshot = (elapsed // self.snapshot_s + 1) * self.snapshot_s  # skip intervals spent decoding


class CheckpointLoadError(ValueError):
    """RUN_DIR/checkpoint.pt is not one of ours (truncated, foreign, or a pickle with code in it)."""


def load_checkpoint(run_dir: Path, device: torch.device) -> dict | None:
    """The checkpoint dict, or None if there is none. `weights_only=True`: tensors and plain
    containers only, a pickle that would run code is refused. Raises CheckpointLoadError."""
    path = run_dir / CHECKPOINT
    if not path.is_file():
        return None
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointLoadError(f"{path} is not a weights-only checkpoint (loading it would need full "
                                  f"unpickling, which can run code); refused. Delete it to start over") from None
    except Exception as e:  # truncated or not a torch file
        raise CheckpointLoadError(f"{path} is not a loadable checkpoint ({type(e).__name__}: "
                                  f"{' '.join(str(e).split())[:150]}); delete it to start over") from None
    kinds = {"model": dict, "optimizer": dict, "step": int, "total_steps": int, "config": dict}
    try:
        typed_dict(ckpt, kinds)
    except FieldError as e:
        raise CheckpointLoadError(f"{path} is not a checkpoint of pipelines.pretrain ({e}); "
                                  f"delete it to start over") from None
    return ckpt


# ---- metrics, loss plot, snapshots ----

def save_snapshot(run_dir: Path, encoder: Encoder, step: int, elapsed: float) -> Path:
    """The encoder after `step` steps, as a loadable encoder folder RUN_DIR/snapshots/stepNNNNNNN,
    with summary.json {step, seconds since the run started (decoding included)}."""
    snap = run_dir / SNAPSHOTS / f"step{step:07d}"
    snap.parent.mkdir(parents=True, exist_ok=True)
    for stale in snap.parent.glob(".step*.tmp-*"):  # left by a run killed while saving one
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=snap.parent, prefix=f".{snap.name}.tmp-"))
    try:  # the folder appears whole or not at all
        save_encoder(tmp, encoder)
        atomic_write_json(tmp / "summary.json", {"step": step, "seconds": elapsed})
        shutil.rmtree(snap, ignore_errors=True)  # a rerun's own step, saved again
        os.rename(tmp, snap)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return snap


def plot_losses(run_dir: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [json.loads(line) for line in (run_dir / METRICS).read_text().splitlines() if line.strip()]
    recs = [r for r in recs if "step" in r and "loss" in r]
    if not recs:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    ax.plot([r["step"] for r in recs], [r["loss"] for r in recs], lw=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(run_dir.name)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write_with(run_dir / "loss.png", lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def step_of(line: str) -> float:
    """The step a metrics line belongs to; an epoch-start record (written before the epoch's
    first step) counts just after its step, so a resume from that step writes it again."""
    try:
        rec = json.loads(line)
        return rec.get("step", 0) + (0.5 if "epoch_start" in rec else 0)
    except ValueError:  # a line torn by the kill
        return math.inf


def trim_metrics(run_dir: Path, step: int) -> None:
    """After a kill, drop metric lines logged past the checkpoint we resume from (and a torn last line)."""
    path = run_dir / METRICS
    if path.is_file():
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        keep = [ln for ln in lines if step_of(ln) <= step]
        atomic_write_bytes(path, "".join(ln + "\n" for ln in keep).encode())
