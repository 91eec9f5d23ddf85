"""Compute-bound training rate vs input-pipeline cost, on this machine.

Times (a) a SimCLR step (forward + backward + SGD) on pre-made tensors, for each
backbone / precision / memory format asked, and (b) producing the two views of a batch:
per-image torchvision v2 PIL transforms vs our batched per-sample tensor augmentation.

    python bench/train_step_speed.py [--backbones resnet18 smallcnn] [--image-size 32]
Writes bench/results/train_step_speed.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from encoders.augment import AugmentConfig, BatchSimCLRAugment, SimCLRTransform  # noqa: E402
from encoders.backbones import build_backbone  # noqa: E402
from encoders.methods import SimCLR  # noqa: E402
from encoders.runtime import autocast, cpu_has_bf16  # noqa: E402


def time_steps(backbone: str, size: int, batch: int, precision: str, channels_last: bool, steps: int) -> float:
    torch.manual_seed(0)
    model = SimCLR(build_backbone(backbone, small_stem=size <= 64))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    a = torch.randn(batch, 3, size, size).contiguous(memory_format=fmt)
    b = torch.randn(batch, 3, size, size).contiguous(memory_format=fmt)
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        with autocast(torch.device("cpu"), precision):
            loss = model.training_loss([a, b], torch.arange(batch))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def time_augment(size: int, batch: int, reps: int) -> dict:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    pil = [Image.fromarray(x) for x in arr]
    cfg = AugmentConfig(image_size=size)
    tf = SimCLRTransform(cfg)
    t0 = time.perf_counter()
    for _ in range(reps):
        [tf(im) for im in pil]
    pil_ms = (time.perf_counter() - t0) / reps * 1000
    aug = BatchSimCLRAugment(cfg)
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
    g = torch.Generator().manual_seed(0)
    aug(x, g)
    t0 = time.perf_counter()
    for _ in range(reps):
        aug(x, g), aug(x, g)
    batched_ms = (time.perf_counter() - t0) / reps * 1000
    return {"pil_v2_two_views_ms": pil_ms, "batched_two_views_ms": batched_ms, "speedup": pil_ms / batched_ms}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbones", nargs="+", default=["resnet18", "smallcnn"])
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"] if cpu_has_bf16() else ["fp32"])
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_step_speed.json"))
    args = p.parse_args(argv)
    res = {"machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
           "cpu_bf16": cpu_has_bf16(), "image_size": args.image_size, "batch_size": args.batch_size,
           "torch": torch.__version__, "steps": []}
    for bb in args.backbones:
        for prec in args.precisions:
            for cl in (False, True):
                ips = time_steps(bb, args.image_size, args.batch_size, prec, cl, args.steps)
                row = {"backbone": bb, "precision": prec, "channels_last": cl, "img_per_s": ips}
                print(json.dumps(row), flush=True)
                res["steps"].append(row)
    res["augment"] = time_augment(args.image_size, args.batch_size, reps=3)
    print(json.dumps(res["augment"]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
