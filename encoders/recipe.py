"""Automatic pretraining defaults: every `auto` setting resolved once, with its reason.

    coll = describe_collection(files)                      # size, typical image side, colour
    choices = choose_recipe(Hardware.detect(device), coll, budget_given=False)
    # {"backbone": Choice("smallcnn", "CPU: ..."), "image_size": Choice(64, "photos ..."), ...}

The rules come from measurements (bench/recipe_sweep.py, results in
bench/results/recipe_sweep.jsonl and docs/results.md): on a CPU a small CNN at 32 px
(small images) or 64 px (photos), AdamW, temperature 0.2, crops of at least 20% of the
image, and a default 10-minute budget; on CUDA a ResNet scaled to the collection and the
GPU, bf16, larger batches (LARS from 1024), and an epoch count instead of minutes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from encoders.imagefolder import open_rgb

AUTO = "auto"
CPU_DEFAULT_MINUTES = 10.0
SMALL_IMAGE_SIDE = 48  # shorter sides up to this are "small images" (MNIST, Fashion-MNIST, CIFAR, icons)


@dataclass(frozen=True)
class Choice:
    value: object
    reason: str


@dataclass(frozen=True)
class Hardware:
    device: str  # "cpu" or "cuda"
    cpus: int
    gpu_memory_gb: float = 0.0

    @classmethod
    def detect(cls, device) -> "Hardware":
        import torch

        kind = getattr(device, "type", str(device).split(":")[0])
        mem = 0.0
        if kind == "cuda":
            mem = torch.cuda.get_device_properties(device).total_memory / 2**30
        return cls(kind, os.cpu_count() or 1, mem)


@dataclass(frozen=True)
class Collection:
    images: int
    median_side: int  # median shorter side of a sample of the images, in pixels
    colour: bool  # some sampled image is not greyscale

    @property
    def small_images(self) -> bool:
        return self.median_side <= SMALL_IMAGE_SIDE


def describe_collection(files: list[Path], sample: int = 64, seed: int = 0) -> Collection:
    """Size, typical shorter side and colour of a folder, from a seeded sample of its files:
    sides from the headers, colour from a small draft decode. Unreadable files are left out
    here (the decoder counts them later)."""
    if not files:
        raise ValueError("no image files to describe")
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(files), size=min(sample, len(files)), replace=False)
    sides, colour = [], False
    for i in picks:
        try:
            with Image.open(files[i]) as im:  # header only
                side = min(im.size)
            img = open_rgb(files[i], draft_size=32) if not colour else None
        except Exception:  # UnreadableImage, OSError, bomb errors, plugin errors: the decoder counts these
            continue
        sides.append(side)
        if img is not None:
            a = np.asarray(img.resize((32, 32)), dtype=np.int16)  # (32, 32, 3)
            colour = bool(np.abs(a[..., 0] - a[..., 1]).max() > 8 or np.abs(a[..., 1] - a[..., 2]).max() > 8)
    if not sides:
        raise ValueError(f"none of {len(picks)} sampled files is a readable image")
    return Collection(images=len(files), median_side=int(np.median(sides)), colour=colour)


def _pow2_floor(x: float) -> int:
    return 1 << max(1, int(np.floor(np.log2(max(x, 2)))))


def choose_recipe(hw: Hardware, coll: Collection, budget_given: bool) -> dict[str, Choice]:
    """The concrete value and the reason for every setting that can be `auto` (the learning
    rate follows the optimizer, whoever chose it: see pipelines.pretrain)."""
    if coll.images < 2:
        raise ValueError(f"contrastive pretraining needs at least 2 images, found {coll.images}")
    kind = "small images" if coll.small_images else "photos"
    c: dict[str, Choice] = {}
    if hw.device == "cuda":
        big = coll.images >= 200_000 and hw.gpu_memory_gb >= 40
        c["backbone"] = Choice("resnet50" if big else "resnet18",
                               f"CUDA: {'ResNet-50 for 200k+ images on a large GPU' if big else 'ResNet-18'}")
        c["image_size"] = Choice(32 if coll.small_images else 96, f"{kind}, median shorter side {coll.median_side} px")
        batch = min(1024 if coll.images >= 50_000 else 512, _pow2_floor(coll.images * 0.6))
        c["batch_size"] = Choice(batch, f"CUDA: large batch, at most 60% of the {coll.images} images")
        opt = "lars" if batch >= 1024 else "sgd"
        c["optimizer"] = Choice(opt, "LARS for batches of 1024+ (SimCLR)" if opt == "lars" else "SGD + momentum")
        c["min_scale"] = Choice(0.08, "full SimCLR crop range on long GPU runs")
        if not budget_given:
            c["epochs"] = Choice(100.0, "CUDA: 100 epochs (SimCLR's short schedule)")
    else:
        c["backbone"] = Choice("smallcnn", f"CPU ({hw.cpus} cores): the small CNN trains far faster than "
                                             "ResNet-18 (bench/results/train_step_speed.json)")
        size = 32 if coll.small_images else 64
        c["image_size"] = Choice(size, f"{kind}, median shorter side {coll.median_side} px: {size} px on a CPU")
        batch = min(256, _pow2_floor(coll.images * 0.6))
        c["batch_size"] = Choice(batch, f"256 on a CPU, at most 60% of the {coll.images} images")
        c["optimizer"] = Choice("adamw", "AdamW converges fastest in CPU minutes (measured)")
        c["min_scale"] = Choice(0.2, "crops of >= 20% of the image: short runs learn faster than from 8%")
        if not budget_given:
            c["minutes"] = Choice(CPU_DEFAULT_MINUTES, f"CPU: default budget of {CPU_DEFAULT_MINUTES:g} minutes")
    c["normalize"] = Choice("luma", "each image standardised by its own luma: brightness/contrast edits cancel")
    c["grey_p"] = Choice(0.5 if coll.colour else 0.2,
                         "colour collection: greyscale views half the time" if coll.colour else "greyscale collection")
    c["flip_average"] = Choice(not coll.small_images, "photos: mirrored copies are found more often "
                               "(bench/results/recipe_sweep.jsonl)" if not coll.small_images else "small images "
                               "(digits, glyphs) change meaning when mirrored: averaging lowered NMI "
                               "(bench/results/recipe_sweep.jsonl)")
    c["whiten"] = Choice(True, "PCA-whitening fitted on the collection raises kNN and NMI "
                               "(bench/results/recipe_sweep.jsonl)")
    c["grey_average"] = Choice(coll.colour, "colour collection: also averaged over greyscale versions"
                               if coll.colour else "greyscale collection: nothing to average")
    return c
