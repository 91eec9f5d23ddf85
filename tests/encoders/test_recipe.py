"""Automatic pretraining defaults: what `auto` picks on a CPU and on CUDA (faked), what the
collection description says, and that explicit values always win."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from encoders.recipe import AUTO, Collection, Hardware, choose_recipe, describe_collection
from pipelines import pretrain
from pipelines.pretrain import PretrainConfig
from pipelines.pretrain_config import resolve

CPU = Hardware("cpu", cpus=2)
GPU = Hardware("cuda", cpus=16, gpu_memory_gb=80)
PHOTOS = Collection(images=10_000, median_side=1080, colour=True)
DIGITS = Collection(images=60_000, median_side=28, colour=False)


def values(choices):
    return {k: c.value for k, c in choices.items()}


def test_cpu_picks_a_small_fast_model_and_a_minutes_budget():
    v = values(choose_recipe(CPU, PHOTOS, budget_given=False))
    assert v["backbone"] == "smallcnn" and v["image_size"] == 64 and v["minutes"] == 10.0
    assert v["optimizer"] == "adamw" and v["batch_size"] == 256
    assert v["grey_average"] is True and v["flip_average"] is True and v["whiten"] is True
    v = values(choose_recipe(CPU, DIGITS, budget_given=False))
    assert v["image_size"] == 32 and v["grey_average"] is False and v["flip_average"] is False


def test_cuda_scales_up():
    v = values(choose_recipe(GPU, PHOTOS, budget_given=False))
    assert v["backbone"] == "resnet18" and v["image_size"] >= 96 and v["epochs"] == 100.0
    assert "minutes" not in v
    big = values(choose_recipe(GPU, Collection(1_000_000, 500, True), budget_given=False))
    assert big["backbone"] == "resnet50" and big["batch_size"] == 1024 and big["optimizer"] == "lars"


def test_batch_never_exceeds_the_collection():
    for n in (2, 3, 10, 54, 88, 1000):
        for hw in (CPU, GPU):
            b = choose_recipe(hw, Collection(n, 500, True), budget_given=True)["batch_size"].value
            assert 2 <= b <= max(2, n) and b & (b - 1) == 0  # a power of two
    with pytest.raises(ValueError, match="at least 2 images"):
        choose_recipe(CPU, Collection(1, 500, True), budget_given=True)


def test_every_choice_has_a_reason():
    for hw in (CPU, GPU):
        for coll in (PHOTOS, DIGITS):
            assert all(c.reason for c in choose_recipe(hw, coll, budget_given=False).values())


def test_describe_collection(tmp_path):
    grey, colour = tmp_path / "grey", tmp_path / "colour"
    grey.mkdir(), colour.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), "L").save(grey / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(colour / f"{i}.jpg")
    g = describe_collection(sorted(grey.iterdir()))
    assert g == Collection(images=12, median_side=28, colour=False) and g.small_images
    c = describe_collection(sorted(colour.iterdir()))
    assert c.median_side == 300 and c.colour and not c.small_images


def test_resolve_fills_only_auto_fields_and_says_why():
    given = PretrainConfig(data="x", out="y", backbone="resnet18", batch_size=64, device="cpu")
    cfg = resolve(given, PHOTOS, CPU)
    assert given.image_size == AUTO and not given.auto_reasons  # a new config; the given one is frozen
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.batch_size = 32
    assert cfg.backbone == "resnet18" and cfg.batch_size == 64  # explicit values win
    assert "backbone" not in cfg.auto_reasons and "batch_size" not in cfg.auto_reasons
    assert cfg.image_size == 64 and cfg.auto_reasons["image_size"].startswith("64:")
    assert cfg.minutes == 10.0 and cfg.epochs is None
    assert not any(getattr(cfg, f) == AUTO for f in pretrain.AUTO_FIELDS)


def test_explicit_optimizer_gets_its_own_learning_rate():
    cfg = resolve(PretrainConfig(data="x", out="y", optimizer="sgd", device="cpu", epochs=1), PHOTOS, CPU)
    assert cfg.lr == pretrain.LR_DEFAULTS["sgd"][0] and "minutes" not in cfg.auto_reasons


def test_cuda_resolution_faked():
    cfg = resolve(PretrainConfig(data="x", out="y", device="cpu"), PHOTOS, GPU)
    assert cfg.backbone == "resnet18" and cfg.epochs == 100.0 and cfg.minutes is None and cfg.small_stem is False


def test_choices_land_in_config_json(shape_folder, tmp_path):
    run = tmp_path / "run"
    assert pretrain.main(["--data", str(shape_folder), "--out", str(run), "--image-size", "16", "--max-steps", "2",
                          "--epochs", "1", "--workers", "0", "--no-progress"]) == 0
    cfg = json.loads((run / "config.json").read_text())
    reasons = cfg["training"]["auto_reasons"]
    assert cfg["backbone"] == "smallcnn" and reasons["backbone"].startswith("smallcnn:")
    assert cfg["image_size"] == 16 and "image_size" not in reasons  # the explicit flag won
    assert cfg["normalize"] == "luma" and cfg["flip_average"] is False and cfg["whiten"] is True
    assert cfg["training"]["batch_size"] == int(reasons["batch_size"].split(":")[0])
