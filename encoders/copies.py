"""Label-free quality check: edit a collection's own photos and find the originals.

`EDITS` are realistic edits people make to photos (each `edit(img, rng) -> img` on a PIL RGB
image, with its random strength drawn from `rng`). `make_copies` applies every edit to every
image, in memory: nothing is written anywhere. `copy_recall` says how often the original is
the nearest neighbour (cosine) of its edited copy among all originals.
Legend: M originals, Q queries (edited copies), D embedding dim.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps


def random_box(w: int, h: int, area: tuple[float, float], rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A random (x0, y0, x1, y1) box inside a w x h image covering a fraction of its area drawn from
    `area`, aspect 3/4-4/3, anywhere in it."""
    a = rng.uniform(*area)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    cw = int(round(min(w, np.sqrt(a * w * h * aspect))))
    ch = int(round(min(h, np.sqrt(a * w * h / aspect))))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return x0, y0, x0 + cw, y0 + ch


def crop(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Keep 50-80% of the area at a random place, then resize to 50-100% of the original size."""
    box = random_box(*img.size, (0.5, 0.8), rng)
    out = img.crop(box)
    s = rng.uniform(0.5, 1.0)
    return out.resize((max(1, int(out.width * s)), max(1, int(out.height * s))), Image.Resampling.BICUBIC)


def tone(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Brightness and contrast each scaled by 0.6-1.4."""
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.6, 1.4))
    return ImageEnhance.Contrast(img).enhance(rng.uniform(0.6, 1.4))


