"""The planted set of bench/duplicates_bench.py: copies of the kinds people make (re-save + resize,
small crops, tone, mirror, greyscale, screenshots with borders, exact copies) and distinct but
similar photos (other crops of one scene), written with their ground truth."""
from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from encoders.imagefolder import open_rgb

KINDS = ("resave", "crop", "tone", "mirror", "grey", "screenshot", "exact")

# copies as people make them: deliberately other code and ranges than encoders.copies


def save_jpeg(img: Image.Image, path: Path, quality: int = 92) -> None:
    img.convert("RGB").save(path, format="JPEG", quality=quality)


def resave(img, rng):
    s = 0.6
    small = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=int(rng.integers(55, 76)))
    return buf.getvalue()


def crop(img, rng):
    cut = rng.uniform(0.02, 0.08)  # of the area
    keep = np.sqrt(1 - cut)
    w, h = img.size
    cw, ch = round(w * keep), round(h * keep)
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return img.crop((x0, y0, x0 + cw, y0 + ch))


def tone(img, rng):
    return ImageEnhance.Brightness(img).enhance(rng.uniform(1.05, 1.15))


def mirror(img, rng):
    return ImageOps.mirror(img)


def grey(img, rng):
    return ImageOps.grayscale(img).convert("RGB")


def screenshot(img, rng):
    """The photo on a phone (portrait, black or white, status and navigation bars) or a desktop
    window (grey frame and title bar), captured at screen resolution."""
    if rng.random() < 0.5:
        sw, sh, bg, bar = 720, 1560, (0, 0, 0) if rng.random() < 0.5 else (250, 250, 250), (32, 32, 32)
        fit = sw / img.width
        top, bottom = 60, 90
    else:
        sw, sh, bg, bar = 1280, 800, (200, 200, 205), (60, 60, 70)
        fit = min(0.85 * sw / img.width, 0.8 * sh / img.height)
        top, bottom = 36, 0
    shown = img.resize((max(1, round(img.width * fit)), max(1, round(img.height * fit))), Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (sw, sh), bg)
    canvas.paste(shown, ((sw - shown.width) // 2, top + (sh - top - bottom - shown.height) // 2))
    d = ImageDraw.Draw(canvas)
    d.rectangle([0, 0, sw, top], fill=bar)
    for i in range(4):  # clock and icons in the bar
        x = 20 + 40 * i if i == 0 else sw - 40 * i
        d.rectangle([x, top // 3, x + 24, 2 * top // 3], fill=(230, 230, 230))
    if bottom:
        d.rectangle([0, sh - bottom, sw, sh], fill=bar)
        d.ellipse([sw // 2 - 20, sh - bottom // 2 - 20, sw // 2 + 20, sh - bottom // 2 + 20], outline=(230, 230, 230))
    return canvas


EDITS = {"resave": resave, "crop": crop, "tone": tone, "mirror": mirror, "grey": grey, "screenshot": screenshot}


def distinct_pair(img, rng):
    """Two 60% crops (of the area) from opposite corners: one scene, two different pictures."""
    w, h = img.size
    side = np.sqrt(0.6)
    cw, ch = round(w * side), round(h * side)
    return img.crop((0, 0, cw, ch)), img.crop((w - cw, h - ch, w, h))


# ---- planted sets ----

def plant(out: Path, photos: list[Path], copies: dict[int, list[str]], scenes: list[int], pad: list[Path],
          seed: int) -> dict:
    """Write the set into out/data (shuffled numbered names); returns the truth:
    {"files": {name: {"group": g, "kind": original/<kind>/scene/padding}}}."""
    rng = np.random.default_rng(seed)
    data = out / "data"
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True)
    entries = []  # (writer, group, kind, suffix)
    for g, i in enumerate(range(len(photos))):
        src = photos[i]
        if i in scenes:
            a, b = distinct_pair(open_rgb(src), rng)
            entries += [(lambda p, im=a: save_jpeg(im, p), f"scene{g}a", "scene", ".jpg"),
                        (lambda p, im=b: save_jpeg(im, p), f"scene{g}b", "scene", ".jpg")]
            continue
        entries.append((lambda p, s=src: shutil.copyfile(s, p), f"photo{g}", "original", src.suffix))
        for kind in copies.get(i, []):  # a photo with two copies of one kind gets two different ones
            if kind == "exact":
                entries.append((lambda p, s=src: shutil.copyfile(s, p), f"photo{g}", kind, src.suffix))
            elif kind == "resave":
                blob = resave(open_rgb(src), rng)
                entries.append((lambda p, b=blob: p.write_bytes(b), f"photo{g}", kind, ".jpg"))
            else:
                im = EDITS[kind](open_rgb(src), rng)
                entries.append((lambda p, im=im: save_jpeg(im, p), f"photo{g}", kind, ".jpg"))
    first_of: dict[str, int] = {}  # byte-identical padding files are duplicates of one another
    for j, p in enumerate(pad):
        g = first_of.setdefault(hashlib.sha256(p.read_bytes()).hexdigest(), j)
        entries.append((lambda q, s=p: shutil.copyfile(s, q), f"pad{g}", "padding", p.suffix))
    order = rng.permutation(len(entries))
    files = {}
    for n, e in enumerate(order):
        write, group, kind, suffix = entries[e]
        name = f"{n:05d}{suffix}"
        write(data / name)
        files[name] = {"group": group, "kind": kind}
    return {"files": files}


SAME_PICTURE = ("skimage_cat.png",)  # skimage.data.cat() is chelsea(): the same photo twice


def source_photos(folder: Path) -> list[Path]:
    """The bench photos without pictures that are copies or variants of one another: skimage's cat
    (= chelsea) and the dark twin of each GNOME light/dark wallpaper pair (same design, other colours)."""
    photos = sorted(q for q in folder.iterdir() if q.suffix in (".jpg", ".png"))
    names = {q.name for q in photos}
    return [q for q in photos if q.name not in SAME_PICTURE
            and not (q.stem.endswith("-d") and q.name.replace("-d.", "-l.") in names)]


def small_set(photos: list[Path], seed: int) -> tuple[dict[int, list[str]], list[int]]:
    """4 scene photos; the others get 42 copies between them (6 per kind, the first ones two);
    the rest stay alone."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(photos)).tolist()
    scenes, rest = order[:4], order[4:]
    if len(rest) < 21:
        raise SystemExit(f"need at least 25 photos, have {len(photos)}")
    copies: dict[int, list[str]] = {}
    for n in range(42):
        copies.setdefault(rest[n % len(rest)], []).append(KINDS[n % len(KINDS)])
    return copies, scenes
