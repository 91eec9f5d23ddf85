"""lightly's SimCLR / MoCo v2, written as lightly's examples write them, on a wall-clock budget.

Run by bench/train_vs_lightly.py with the python of bench/.venv-lightly (lightly and its
own torch; our pins are never touched):

    bench/.venv-lightly/bin/python bench/lightly_worker.py --data DIR --method simclr --out RUN_DIR \
        --backbone smallcnn --image-size 32 --batch-size 256 --minutes 10 [--bf16]

What is lightly's (examples/pytorch/simclr.py, moco.py): `LightlyDataset` over the folder,
`SimCLRTransform` / `MoCoV2Transform` (PIL, torchvision) in DataLoader workers, the
projection heads, `NTXentLoss` (with a memory bank for MoCo), `update_momentum` /
`deactivate_requires_grad`, two forward passes per step, fp32, contiguous tensors.
What is ours, so that only the training machinery differs: the backbone
(`encoders.backbones`, the same modules), the augmentation parameters, SGD with our
weight-decay groups and lr, the warm-up + cosine schedule fitted to the budget, MoCo's
constant momentum 0.99 and queue 4096, the temperatures, and the on-disk encoder format
(`encoders.store.save_encoder`), so `pipelines.evaluate` reads the result unchanged.
Legend: N batch, D embedding dim.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import lightly
import torch
from lightly.data import LightlyDataset
from lightly.loss import NTXentLoss
from lightly.models.modules import MoCoProjectionHead, SimCLRProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.transforms import MoCoV2Transform, SimCLRTransform
from torch import nn
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from encoders.backbones import build_backbone  # noqa: E402  (torch + torchvision only)
from encoders.embed import Encoder, EncoderConfig  # noqa: E402
from encoders.files import atomic_write_json  # noqa: E402
from encoders.optim import build_optimizer, warmup_cosine  # noqa: E402
from encoders.store import save_encoder  # noqa: E402

CALIBRATION_STEPS = (5, 15)  # steps [5, 15) are timed to fit the cosine schedule to the budget


class SimCLR(nn.Module):
    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.projection_head = SimCLRProjectionHead(backbone.feat_dim, backbone.feat_dim, 128)

    def forward(self, x):
        return self.projection_head(self.backbone(x).flatten(start_dim=1))  # (N, 128)


class MoCo(nn.Module):
    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.projection_head = MoCoProjectionHead(backbone.feat_dim, backbone.feat_dim, 128)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)

    def forward(self, x):
        return self.projection_head(self.backbone(x).flatten(start_dim=1))  # (N, 128)

    def forward_momentum(self, x):
        return self.projection_head_momentum(self.backbone_momentum(x).flatten(start_dim=1)).detach()  # (N, 128)


def build_transform(method: str, size: int):
    """Our recipe in lightly's transforms: jitter (0.4, 0.4, 0.4, 0.1) p=0.8, crop scale
    0.08-1, flip 0.5, grey 0.2, blur p=0.5 sigma 0.1-2 (lightly blurs with PIL's radius,
    not our 10%-of-the-image kernel)."""
    kw = dict(input_size=size, cj_prob=0.8, cj_strength=1.0, cj_bright=0.4, cj_contrast=0.4, cj_sat=0.4,
              cj_hue=0.1, min_scale=0.08, random_gray_scale=0.2, gaussian_blur=0.5, sigmas=(0.1, 2.0))
    return SimCLRTransform(**kw) if method == "simclr" else MoCoV2Transform(**kw)


def snapshot(out: Path, backbone: nn.Module, enc_cfg: EncoderConfig, step: int, seconds: float) -> None:
    snap = out / "snapshots" / f"step{step:07d}"  # as pipelines.pretrain's snapshots
    save_encoder(snap, Encoder(backbone, enc_cfg))
    atomic_write_json(snap / "summary.json", {"step": step, "seconds": seconds})


def main(argv=None) -> int:
    t_start = time.perf_counter()  # the budget starts before the folder is listed (ours: before decoding)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--method", choices=["simclr", "moco"], default="simclr")
    p.add_argument("--backbone", default="smallcnn")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--minutes", type=float, required=True)
    p.add_argument("--snapshot-minutes", type=float, default=None)
    p.add_argument("--lr", type=float, default=0.06, help="base lr for batch 256 (ours for SGD)")
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--queue-size", type=int, default=4096)
    p.add_argument("--momentum", type=float, default=0.99)
    p.add_argument("--workers", type=int, default=os.cpu_count(), help="DataLoader workers")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast + channels_last (not in lightly's examples)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    deadline = t_start + args.minutes * 60
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    small_stem = args.image_size <= 64
    backbone = build_backbone(args.backbone, small_stem)
    if args.method == "simclr":
        model = SimCLR(backbone)
        criterion = NTXentLoss(temperature=0.5)
    else:
        model = MoCo(backbone)
        criterion = NTXentLoss(temperature=0.2, memory_bank_size=(args.queue_size, 128))
    fmt = torch.channels_last if args.bf16 else torch.contiguous_format
    model = model.to(memory_format=fmt)
    dataset = LightlyDataset(input_dir=args.data, transform=build_transform(args.method, args.image_size))
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True,
                        num_workers=args.workers)
    base_lr = args.lr * args.batch_size / 256
    optimizer = build_optimizer("sgd", model, base_lr, args.weight_decay)
    spe = len(loader)
    warmup = max(1, int(round(args.warmup_epochs * spe)))
    lrs = None  # fitted after CALIBRATION_STEPS; until then the linear warm-up of a long run

    name = f"lightly-{args.method}" + ("-bf16" if args.bf16 else "")
    enc_cfg = EncoderConfig(backbone=args.backbone, small_stem=small_stem, feat_dim=backbone.feat_dim,
                            image_size=args.image_size, method=name,
                            training={**vars(args), "lightly": lightly.__version__, "torch": torch.__version__})
    next_snapshot = args.snapshot_minutes * 60 if args.snapshot_minutes else float("inf")
    step, total_steps, images, train_s = 0, None, 0, 0.0
    model.train()
    with open(out / "metrics.jsonl", "w") as log:
        t_prev = time.perf_counter()
        done = False
        while not done:
            for batch in loader:
                x0, x1 = batch[0]  # the two views (N, 3, S, S)
                x0, x1 = x0.contiguous(memory_format=fmt), x1.contiguous(memory_format=fmt)
                lr = float(lrs[min(step, len(lrs) - 1)]) if lrs is not None else base_lr * min(1.0, (step + 1) / warmup)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                    if args.method == "simclr":
                        loss = criterion(model(x0), model(x1))
                    else:
                        loss = criterion(model(x0), model.forward_momentum(x1))
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                if args.method == "moco":
                    update_momentum(model.backbone, model.backbone_momentum, m=args.momentum)
                    update_momentum(model.projection_head, model.projection_head_momentum, m=args.momentum)
                loss_value = float(loss.detach())
                now = time.perf_counter()
                step += 1
                images += args.batch_size
                train_s += now - t_prev
                log.write(json.dumps({"step": step, "loss": loss_value, "lr": lr,
                                      "img_per_s": args.batch_size / (now - t_prev), "seconds": now - t_start}) + "\n")
                log.flush()
                t_prev = now
                if step == CALIBRATION_STEPS[0]:
                    t_cal = now
                elif step == CALIBRATION_STEPS[1]:
                    rate = (CALIBRATION_STEPS[1] - CALIBRATION_STEPS[0]) / (now - t_cal)
                    total_steps = step + max(1, int((deadline - now - 5.0) * rate * 0.97))
                    lrs = warmup_cosine(base_lr, total_steps, min(warmup, max(total_steps // 10, 1)))
                if now - t_start >= next_snapshot:
                    snapshot(out, model.backbone, enc_cfg, step, now - t_start)
                    every = args.snapshot_minutes * 60  # its saving time lands in the next step, as in ours
                    next_snapshot = ((now - t_start) // every + 1) * every
                if now >= deadline or (total_steps is not None and step >= total_steps):
                    done = True
                    break
    save_encoder(out, Encoder(model.backbone, enc_cfg))
    atomic_write_json(out / "summary.json", {
        "run_dir": str(out), "step": step, "total_steps": total_steps, "epoch": step / spe, "images": len(dataset),
        "seconds": time.perf_counter() - t_start, "train_seconds": train_s, "lightly": lightly.__version__,
        "torch": torch.__version__})
    print(f"{name}: {step} steps ({step / spe:.2f} epochs) in {time.perf_counter() - t_start:.0f}s, saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
