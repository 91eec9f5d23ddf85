"""Pretraining's configuration: the typed config with its `auto` settings, their resolution
from the device, the collection and the budget (encoders.recipe), and the command line.

    cfg = parse_args(argv); cfg.validate()           # explicit values checked, device picked
    resolve_auto(cfg, device)                        # every `auto` -> value + reason (logged, saved)
"""
from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field

import torch

from encoders.augment import NORMALIZE_MODES
from encoders.backbones import BACKBONES
from encoders.imagefolder import scan_images
from encoders.methods import METHODS
from encoders.recipe import AUTO, Collection, Hardware, choose_recipe, describe_collection
from encoders.runtime import pick_device

log = logging.getLogger("pipelines.pretrain")

AUTO_FIELDS = ("backbone", "image_size", "batch_size", "optimizer", "lr", "temperature", "min_scale", "grey_p",
               "normalize", "flip_average", "grey_average", "whiten")
LR_DEFAULTS = {"sgd": (0.06, 5e-4), "adamw": (1e-3, 1e-6), "lars": (0.3, 1e-6)}  # (base lr for batch 256, wd)


@dataclass
class PretrainConfig:
    """Every `auto` field is resolved once, from the device, the collection and the budget
    (encoders.recipe), and its value and reason are logged and saved in config.json
    (`auto_reasons`). Explicit values always win."""

    data: str = ""
    out: str = ""
    method: str = "simclr"
    backbone: str = AUTO
    small_stem: bool | None = None  # None: on for image_size <= 64
    image_size: int | str = AUTO
    batch_size: int | str = AUTO
    epochs: float | None = None  # neither epochs nor minutes: the recipe's budget (10 min on a CPU)
    minutes: float | None = None
    max_steps: int | None = None  # stop (resumably) after this global step
    optimizer: str = AUTO
    lr: float | str = AUTO  # base lr for batch 256 (scaled linearly); auto: per optimizer
    weight_decay: float | None = None
    warmup_epochs: float = 1.0
    temperature: float | str = AUTO  # auto: the method's default
    proj_dim: int = 128
    queue_size: int = 4096
    momentum: float = 0.99
    min_scale: float | str = AUTO
    blur_p: float = 0.5
    grey_p: float | str = AUTO
    jitter_strength: float = 1.0  # scales colour jitter (0.4, 0.4, 0.4, 0.1)
    cache_size: int | None = None  # decode the folder at this size (>= image_size); crops come from it
    normalize: str = AUTO  # input standardisation (encoders.augment.standardize): dataset or luma
    flip_average: bool | str = AUTO  # the saved encoder embeds as the mean over image + mirror
    grey_average: bool | str = AUTO  # ... and over their greyscale versions
    whiten: bool | str = AUTO  # fit PCA-whitening on the collection's embeddings into the saved encoder
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool = True
    workers: int | None = None
    checkpoint_minutes: float = 5.0
    sync_bn: bool = False  # under torchrun: BN statistics over the global batch (CUDA only)
    snapshot_minutes: float | None = None  # also save the backbone every M minutes of the run
    log_every: int = 10
    progress: bool = True
    auto_reasons: dict = field(default_factory=dict)  # field -> "value: why", for every auto choice
    # ---- added by the methods work (issue 12/13); keep at the end ----
    resume: bool = False  # continue from RUN_DIR/checkpoint.pt if present
    local_crops: int | None = None  # multi-crop: small views per image (None: the method's, 6 SwAV/DINO, else 0)
    local_size: int | None = None  # their side in px (None: 96/224 of image_size, as 96 px crops of 224)
    freeze_head_steps: int = 50  # SwAV prototypes / DINO last layer frozen this many first steps
    prototypes: int = 256  # SwAV: number of prototypes K
    swav_queue: int = 0  # SwAV: earlier batches' features joining Sinkhorn (0: none; for batches < 256)
    sinkhorn_iters: int = 3
    sinkhorn_epsilon: float = 0.05
    dino_out_dim: int = 1024  # DINO head's output size (65536 in the paper; small for CPU)
    teacher_temp: float = 0.07  # DINO: teacher temperature after the warm-up
    teacher_temp_start: float = 0.04  # DINO: teacher temperature at step 0
    teacher_temp_warmup: float = 0.3  # DINO: warm-up length, fraction of the run
    center_momentum: float = 0.9  # DINO: EMA of the teacher's batch mean
    negatives: int = 4096  # NPID: bank entries sampled as negatives per image
    bank_momentum: float = 0.5  # NPID: bank <- m * bank + (1 - m) * feature
    clusters: int | None = None  # DeepCluster K (None: M / 20 clamped to 10..1000)
    pca_dim: int = 64  # DeepCluster: PCA-whitening size before K-means (256 in the paper)

    def validate(self) -> None:
        """Check the explicit values and pick the device (before the folder is read)."""
        if self.method not in METHODS:
            raise ValueError(f"method {self.method!r}: choose one of {', '.join(METHODS)}")
        if self.backbone != AUTO and self.backbone not in BACKBONES:
            raise ValueError(f"backbone {self.backbone!r}: choose one of {', '.join(BACKBONES)}")
        if self.image_size != AUTO and self.image_size < 8:
            raise ValueError(f"image size must be >= 8, got {self.image_size}")
        if self.batch_size != AUTO and self.batch_size < 2:
            raise ValueError(f"batch size must be >= 2 (contrastive losses need negatives), got {self.batch_size}")
        if self.optimizer not in (AUTO, *LR_DEFAULTS):
            raise ValueError(f"optimizer {self.optimizer!r}: choose auto, {', '.join(LR_DEFAULTS)}")
        if self.normalize not in (AUTO, *NORMALIZE_MODES):
            raise ValueError(f"normalize {self.normalize!r}: choose auto, {', '.join(NORMALIZE_MODES)}")
        self.device = str(pick_device(self.device))

    def resolve(self, coll: Collection, hw: Hardware) -> None:
        """Replace every `auto` by the recipe's choice for this hardware and collection."""
        self.validate()
        budget_given = self.epochs is not None or self.minutes is not None
        for name, choice in choose_recipe(hw, coll, budget_given).items():
            if getattr(self, name) == AUTO or (name in ("epochs", "minutes") and not budget_given):
                setattr(self, name, choice.value)
                self.auto_reasons[name] = f"{choice.value}: {choice.reason}"
        if self.temperature == AUTO:
            self.temperature = METHODS[self.method].default_temperature
            self.auto_reasons["temperature"] = f"{self.temperature}: {self.method}'s default"
        wd_lr = LR_DEFAULTS[self.optimizer]
        if self.lr == AUTO:
            self.lr = wd_lr[0]
            self.auto_reasons["lr"] = f"{self.lr}: default base lr of {self.optimizer} for batch 256, scaled linearly"
        self.weight_decay = wd_lr[1] if self.weight_decay is None else self.weight_decay
        if self.small_stem is None:
            self.small_stem = self.image_size <= 64
        self.validate()


