"""Pretraining's configuration: what every method shares, with the method's own options nested
in `settings`; the command line generated from both; `auto` resolved once into a new frozen config.

    cfg = parse_args(argv)                           # may hold `auto`; the method's settings by name
    cfg = resolve(cfg, collection, hardware)         # every `auto` -> value + reason, a new object
    cfg = with_data(cfg, n_readable_images)          # the data facts; then logged, saved, never changed
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields, replace

from encoders.augment import NORMALIZE_MODES
from encoders.backbones import BACKBONES
from encoders.embed import READOUTS
from encoders.methods import METHODS, MethodSettings
from encoders.recipe import AUTO, Collection, Hardware, choose_recipe
from pipelines.flags import DefaultsHelpFormatter, add_fields, add_shared_fields

AUTO_FIELDS = ("backbone", "image_size", "batch_size", "optimizer", "lr", "min_scale", "grey_p", "normalize",
               "flip_average", "grey_average", "whiten")
LR_DEFAULTS = {"sgd": (0.06, 5e-4), "adamw": (1e-3, 1e-6), "lars": (0.3, 1e-6)}  # (base lr for batch 256, wd)
# What a resumed run takes from this invocation rather than from its checkpoint: budget,
# device, logging and stop point. Everything else (the run's identity) comes from the checkpoint.
PER_INVOCATION = ("minutes", "max_steps", "device", "precision", "progress", "workers", "checkpoint_minutes",
                  "sync_bn", "resume", "init_from")
WARM_START = ("data", "out", "epochs", "seed")  # what --init-from takes from this invocation, not the old run


def opt(default, help: str, **meta):
    """A field that is also a flag: default, help (and choices, required) stated once."""
    return field(default=default, metadata={"help": help, **meta})


@dataclass(frozen=True)
class PretrainConfig:
    """Every `auto` field is resolved once, from the device, the collection and the budget
    (encoders.recipe), into a new config whose `auto_reasons` say why; explicit values win."""

    data: str = opt("", "folder of images (searched recursively; only read)", required=True)
    out: str = opt("", "run folder to write", required=True)
    method: str = opt("simclr", "self-supervised method", choices=sorted(METHODS))
    backbone: str = opt(AUTO, "encoder network", choices=(AUTO, *BACKBONES))
    small_stem: bool | None = opt(None, "3x3 stem without max-pool (default: on for --image-size <= 64)")
    image_size: int | str = opt(AUTO, "training and embedding resolution in px")
    batch_size: int | str = opt(AUTO, "global batch: under torchrun each of the W processes takes batch/W images")
    epochs: float | None = opt(None, "training length; with neither --epochs nor --minutes: 10 minutes on a "
                                     "CPU, 100 epochs on CUDA")
    minutes: float | None = opt(None, "wall-clock budget; stops cleanly and saves")
    max_steps: int | None = opt(None, "stop after this global step (resumable)")
    resume: bool = opt(False, "continue from RUN_DIR/checkpoint.pt if present")
    init_from: str | None = opt(None, "start from another run's weights (its RUN_DIR/checkpoint.pt) with its "
                                      "settings, on --data, with a new schedule: refresh an encoder after the "
                                      "folder grew")
    optimizer: str = opt(AUTO, "optimizer", choices=(AUTO, *LR_DEFAULTS))
    lr: float | str = opt(AUTO, "base lr for batch 256, scaled linearly (auto: per optimizer)")
    weight_decay: float | None = opt(None, "weight decay (default: per optimizer)")
    warmup_epochs: float = opt(1.0, "linear learning-rate warm-up (at most a tenth of the run)")
    min_scale: float | str = opt(AUTO, "random resized crop's smallest area")
    blur_p: float = opt(0.5, "probability of a blurred view")
    grey_p: float | str = opt(AUTO, "probability of a greyscale view")
    jitter_strength: float = opt(1.0, "scales colour jitter (0.4, 0.4, 0.4, 0.1)")
    cache_size: int | None = opt(None, "decode at this size (>= image size) to crop from")
    normalize: str = opt(AUTO, "input standardisation: dataset mean/std, or each image's own luma",
                         choices=(AUTO, *NORMALIZE_MODES))
    flip_average: bool | str = opt(AUTO, "embed as the mean over the image and its mirror (on/off/auto)")
    grey_average: bool | str = opt(AUTO, "embed as the mean over colour and greyscale versions (on/off/auto)")
    whiten: bool | str = opt(AUTO, "fit PCA-whitening on the collection's embeddings into the saved encoder "
                                   "(on/off/auto)")
    readout: str = opt("grid", "how the backbone's last feature map becomes the embedding: grid = the averages "
                               "of its 2x2 quadrants, concatenated; avg = its global average "
                               "(compared in bench/results/readout.json)", choices=tuple(READOUTS))
    whiten_dim: int = opt(0, "the whitening keeps this many principal axes (0: all; fewer make a smaller index, "
                             "bench/results/readout.json)")
    seed: int = opt(0, "data order, augmentations and initialisation")
    device: str = opt("auto", "auto, cpu, cuda or cuda:N")
    precision: str = opt("auto", "autocast precision", choices=("auto", "bf16", "fp32"))
    channels_last: bool = opt(True, "channels-last memory format")
    workers: int | None = opt(None, "decoding processes (default: CPU count)")
    checkpoint_minutes: float = opt(5.0, "write RUN_DIR/checkpoint.pt this often")
    snapshot_minutes: float | None = opt(None, "also save the backbone to RUN_DIR/snapshots/stepNNNNNNN every M "
                                               "minutes (kNN-vs-time curves)")
    sync_bn: bool = opt(False, "under torchrun on GPUs: BatchNorm statistics over the global batch (SimCLR's "
                               "global BN)")
    log_every: int = opt(10, "steps between metrics.jsonl lines")
    progress: bool = opt(True, "progress bar")
    settings: MethodSettings | None = None  # the method's own options (None: its defaults)
    auto_reasons: dict = field(default_factory=dict)  # field -> "value: why", for every auto choice
    images: int | None = None  # readable images, a data fact known once the folder is decoded

    def __post_init__(self):
        want = METHODS[self.method].Settings if self.method in METHODS else None
        if want is not None and self.settings is None:
            object.__setattr__(self, "settings", want())  # construction, not a later change
        elif want is not None and type(self.settings) is not want:
            raise ValueError(f"{self.method} takes {want.__name__}, got {type(self.settings).__name__}")


def check(cfg: PretrainConfig) -> None:
    """Raise ValueError for an explicit value out of range."""
    if cfg.method not in METHODS:
        raise ValueError(f"method {cfg.method!r}: choose one of {', '.join(METHODS)}")
    if cfg.backbone != AUTO and cfg.backbone not in BACKBONES:
        raise ValueError(f"backbone {cfg.backbone!r}: choose one of {', '.join(BACKBONES)}")
    if cfg.image_size != AUTO and cfg.image_size < 8:
        raise ValueError(f"image size must be >= 8, got {cfg.image_size}")
    if cfg.batch_size != AUTO and cfg.batch_size < 2:
        raise ValueError(f"batch size must be >= 2 (contrastive losses need negatives), got {cfg.batch_size}")
    if cfg.optimizer not in (AUTO, *LR_DEFAULTS):
        raise ValueError(f"optimizer {cfg.optimizer!r}: choose auto, {', '.join(LR_DEFAULTS)}")
    if cfg.normalize not in (AUTO, *NORMALIZE_MODES):
        raise ValueError(f"normalize {cfg.normalize!r}: choose auto, {', '.join(NORMALIZE_MODES)}")


def resolve(cfg: PretrainConfig, coll: Collection, hw: Hardware) -> PretrainConfig:
    """A new config with every `auto` replaced by the recipe's choice for this hardware and
    collection, and the reason of each choice in `auto_reasons`."""
    check(cfg)
    budget_given = cfg.epochs is not None or cfg.minutes is not None
    values, reasons = {}, dict(cfg.auto_reasons)
    for name, choice in choose_recipe(hw, coll, budget_given).items():
        if getattr(cfg, name) == AUTO or (name in ("epochs", "minutes") and not budget_given):
            values[name] = choice.value
            reasons[name] = f"{choice.value}: {choice.reason}"
    optimizer = values.get("optimizer", cfg.optimizer)
    lr, weight_decay = LR_DEFAULTS[optimizer]
    if cfg.lr == AUTO:
        values["lr"] = lr
        reasons["lr"] = f"{lr}: default base lr of {optimizer} for batch 256, scaled linearly"
    if cfg.weight_decay is None:
        values["weight_decay"] = weight_decay
    if cfg.small_stem is None:
        values["small_stem"] = values.get("image_size", cfg.image_size) <= 64
    out = replace(cfg, **values, auto_reasons=reasons)
    check(out)
    return out


def with_data(cfg: PretrainConfig, readable: int) -> PretrainConfig:
    """The data facts: `readable` images; an automatic batch larger than they allow is lowered.
    Raises ValueError if an explicit batch is larger."""
    batch, reasons = cfg.batch_size, cfg.auto_reasons
    if readable < batch and "batch_size" in reasons:  # unreadable files left fewer
        batch = max(2, min(batch, readable // 2 * 2))
        reasons = {**reasons, "batch_size": f"{reasons['batch_size']}; lowered to {batch}: only {readable} "
                                            f"images are readable"}
    if readable < batch:
        raise ValueError(f"--batch-size {batch} is larger than the {readable} readable images; lower it "
                         f"(at most {readable})")
    return replace(cfg, batch_size=batch, auto_reasons=reasons, images=readable)


def method_settings(method: str, given: dict) -> MethodSettings:
    """`method`'s settings: its defaults, replaced by the `given` options it has (`auto`: keep
    the default; options of other methods are left out)."""
    cls = METHODS[method].Settings
    own = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in given.items() if k in own and v != AUTO})


def from_saved(saved: dict, invocation: PretrainConfig) -> PretrainConfig:
    """The config a checkpoint saved (`asdict` of one; method options nested in "settings", or
    flat in an older one), with this invocation's PER_INVOCATION fields."""
    names = {f.name for f in fields(PretrainConfig)} - {"settings"}
    values = {k: v for k, v in saved.items() if k in names}
    values.update({k: getattr(invocation, k) for k in PER_INVOCATION})
    nested = saved.get("settings")
    return PretrainConfig(**values, settings=method_settings(values["method"],
                                                             nested if isinstance(nested, dict) else saved))


def parse_args(argv=None) -> PretrainConfig:
    p = argparse.ArgumentParser(prog="python -m pipelines.pretrain",
                                description="Pretrain an image encoder on an unlabeled folder with one of the "
                                            "self-supervised methods (--method).",
                                formatter_class=DefaultsHelpFormatter,
                                epilog="Settings left at `auto` are chosen from the device, the collection and the "
                                       "budget; the log and RUN_DIR/config.json say what was chosen and why.")
    add_fields(p, PretrainConfig)
    group = p.add_argument_group("method options (each applies to the methods named; auto: the method's default)")
    names = add_shared_fields(group, {name: cls.Settings for name, cls in METHODS.items()})
    ns = vars(p.parse_args(argv))
    given = {k: ns.pop(k) for k in names if k in ns}
    return PretrainConfig(**ns, settings=method_settings(ns["method"], given))
