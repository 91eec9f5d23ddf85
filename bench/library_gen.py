"""A phone-style photo library generated from real photos (used by bench/library_bench.py).

    python bench/library_gen.py --photos 1000 --megapixels 12 --out data/library-1000x12mp

Sources: scikit-image's sample photos and the wallpapers of the Debian packages
gnome-backgrounds, ukui-wallpapers, lomiri-wallpapers-20.04 and sway-backgrounds (fetched
with `apt-get download`, unpacked with `dpkg-deb -x`, never installed), at full resolution,
in data/library-sources/. Each generated photo is a distinct random crop (30-90% of the area,
4:3 landscape or 3:4 portrait) of a source with a little tone change, enlarged to --megapixels
(a share --big-share at 48 MP; bilinear to half the size, then pixel doubling, for speed: the
files decode like a camera's, their finest detail is not a camera's), saved as JPEG in nested
date folders (YYYY/YYYY-MM-DD/IMG_NNNNN).
About 15% are stored sideways with an EXIF orientation tag, 1% are HEIC and 0.5% AVIF (at most
12 MP, encoded at the encoders' fastest settings; at most 40 and 20 of them); 1% are
exact copies (same bytes, in WhatsApp/) and 2% near copies (1600 px, JPEG quality 70, in
Messenger/). Files are written under a temporary name then renamed; a finished library
(DIR.json beside the folder) is reused, not regenerated.
"""
from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from encoders.files import atomic_write_json  # noqa: E402
from encoders.formats import pillow_heif  # noqa: E402,F401  (registers the HEIF writer)
from pipelines.sample_photos import DEBIAN_PACKAGES, SKIMAGE_PHOTOS, fetch_deb, pick_wallpapers  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SOURCES = REPO / "data" / "library-sources"
BIG_MP = 48
SHARES = {"sideways": 0.15, "heic": 0.01, "avif": 0.005, "exact": 0.01, "near": 0.02}
HEIF_MAX = {".heic": 40, ".avif": 20}  # a few of each at any library size: each costs seconds to encode
HEIF_MP = 12  # HEIC and AVIF photos at most this size: x265 takes ~10 s per 12 MP photo here, 4x that at 48


def collect_sources(dest: Path = SOURCES, packages: tuple[str, ...] = DEBIAN_PACKAGES) -> list[Path]:
    """The real photos every library is cut from, at full resolution, fetched once."""
    dest.mkdir(parents=True, exist_ok=True)
    from skimage import data as skdata
    for name in SKIMAGE_PHOTOS:
        path = dest / f"skimage_{name}.png"
        if not path.exists():
            try:
                arr = np.asarray(getattr(skdata, name)())
            except Exception:  # needs a download, or not in this version
                continue
            if arr.dtype == np.uint8 and min(arr.shape[:2]) >= 256:
                Image.fromarray(arr).convert("RGB").save(path)
    for package in packages:
        if any(dest.glob(f"{package}_*")):
            continue
        work = dest / f".deb-{package}"
        work.mkdir(exist_ok=True)
        for name, f in pick_wallpapers(fetch_deb(package, work)).items():
            with Image.open(f) as im:
                if min(im.size) >= 1024:
                    shutil.copyfile(f, dest / f"{package}_{name}{f.suffix.lower()}")
        shutil.rmtree(work)
    return sorted(p for p in dest.iterdir() if p.is_file() and not p.name.startswith("."))


def photo_size(megapixels: float, portrait: bool) -> tuple[int, int]:
    """4:3 width x height of about `megapixels`, sides multiples of 16 (as cameras write them)."""
    w = int(round(np.sqrt(megapixels * 1e6 * 4 / 3) / 16) * 16)
    h = int(round(w * 3 / 4 / 16) * 16)
    return (h, w) if portrait else (w, h)