def resolve_auto(cfg: PretrainConfig, device: torch.device) -> None:
    """Resolve every `auto` field from this folder and device; log each choice and why."""
    files = scan_images(cfg.data)
    if not files:
        raise ValueError(f"--data {cfg.data}: no image files found")
    cfg.resolve(describe_collection(files), Hardware.detect(device))
    for name, why in cfg.auto_reasons.items():
        log.info("auto %s = %s", name, why)


def auto_or(cast):
    """argparse type: the word `auto`, or a value of `cast`."""
    def parse(text: str):
        if text == AUTO:
            return AUTO
        if cast is bool:
            if text.lower() in ("true", "on", "yes", "1", "false", "off", "no", "0"):
                return text.lower() in ("true", "on", "yes", "1")
            raise argparse.ArgumentTypeError(f"expected auto, on or off, got {text!r}")
        return cast(text)
    parse.__name__ = cast.__name__
    return parse


def add_recipe_args(p: argparse.ArgumentParser, d: PretrainConfig) -> None:
    """Augmentation and embedding options (all `auto` unless given)."""
    p.add_argument("--grey-p", type=auto_or(float), default=d.grey_p, help="probability of a greyscale view")
    p.add_argument("--jitter-strength", type=float, default=d.jitter_strength, help="scales colour jitter")
    p.add_argument("--cache-size", type=int, default=None, help="decode at this size (>= image size) to crop from")
    p.add_argument("--normalize", default=d.normalize, choices=(AUTO, *NORMALIZE_MODES),
                   help="input standardisation: dataset mean/std, or each image's own luma")
    p.add_argument("--flip-average", type=auto_or(bool), default=d.flip_average,
                   help="embed as the mean over the image and its mirror (on/off/auto)")
    p.add_argument("--grey-average", type=auto_or(bool), default=d.grey_average,
                   help="embed as the mean over colour and greyscale versions (on/off/auto)")
    p.add_argument("--whiten", type=auto_or(bool), default=d.whiten,
                   help="fit PCA-whitening on the collection's embeddings into the saved encoder (on/off/auto)")