def mirror(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    return ImageOps.mirror(img)


def grey(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    return ImageOps.grayscale(img).convert("RGB")


def mirror_grey(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    return grey(mirror(img, rng), rng)


def jpeg_round_trip(img: Image.Image, quality: int) -> Image.Image:
    """The image saved as JPEG at `quality` and decoded again, in memory."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert("RGB")


def jpeg(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Re-encoded as JPEG at quality 15-40."""
    return jpeg_round_trip(img, int(rng.integers(15, 41)))


def rotate(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Rotated by 3-10 degrees either way, cropped to the largest centred box without corners."""
    deg = rng.uniform(3, 10) * rng.choice([-1, 1])
    w, h = img.size
    out = img.rotate(deg, resample=Image.Resampling.BICUBIC)
    a = np.deg2rad(abs(deg))
    # the centred axis-aligned box inside the rotated w x h rectangle, same aspect ratio
    f = 1 / (np.cos(a) + np.sin(a) * max(w / h, h / w))
    cw, ch = int(w * f), int(h * f)
    return out.crop(((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch))


EDITS = {"crop": crop, "tone": tone, "mirror": mirror, "grey": grey, "mirror_grey": mirror_grey, "jpeg": jpeg,
         "rotate": rotate}


def resave(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Shrunk to 40-90% of its size and re-saved as JPEG at quality 40-85 (a photo sent through a messenger)."""
    s = rng.uniform(0.4, 0.9)
    small = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), Image.Resampling.BICUBIC)
    return jpeg_round_trip(small, int(rng.integers(40, 86)))


def trim(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """1-10% of the area cut off, unevenly from the four sides; not resized."""
    w, h = img.size
    keep = np.sqrt(rng.uniform(0.90, 0.99))  # side fraction kept
    cw, ch = max(1, round(w * keep * rng.uniform(0.98, 1.0))), max(1, round(h * keep))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return img.crop((x0, y0, x0 + cw, y0 + ch))


def retone(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Brightness x0.8-1.25 and contrast x0.9-1.1 (an automatic enhancement)."""
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.8, 1.25))
    return ImageEnhance.Contrast(img).enhance(rng.uniform(0.9, 1.1))


def framed(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Shown smaller (50-90%) on a plain black, white or grey screen of another shape, half the time
    under a status bar (a screenshot)."""
    w, h = img.size
    s = rng.uniform(0.5, 0.9)
    aspect = float(rng.choice([9 / 19.5, 3 / 4, 16 / 9, 16 / 10]))  # screen width / height
    fit = s * min(1.0, aspect * h / w)  # the photo's width as a fraction of the screen's
    sw = max(w, round(w / fit))
    sh = max(round(sw / aspect), round(h * 1.02))
    canvas = Image.new("RGB", (sw, sh), tuple([int(rng.choice([0, 30, 128, 240, 255]))] * 3))
    canvas.paste(img, ((sw - w) // 2, (sh - h) // 2))
    if rng.random() < 0.5:  # a status bar with a few light marks (clock, icons) along the top
        bar = max(2, round(sh * rng.uniform(0.02, 0.05)))
        canvas.paste(tuple(int(v) for v in rng.integers(0, 80, 3)), (0, 0, sw, bar))
        for _ in range(int(rng.integers(2, 5))):
            x = int(rng.integers(0, max(1, sw - bar)))
            canvas.paste((235, 235, 235), (x, bar // 4, x + bar, bar - bar // 4))
    return canvas.resize((w, max(1, round(sh * w / sw))), Image.Resampling.BICUBIC)  # the screen at the photo's width


DUPLICATE_EDITS = {"resave": resave, "trim": trim, "retone": retone, "mirror": mirror, "grey": grey,
                   "framed": framed}  # the copies people keep by accident, milder than EDITS


def distinct_crops(img: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, Image.Image]:
    """Two views of the same scene that are not copies of each other: crops of 50-65% of the area
    from opposite corners (a burst, a re-framed shot)."""
    w, h = img.size
    side = np.sqrt(rng.uniform(0.5, 0.65))
    cw, ch = max(1, round(w * side)), max(1, round(h * side))
    if rng.random() < 0.5:
        boxes = ((0, 0, cw, ch), (w - cw, h - ch, w, h))
    else:
        boxes = ((w - cw, 0, w, ch), (0, h - ch, cw, h))
    return img.crop(boxes[0]), img.crop(boxes[1])


def make_copies(images: list[Image.Image], seed: int | np.random.Generator = 0, edits: dict | None = None):
    """Every edit of every image -> (edited images, source row (Q,), edit name per query).

    Deterministic in `seed` (a generator goes on where the last call left it, so editing in
    chunks gives the copies of one call); the originals are not modified."""
    edits = EDITS if edits is None else edits
    rng = np.random.default_rng(seed)
    out, src, names = [], [], []
    for i, img in enumerate(images):
        for name, edit in edits.items():
            out.append(edit(img.copy(), rng))
            src.append(i)
            names.append(name)
    return out, np.array(src, np.int64), names


def copy_recall(db: np.ndarray, queries: np.ndarray, src: np.ndarray, names: list[str]) -> dict:
    """Recall@1 of the original: float32 (M, D) originals, (Q, D) queries, src (Q,) their rows.

    Both L2-normalised (cosine). Returns {"recall_at_1": overall, "by_edit": {edit: recall}}."""
    if len(db) < 2:
        raise ValueError(f"copy detection needs at least 2 originals, got {len(db)}")
    sim = torch.from_numpy(queries) @ torch.from_numpy(db).T  # (Q, M)
    hit = (sim.argmax(dim=1).numpy() == src)
    names = np.array(names)
    by_edit = {n: float(hit[names == n].mean()) for n in dict.fromkeys(names)}
    return {"recall_at_1": float(hit.mean()), "by_edit": by_edit, "queries": int(len(hit))}


def pick_sample(n: int, sample: int, seed: int) -> np.ndarray:
    """Rows of the originals to edit: all of them, or `sample` of them drawn with `seed`, sorted."""
    if n < 2:
        raise ValueError(f"copy detection needs at least 2 readable images, found {n}")
    if sample >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=sample, replace=False))


def prepare_original(img: Image.Image, max_side: int = 1024) -> Image.Image:
    """An original as edits see it: at most `max_side` px on its longer side (copies people
    share are rarely larger; it bounds the edit time of camera-size photos)."""
    img = img.copy()
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return img


def copies_working_size(image_size: int) -> int:
    """The size (px, longer side) the quality report edits photos at: 4x the encoder's size, at least
    512. A crop keeps down to ~0.26 of the side, so every copy still covers the encoder's size; the
    recall it gives matches full-resolution editing (bench/results/library_bench_copies.json)."""
    return max(512, 4 * image_size)


REPORT_FILE = "eval_copies.json"  # RUN_DIR/REPORT_FILE: written by `pipelines.evaluate --copies`


def read_report(run_dir: str | os.PathLike) -> dict | None:
    """RUN_DIR/eval_copies.json, or None when it is missing, unreadable or not a JSON object."""
    try:
        report = json.loads((Path(run_dir) / REPORT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) else None


def report_rows(report: dict) -> dict[str, tuple[float | None, float | None]]:
    """{"all edits": (encoder, raw pixels), edit: (encoder, raw pixels), ...}: recall@1 of a
    report, None where a value is missing or not a number."""
    def as_dict(v) -> dict:
        return v if isinstance(v, dict) else {}
    enc, raw = as_dict(report.get("encoder")), as_dict(report.get("raw_pixels"))

    def num(d: dict, edit: str | None) -> float | None:
        v = d.get("recall_at_1") if edit is None else as_dict(d.get("by_edit")).get(edit)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
    edits = report.get("edits")
    edits = [e for e in edits if isinstance(e, str)] if isinstance(edits, list) else []
    return {"all edits": (num(enc, None), num(raw, None)), **{e: (num(enc, e), num(raw, e)) for e in edits}}
