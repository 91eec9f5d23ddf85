"""Embedding throughput (decode + preprocess + forward, images/s) on one folder:

  loop   - a plain loop: PIL open, resize + centre crop, forward, one image at a time
           (timed with torch's default threads and with one thread; the best counts)
  ours   - pipelines.build_index.embed_files: DataLoader workers decode (and hash) the
           next batches while the main process runs batched forward passes (sha256 included)

    python bench/embed_throughput.py [--images 400] [--photo-size 512] [--backbone resnet18] [--image-size 32]
Generates the folder (JPEG "photos") unless --data is given; weights are random (speed
does not depend on them) unless --encoder RUN_DIR. Writes bench/results/embed_throughput.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from encoders.backbones import build_backbone  # noqa: E402
from encoders.embed import Encoder, EncoderConfig  # noqa: E402
from encoders.imagefolder import SkipReport, default_workers, resize_center_crop, scan_images  # noqa: E402
from encoders.store import load_encoder  # noqa: E402
from pipelines.build_index import BuildConfig, embed_files, split_cpu  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def make_photos(root: Path, n: int, size: int, seed: int = 0) -> None:
    """JPEGs of size x 3/4 size with a gradient and a few random shapes (decode cost like a photo)."""
    rng = np.random.default_rng(seed)
    h = size * 3 // 4
    yy, xx = np.mgrid[0:h, 0:size]
    for i in range(n):
        c0, c1 = rng.integers(0, 256, (2, 3))
        t = (xx / size)[..., None]
        arr = (c0 * (1 - t) + c1 * t + rng.normal(0, 12, (h, size, 3))).clip(0, 255).astype(np.uint8)
        img = Image.fromarray(arr)
        d = ImageDraw.Draw(img)
        for _ in range(5):
            x0, y0 = (int(v) for v in rng.integers(0, size // 2, 2))
            d.ellipse([x0, y0, x0 + size // 3, y0 + h // 3], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        img.save(root / f"photo_{i:05d}.jpg", quality=90)


def plain_loop(files: list[Path], encoder: Encoder) -> float:
    tf = resize_center_crop(encoder.cfg.image_size)
    t0 = time.perf_counter()
    for p in files:
        with Image.open(p) as im:
            x = tf(im.convert("RGB")).as_subclass(torch.Tensor)
        encoder(x[None])
    return len(files) / (time.perf_counter() - t0)


def ours(files: list[Path], encoder: Encoder, batch_size: int, workers: int) -> float:
    build = BuildConfig(batch_size=batch_size, workers=workers, progress=False)
    t0 = time.perf_counter()
    ok, _, _ = embed_files(files, encoder, build, SkipReport())
    assert ok.all()
    return len(files) / (time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=None)
    p.add_argument("--images", type=int, default=400)
    p.add_argument("--photo-size", type=int, default=512)
    p.add_argument("--encoder", type=Path, default=None)
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=default_workers(beside_compute=True),
                   help="as build_index: cores - 1")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads for ours (default as build_index: cores - workers)")
    p.add_argument("--loop-images", type=int, default=50, help="images timed in the plain loop")
    p.add_argument("--out", type=Path, default=RESULTS / "embed_throughput.json")
    args = p.parse_args(argv)

    if args.encoder:
        encoder = load_encoder(args.encoder)
    else:
        torch.manual_seed(0)
        backbone = build_backbone(args.backbone, small_stem=args.image_size <= 64).eval().requires_grad_(False)
        encoder = Encoder(backbone, EncoderConfig(backbone=args.backbone, small_stem=args.image_size <= 64,
                                                  feat_dim=backbone.feat_dim, image_size=args.image_size))
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or Path(tmp)
        if args.data is None:
            make_photos(root, args.images, args.photo_size)
        files = scan_images(root)
        ours(files[:args.batch_size], encoder, args.batch_size, args.workers)  # warm-up (page cache, kernels)
        loop_ips = plain_loop(files[:args.loop_images], encoder)
        torch.set_num_threads(1)  # the loop's best case on a busy CPU: no OpenMP barrier waits
        loop1_ips = plain_loop(files[:args.loop_images], encoder)
        torch.set_num_threads(args.threads or split_cpu(args.workers))
        ours_ips = ours(files, encoder, args.batch_size, args.workers)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
                   f"{torch.__version__}, {torch.get_num_threads()} threads for ours",
        "date": time.strftime("%Y-%m-%d"),
        "command": " ".join(["python bench/embed_throughput.py", *(argv or sys.argv[1:])]),
        "images": len(files), "photo_size": None if args.data else f"{args.photo_size}x{args.photo_size * 3 // 4} JPEG",
        "backbone": encoder.cfg.backbone, "image_size": encoder.cfg.image_size, "batch_size": args.batch_size,
        "workers": args.workers,
        "loop_images": min(args.loop_images, len(files)),
        "plain_loop_images_per_s": round(loop_ips, 1), "plain_loop_1_thread_images_per_s": round(loop1_ips, 1),
        "ours_images_per_s": round(ours_ips, 1), "speedup_vs_best_loop": round(ours_ips / max(loop_ips, loop1_ips), 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