def add_method_args(p: argparse.ArgumentParser, d: PretrainConfig) -> None:
    """Options of the individual methods (multi-crop, SwAV, DINO, NPID, DeepCluster)."""
    m = p.add_argument_group("method options (each applies to the methods named)")
    m.add_argument("--local-crops", type=int, default=d.local_crops, help="multi-crop: small views per image "
                   "(default: 6 for swav and dino, 0 otherwise; simclr/moco take them too)")
    m.add_argument("--local-size", type=int, default=d.local_size,
                   help="local crop side in px (default 96/224 of image size)")
    m.add_argument("--freeze-head-steps", type=int, default=d.freeze_head_steps,
                   help="swav prototypes, dino last layer: frozen steps")
    m.add_argument("--prototypes", type=int, default=d.prototypes, help="swav: number of prototypes")
    m.add_argument("--swav-queue", type=int, default=d.swav_queue,
                   help="swav: queued features used by Sinkhorn (0: none)")
    m.add_argument("--sinkhorn-iters", type=int, default=d.sinkhorn_iters, help="swav")
    m.add_argument("--sinkhorn-epsilon", type=float, default=d.sinkhorn_epsilon, help="swav")
    m.add_argument("--dino-out-dim", type=int, default=d.dino_out_dim, help="dino: head output size")
    m.add_argument("--teacher-temp", type=float, default=d.teacher_temp, help="dino: teacher temperature after warm-up")
    m.add_argument("--teacher-temp-start", type=float, default=d.teacher_temp_start,
                   help="dino: teacher temperature at step 0")
    m.add_argument("--teacher-temp-warmup", type=float, default=d.teacher_temp_warmup,
                   help="dino: warm-up, fraction of the run")
    m.add_argument("--center-momentum", type=float, default=d.center_momentum, help="dino: teacher centre EMA momentum")
    m.add_argument("--negatives", type=int, default=d.negatives, help="npid: sampled bank negatives per image")
    m.add_argument("--bank-momentum", type=float, default=d.bank_momentum, help="npid: memory bank update momentum")
    m.add_argument("--clusters", type=int, default=d.clusters, help="deepcluster: K (default M/20 within 10..1000)")
    m.add_argument("--pca-dim", type=int, default=d.pca_dim, help="deepcluster: PCA-whitening size before K-means")


def parse_args(argv=None) -> PretrainConfig:
    p = argparse.ArgumentParser(prog="python -m pipelines.pretrain",
                                description="Pretrain an image encoder on an unlabeled folder with one of the "
                                            "self-supervised methods (--method).",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                epilog="Settings left at `auto` are chosen from the device, the collection and the "
                                       "budget; the log and RUN_DIR/config.json say what was chosen and why.")
    d = PretrainConfig()
    p.add_argument("--data", required=True, help="folder of images (searched recursively; only read)")
    p.add_argument("--out", required=True, help="run folder to write")
    p.add_argument("--method", default=d.method, choices=sorted(METHODS))
    p.add_argument("--backbone", default=d.backbone, choices=(AUTO, *BACKBONES))
    p.add_argument("--small-stem", default=None, action=argparse.BooleanOptionalAction,
                   help="3x3 stem without max-pool (default: on for --image-size <= 64)")
    p.add_argument("--image-size", type=auto_or(int), default=d.image_size)
    p.add_argument("--batch-size", type=auto_or(int), default=d.batch_size,
                   help="global batch: under torchrun each of the W processes takes batch/W images")
    p.add_argument("--epochs", type=float, default=None,
                   help="training length; with neither --epochs nor --minutes: 10 minutes on a CPU, 100 epochs on CUDA")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget; stops cleanly and saves")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this global step (resumable)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.pt if present")
    p.add_argument("--optimizer", default=d.optimizer, choices=(AUTO, *LR_DEFAULTS))
    p.add_argument("--lr", type=auto_or(float), default=d.lr, help="base lr for batch 256, scaled linearly")
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs)
    p.add_argument("--temperature", type=auto_or(float), default=d.temperature,
                   help="auto: the method's (simclr 0.2, moco 0.2, dino student 0.1, swav 0.1, npid 0.07)")
    p.add_argument("--proj-dim", type=int, default=d.proj_dim)
    p.add_argument("--queue-size", type=int, default=d.queue_size, help="MoCo: negative keys in the queue")
    p.add_argument("--momentum", type=float, default=d.momentum,
                   help="EMA momentum: MoCo's key encoder; BYOL/DINO start here and rise to 1 (cosine)")
    p.add_argument("--min-scale", type=auto_or(float), default=d.min_scale, help="random resized crop's smallest area")
    p.add_argument("--blur-p", type=float, default=d.blur_p)
    add_recipe_args(p, d)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda or cuda:N")
    p.add_argument("--precision", default=d.precision, choices=["auto", "bf16", "fp32"])
    p.add_argument("--channels-last", default=True, action=argparse.BooleanOptionalAction)
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: CPU count)")
    p.add_argument("--checkpoint-minutes", type=float, default=d.checkpoint_minutes)
    p.add_argument("--snapshot-minutes", type=float, default=None,
                   help="also save the backbone to RUN_DIR/snapshots/stepNNNNNNN every M minutes (kNN-vs-time curves)")
    p.add_argument("--sync-bn", action="store_true",
                   help="under torchrun on GPUs: BatchNorm statistics over the global batch (SimCLR's global BN)")
    p.add_argument("--log-every", type=int, default=d.log_every)
    add_method_args(p, d)
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return PretrainConfig(**vars(p.parse_args(argv)))
