"""The main job on the embedded sample collection, end to end, reusing what exists.

    python -m pipelines.demo            # what `make demo` runs

1. builds data/sample: the Fashion-MNIST test images as an unlabeled PNG folder plus the
   real photos that installed Python packages ship (scikit-image, scikit-learn);
2. pretrains an encoder on it within a time budget (skipped if runs/demo has one);
3. embeds the collection into a FAISS index (indexes/demo; `--update` when it exists) and
   clusters it;
4. evaluates the encoder on Fashion-MNIST (kNN + linear probe);
5. starts the search page (`streamlit run app.py`) on 127.0.0.1 and prints its URL.
"""
from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from pipelines import build_index, cluster, evaluate, export_fashion_mnist, pretrain
from pipelines.cli import setup_logging

log = logging.getLogger("pipelines.demo")

SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "cat", "hubble_deep_field",
                  "immunohistochemistry", "retina", "colorwheel", "page", "text", "moon", "horse", "clock",
                  "logo", "grass", "gravel", "brick")


def add_package_photos(out: Path) -> list[str]:
    """Save the sample photos of scikit-image and scikit-learn; returns what was missing."""
    missing = []
    folder = out / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        from skimage import data as skdata
    except ImportError:
        skdata = None
        missing.append("scikit-image (not installed)")
    for name in SKIMAGE_PHOTOS if skdata else ():
        path = folder / f"skimage_{name}.png"
        if path.exists():
            continue
        try:
            arr = getattr(skdata, name)()
        except Exception as e:  # a dataset that would need a download, or is not in this version
            missing.append(f"skimage.data.{name} ({type(e).__name__})")
            continue
        arr = np.asarray(arr)
        if arr.dtype == bool:
            arr = arr.astype(np.uint8) * 255
        elif arr.dtype != np.uint8:
            arr = (255 * (arr - arr.min()) / max(float(np.ptp(arr)), 1e-9)).astype(np.uint8)
        Image.fromarray(arr).save(path)
    try:
        from sklearn.datasets import load_sample_images
        ds = load_sample_images()
        for fname, arr in zip(ds.filenames, ds.images):
            path = folder / f"sklearn_{Path(fname).stem}.jpg"
            if not path.exists():
                Image.fromarray(arr).save(path, quality=95)
    except Exception as e:
        missing.append(f"scikit-learn sample images ({type(e).__name__})")
    return missing


def build_sample_collection(out: Path, fmnist_limit: int | None = None) -> None:
    try:
        n = export_fashion_mnist.export("test", out / "fashion-mnist", limit=fmnist_limit)
        log.info("sample collection: %d Fashion-MNIST test images", n)
    except FileNotFoundError as e:
        log.warning("Fashion-MNIST left out of the sample collection: %s", e)
    missing = add_package_photos(out)
    if missing:
        log.info("not available here, left out: %s", "; ".join(missing))
    photos = len(list((out / "photos").glob("*")))
    log.info("sample collection: %d photos from Python packages", photos)


def main(argv=None) -> int:
    setup_logging()
    p = argparse.ArgumentParser(prog="python -m pipelines.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="data/sample")
    p.add_argument("--run", default="runs/demo")
    p.add_argument("--index", default="indexes/demo")
    p.add_argument("--minutes", type=float, default=4.0, help="pretraining budget")
    p.add_argument("--fmnist-limit", type=int, default=None, help="use only the first N test images")
    p.add_argument("--backbone", default="smallcnn")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--no-eval", action="store_true")
    p.add_argument("--no-serve", action="store_true", help="stop after the pipelines; don't start the page")
    p.add_argument("--port", type=int, default=8501)
    args = p.parse_args(argv)
    data, run = Path(args.data), Path(args.run)
    build_sample_collection(data, args.fmnist_limit)
    if (run / "encoder.safetensors").is_file():
        log.info("reusing the trained encoder in %s (delete it to retrain)", run)
    else:
        rc = pretrain.main(["--data", str(data), "--out", str(run), "--method", "simclr", "--backbone",
                            args.backbone, "--image-size", "32", "--batch-size", str(args.batch_size),
                            "--optimizer", "adamw", "--temperature", "0.2", "--min-scale", "0.2", "--minutes",
                            str(args.minutes), "--resume", *(["--no-progress"] if not sys.stderr.isatty() else [])])
        if rc:
            return rc
    index = Path(args.index)
    rc = build_index.main(["--data", str(data), "--encoder", str(run), "--out", str(index),
                           *(["--update"] if (index / "manifest.json").is_file() else [])])
    if rc:
        return rc
    rc = cluster.main(["--index", str(index)])
    if rc:
        return rc
    if not args.no_eval:
        log.info("evaluating on Fashion-MNIST (the encoder saw the test images, unlabeled, as part of the "
                 "sample collection)")
        rc = evaluate.main(["--encoder", str(run), "--dataset", "fashion-mnist"])
        if rc:
            return rc
    print(f"\nencoder: {run / 'encoder.safetensors'}  loss curve: {run / 'loss.png'}  index: {index}")
    if args.no_serve:
        return 0
    return serve(index, args.port)


def serve(index: Path, port: int) -> int:
    """Run the search page in the foreground until Ctrl-C."""
    app = Path(__file__).resolve().parents[1] / "app.py"
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.address", "127.0.0.1",
           "--server.port", str(port), "--server.headless", "true", "--", "--index", str(index)]
    print(f"\nsearch page: http://127.0.0.1:{port}  (Ctrl-C to stop)", flush=True)
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
