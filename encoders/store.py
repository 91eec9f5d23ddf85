"""A trained encoder (`encoders.embed.Encoder`) on disk, saved and loaded here only:
`encoder.safetensors` (the backbone's tensors, and the whitening's as `whiten.*`) + `config.json`.

`config.json` holds everything needed to rebuild the backbone and its preprocessing;
loading never unpickles anything (safetensors + JSON). The identity an index records
(`encoder_record`) and checks (`check_same_encoder`) is the weights' hash plus PREPROCESSING.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from encoders.backbones import build_backbone
from encoders.embed import PREPROCESSING, Encoder, EncoderConfig
from encoders.files import atomic_write_json, atomic_write_with, file_sha256

ENCODER_FILE = "encoder.safetensors"
CONFIG_FILE = "config.json"


def save_encoder(run_dir: str | os.PathLike, encoder: Encoder) -> None:
    """RUN_DIR/encoder.safetensors (the backbone's tensors, and the whitening's as `whiten.*`)
    + RUN_DIR/config.json (the encoder's config)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tensors = {**encoder.backbone.state_dict(), **{f"whiten.{k}": v for k, v in encoder.whiten.state_dict().items()}}
    state = {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).contiguous()
             for k, v in tensors.items()}
    atomic_write_with(run_dir / ENCODER_FILE, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}),
                      size=sum(v.nelement() * v.element_size() for v in state.values()))
    atomic_write_json(run_dir / CONFIG_FILE, asdict(encoder.cfg))


class EncoderLoadError(ValueError):
    """A run folder that does not hold a usable encoder; the message says what to do."""


def load_encoder(run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> Encoder:
    """Rebuild the frozen encoder (eval mode) from a run folder."""
    run_dir = Path(run_dir)
    cfg_path, weights = run_dir / CONFIG_FILE, run_dir / ENCODER_FILE
    if not cfg_path.is_file() or not weights.is_file():
        raise EncoderLoadError(
            f"{run_dir} has no {ENCODER_FILE} + {CONFIG_FILE}: not the run folder of a trained encoder "
            f"(pipelines.pretrain writes one)")
    try:
        cfg = EncoderConfig.from_dict(json.loads(cfg_path.read_text()))
        backbone = build_backbone(cfg.backbone, cfg.small_stem)
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError, ValueError) as e:
        raise EncoderLoadError(f"{cfg_path} is not a valid encoder config ({e}); retrain or restore it") from None
    if backbone.feat_dim != cfg.feat_dim:
        raise EncoderLoadError(f"{cfg_path} says feat_dim {cfg.feat_dim}, a {cfg.backbone} gives {backbone.feat_dim}; "
                               f"retrain or restore it")
    try:
        state = load_file(weights)
    except Exception as e:  # SafetensorError: a pickle or another foreign file, truncated, bad header
        raise EncoderLoadError(f"{weights} is not a complete safetensors file ({str(e)[:200]}); "
                               f"retrain or restore it") from None
    encoder = Encoder(backbone, cfg)  # with cfg.whiten, an empty whitening the weights fill
    whiten = {k[len("whiten."):]: state.pop(k) for k in list(state) if k.startswith("whiten.")}
    try:
        backbone.load_state_dict(state, strict=True)
        encoder.whiten.load_state_dict(whiten, strict=True)
    except RuntimeError as e:  # missing/unexpected keys, shape mismatch
        raise EncoderLoadError(f"{weights} does not match {cfg_path} ({' '.join(str(e).split())[:200]})") from None
    encoder.eval().requires_grad_(False)
    return encoder.to(device)


class EncoderMismatch(EncoderLoadError):
    """An encoder other than the one an index was built with (weights, dimension or preprocessing)."""


def check_same_encoder(record: dict, dim: int, run_dir: str | os.PathLike, sha256: str, cfg: EncoderConfig) -> None:
    """The one encoder-identity check: the encoder at `run_dir` (weights hash `sha256`, config `cfg`)
    is the one an index recorded (`record` = manifest.encoder) and gives its `dim`.
    Raises EncoderMismatch saying which of weights, dimension or preprocessing differs."""
    if sha256 != record.get("sha256"):
        raise EncoderMismatch(f"{run_dir} is not the encoder this index was built with (sha256 {sha256[:12]} vs "
                              f"{str(record.get('sha256'))[:12]} of {record.get('path')}); use that encoder or "
                              f"rebuild the index")
    if cfg.dim != dim:
        raise EncoderMismatch(f"encoder {run_dir} gives dim {cfg.dim}, the index has {dim}; rebuild the index")
    changed = changed_preprocessing(record, cfg)  # same weights, other preprocessing: other vectors
    if changed:
        raise EncoderMismatch(f"{Path(run_dir) / CONFIG_FILE} differs from the config this index was built with "
                              f"({', '.join(changed)}); restore it or rebuild the index")


def encoder_record(run_dir: str | os.PathLike, cfg: EncoderConfig) -> dict:
    """What an index records about its encoder (manifest.encoder): path, weights hash, config."""
    return {"path": str(Path(run_dir).resolve()), "sha256": file_sha256(Path(run_dir) / ENCODER_FILE),
            "config": asdict(cfg)}


def load_recorded_encoder(record: dict, dim: int, device: str | torch.device = "cpu",
                          run_dir: str | os.PathLike | None = None) -> Encoder:
    """The encoder an index was built with (`record` = manifest.encoder: path + sha256 [+ config]).

    Refuses a different encoder (`check_same_encoder`), so query vectors always live in the
    index's space. `run_dir` overrides the recorded path (a moved run). Raises EncoderLoadError.
    """
    run_dir = Path(run_dir or record["path"])
    weights = run_dir / ENCODER_FILE
    if not weights.is_file():
        raise EncoderLoadError(f"the index's encoder {run_dir} is not there (no {ENCODER_FILE}); "
                               f"give the run folder it was built with")
    sha = file_sha256(weights)
    if sha != record["sha256"]:  # checked before loading: other weights may not even load
        check_same_encoder(record, dim, run_dir, sha, EncoderConfig())
    encoder = load_encoder(run_dir, device)
    check_same_encoder(record, dim, run_dir, sha, encoder.cfg)
    return encoder


def changed_preprocessing(record: dict, cfg: EncoderConfig) -> list[str]:
    """The PREPROCESSING fields in which `cfg` differs from the config an index recorded in
    `record` (manifest.encoder); none if it recorded none. Raises EncoderLoadError if the
    recorded config is malformed."""
    if "config" not in record:
        return []
    try:
        recorded = asdict(EncoderConfig.from_dict(record["config"]))
    except ValueError as e:
        raise EncoderLoadError(f"the index records a malformed encoder config ({e}); rebuild the index") from None
    return [k for k in PREPROCESSING if asdict(cfg)[k] != recorded[k]]