def cut(src: Image.Image, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A random crop of 30-90% of `src`'s area with `size`'s aspect, tone-shifted, resized to `size`."""
    aspect = size[0] / size[1]
    area = rng.uniform(0.3, 0.9) * src.width * src.height
    cw = min(src.width, int(np.sqrt(area * aspect)))
    ch = min(src.height, int(cw / aspect))
    cw = int(ch * aspect)
    x0, y0 = int(rng.integers(0, src.width - cw + 1)), int(rng.integers(0, src.height - ch + 1))
    img = ImageEnhance.Brightness(src.crop((x0, y0, x0 + cw, y0 + ch))).enhance(rng.uniform(0.85, 1.15))
    half = img.resize((size[0] // 2, size[1] // 2), Image.Resampling.BILINEAR)
    return half.resize(size, Image.Resampling.NEAREST)  # pixel doubling: ~5x faster than enlarging in one step


def save_photo(img: Image.Image, path: Path, sideways: bool, taken: datetime.datetime) -> None:
    """Save as a camera does: EXIF date, and when `sideways` the pixels rotated with orientation 6."""
    exif = Image.Exif()
    exif[0x0132] = taken.strftime("%Y:%m:%d %H:%M:%S")
    if sideways:
        img = img.transpose(Image.Transpose.ROTATE_90)  # shown upright after orientation 6 (90 deg clockwise)
        exif[0x0112] = 6
    fmt = {".jpg": "JPEG", ".heic": "HEIF", ".avif": "AVIF"}[path.suffix.lower()]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fast = {"HEIF": {"enc_params": {"preset": "ultrafast"}}, "AVIF": {"speed": 10}}.get(fmt, {})
    img.save(tmp, format=fmt, quality=90 if fmt == "JPEG" else 80, exif=exif.tobytes(), **fast)
    tmp.replace(path)


def plan(photos: int, megapixels: float, big_share: float, sources: int, seed: int) -> list[dict]:
    """One dict per photo: its source, size, format, orientation, date and file name."""
    rng = np.random.default_rng(seed)
    start = datetime.datetime(2021, 1, 1, 9, 0)
    rows, made = [], {".heic": 0, ".avif": 0}
    for i in range(photos):
        kind = rng.random()
        suffix = ".heic" if kind < SHARES["heic"] else ".avif" if kind < SHARES["heic"] + SHARES["avif"] else ".jpg"
        if suffix != ".jpg" and made[suffix] >= HEIF_MAX[suffix]:
            suffix = ".jpg"
        elif suffix != ".jpg":
            made[suffix] += 1
        mp = BIG_MP if rng.random() < big_share else megapixels
        mp = min(mp, HEIF_MP) if suffix != ".jpg" else mp
        taken = start + datetime.timedelta(hours=float(i * 26 + rng.integers(0, 12)))
        rel = f"{taken:%Y}/{taken:%Y-%m-%d}/IMG_{i:05d}{suffix.upper() if suffix == '.heic' else suffix}"
        rows.append({"i": i, "source": i % sources, "size": photo_size(mp, rng.random() < 0.3), "path": rel,
                     "sideways": bool(rng.random() < SHARES["sideways"]), "taken": taken.isoformat(),
                     "seed": int(rng.integers(1 << 31))})
    return rows


def add_copies(out: Path, rows: list[dict], seed: int) -> dict:
    """Exact copies (same bytes) in WhatsApp/ and near copies (1600 px, quality 70) in Messenger/."""
    rng = np.random.default_rng(seed + 1)
    jpegs = [r for r in rows if r["path"].endswith(".jpg")]
    n_exact, n_near = (max(1, round(SHARES[k] * len(rows))) for k in ("exact", "near"))
    picked = rng.choice(len(jpegs), size=min(len(jpegs), n_exact + n_near), replace=False)
    copies = {"exact": [], "near": []}
    for k, j in enumerate(picked.tolist()):
        src = out / jpegs[j]["path"]
        kind = "exact" if k < n_exact else "near"
        dst = out / ("WhatsApp" if kind == "exact" else "Messenger") / f"IMG-{k:05d}.jpg"
        dst.parent.mkdir(exist_ok=True)
        if kind == "exact":
            shutil.copyfile(src, dst)
        else:
            with Image.open(src) as im:
                im.draft("RGB", (1600, 1600))
                small = im.convert("RGB")
                small.thumbnail((1600, 1600), Image.Resampling.LANCZOS)
                small.save(dst, quality=70, exif=im.getexif().tobytes())
        copies[kind].append([jpegs[j]["path"], dst.relative_to(out).as_posix()])
    return copies


def _cut_source(job: tuple[Path, Path, list[dict]]) -> None:
    """Write the photos cut from one source (one source in memory at a time); skips those already written."""
    src_path, out, rows = job
    todo = [r for r in rows if not (out / r["path"]).exists()]
    if not todo:
        return
    with Image.open(src_path) as im:
        src = im.convert("RGB")
    for r in todo:
        img = cut(src, tuple(r["size"]), np.random.default_rng(r["seed"]))
        save_photo(img, out / r["path"], r["sideways"], datetime.datetime.fromisoformat(r["taken"]))


def make_library(out: Path, photos: int, megapixels: float, big_share: float = 0.05, seed: int = 0,
                 sources: list[Path] | None = None, workers: int = 1) -> dict:
    """Generate (or reuse) the library in `out`; returns its description (also written to OUT.json)."""
    want = {"photos": photos, "megapixels": megapixels, "big_share": big_share, "seed": seed}
    described = out.with_name(f"{out.name}.json")
    if described.is_file() and json.loads(described.read_text())["params"] == want:
        return json.loads(described.read_text())
    sources = collect_sources() if sources is None else sources
    rows = plan(photos, megapixels, big_share, len(sources), seed)
    jobs = [(src_path, out, [r for r in rows if r["source"] == s]) for s, src_path in enumerate(sources)]
    if workers > 1:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            list(tqdm(pool.imap_unordered(_cut_source, jobs), total=len(jobs), desc="sources"))
    else:
        for job in tqdm(jobs, desc="sources"):
            _cut_source(job)
    desc = {"params": want, "sources": [p.name for p in sources], "copies": add_copies(out, rows, seed),
            "formats": {s: sum(r["path"].lower().endswith(s) for r in rows) for s in (".jpg", ".heic", ".avif")},
            "sideways": sum(r["sideways"] for r in rows), "big": sum(r["size"][0] * r["size"][1] > 40e6 for r in rows),
            "bytes": sum(p.stat().st_size for p in out.rglob("*") if p.is_file())}
    atomic_write_json(described, desc)
    return desc


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", type=int, default=1000)
    p.add_argument("--megapixels", type=float, default=12)
    p.add_argument("--big-share", type=float, default=0.05, help="share of the photos at 48 MP")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--workers", type=int, default=1, help="processes writing photos (one source each at a time)")
    a = p.parse_args(argv)
    desc = make_library(Path(a.out), a.photos, a.megapixels, a.big_share, a.seed, workers=a.workers)
    print(json.dumps(desc, indent=1)[:2000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
