"""Read a folder of photos: find image files, decode them safely, count what is skipped.

Contract: `scan_images(root)` lists candidate files (recursive, sorted, by extension);
`open_rgb(path)` returns an RGB `PIL.Image` with EXIF orientation applied or raises
`UnreadableImage` whose `reason` is one short category (counted in `SkipReport`) and whose
`detail` says more about that file. Nothing here ever needs labels.
"""
from __future__ import annotations

import errno
import io
import logging
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from encoders.decoded import Decoded
from encoders.formats import IMAGE_EXTENSIONS, MISSING_READERS

log = logging.getLogger(__name__)

# Refuse images whose header declares more pixels than this (decompression bombs).
MAX_IMAGE_PIXELS = 64_000_000
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
BOMB_GUARD = f"over the {MAX_IMAGE_PIXELS:,}-pixel decompression bomb guard"


class UnreadableImage(Exception):
    """A file that cannot be used as an image: `reason` is a short category ("corrupt image",
    "too many pixels", "vanished", ...), `detail` what went wrong with this file."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason, detail)  # both in args: survives pickling out of DataLoader workers
        self.reason, self.detail = reason, detail

    def __str__(self) -> str:
        return f"{self.reason} ({self.detail})" if self.detail else self.reason


def file_error(e: OSError, path: str | os.PathLike | None = None) -> UnreadableImage:
    """An OSError from the file system (not from a decoder) -> UnreadableImage with its category."""
    if e.errno == errno.ENOENT:
        if path is not None and os.path.islink(path):
            return UnreadableImage("broken symlink", f"points to missing {os.readlink(path)}")
        return UnreadableImage("vanished", "no longer there when read")
    if e.errno in (errno.EACCES, errno.EPERM):
        return UnreadableImage("permission denied")
    if e.errno == errno.ELOOP:
        return UnreadableImage("symlink loop")
    if e.errno == errno.EISDIR:
        return UnreadableImage("is a directory")
    return UnreadableImage("unreadable file", e.strerror or str(e))


@dataclass
class SkipReport:
    """Files left out of a run, by reason. Printed in every pipeline's summary."""

    reasons: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    max_warnings: int = 20
    warned: int = 0

    def add(self, path: str | os.PathLike, reason: str, detail: str = "") -> None:
        """Count `path` under `reason` (a short category); `detail` only goes to the log."""
        self.reasons[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 5:
            self.examples[reason].append(str(path))
        if self.warned < self.max_warnings:
            log.warning("skipped %s: %s", path, f"{reason} ({detail})" if detail else reason)
            self.warned += 1
            if self.warned == self.max_warnings:
                log.warning("further skipped files are counted but not listed")

    @property
    def total(self) -> int:
        return sum(self.reasons.values())

    def summary(self) -> str:
        if not self.total:
            return "skipped 0 files"
        parts = ", ".join(f"{n} {r}" for r, n in self.reasons.most_common())
        return f"skipped {self.total} file{'s' if self.total > 1 else ''} ({parts})"

    def as_dict(self) -> dict:
        return {"total": self.total, "by_reason": dict(self.reasons), "examples": self.examples}


def scan_images(root: str | os.PathLike, skips: SkipReport | None = None) -> list[Path]:
    """All files under `root` with an image extension, sorted; symlinked folders are not followed.

    Files with other extensions are counted in `skips` as "not an image file", photo formats
    no installed decoder reads under what would read them (`encoders.formats`), symlinked
    folders (which may loop) as "symlinked folder not followed", folders that cannot be listed
    as "folder permission denied" (or the reason). A directory named `x.jpg`
    is walked like any folder. Raises ValueError if `root` is not a directory.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"--data {root}: not a directory")
    skips = skips if skips is not None else SkipReport()
    found: list[Path] = []
    def unreadable_folder(e: OSError) -> None:  # permission denied, vanished while walking
        skips.add(e.filename, f"folder {file_error(e, e.filename).reason}", e.strerror or "")

    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=unreadable_folder):
        for name in [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            dirnames.remove(name)
            skips.add(Path(dirpath) / name, "symlinked folder not followed")
        dirnames.sort()
        for name in filenames:
            path = Path(dirpath) / name
            if name.startswith("."):
                continue  # hidden files (.DS_Store, editor swap files) are not photos
            suffix = path.suffix.lower()
            if suffix in MISSING_READERS:
                skips.add(path, MISSING_READERS[suffix])
                continue
            if suffix not in IMAGE_EXTENSIONS:
                skips.add(path, "not an image file")
                continue
            found.append(path)
    found.sort()
    return found


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB (16-bit grey scaled to 8 bits, transparency over white)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit greyscale: scale to 8 bits
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() if arr.size else 1.0
        arr = arr * (255.0 / (65535.0 if hi > 255 else max(hi, 1.0)))
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img.convert("RGBA"), mask=img.convert("RGBA").getchannel("A"))
        return background
    return img.convert("RGB")


# EXIF orientation -> the transpose that shows the photo upright (as `ImageOps.exif_transpose`)
ORIENTATION = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
               5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
               8: Image.Transpose.ROTATE_90}
REDUCIBLE_MODES = frozenset({"L", "RGB", "RGBA", "LA", "RGBX", "CMYK"})  # `Image.reduce` averages these correctly


def reduce_to_cover(img: Image.Image, size: int, gap: int = 2) -> Image.Image:
    """Box-average `img` by the largest integer factor that keeps both sides >= `gap` x `size`
    (the slack keeps the later antialiased resize close to one from full size)."""
    factor = min(img.width, img.height) // (gap * size)
    if factor < 2:
        return img
    return img.reduce(factor, (0, 0, img.width - img.width % factor, img.height - img.height % factor))  # whole boxes


def decode_small(img: Image.Image, draft_size: int | None) -> Image.Image:
    """An opened image -> loaded, RGB, EXIF orientation applied (and removed). With `draft_size`, JPEG decodes at the
    smallest DCT scale covering draft_size^2; others decode in full, box-reduced at once (`reduce_to_cover`)."""
    if draft_size and img.format == "JPEG":
        img.draft("RGB", (draft_size, draft_size))
    img.seek(0)
    img.load()
    transpose = ORIENTATION.get(img.getexif().get(0x0112))
    if draft_size and img.format != "JPEG":
        img = reduce_to_cover(img if img.mode in REDUCIBLE_MODES else to_rgb(img), draft_size)
    img = to_rgb(img)
    if transpose is None:
        return img
    img = img.transpose(transpose)  # keeps img.info: drop what says "rotate", as exif_transpose does
    for key in ("exif", "xmp", "XML:com.adobe.xmp"):
        img.info.pop(key, None)
    return img


def open_rgb(path: str | os.PathLike | io.BufferedIOBase, draft_size: int | None = None) -> Image.Image:
    """Decode `path` (or a binary file object; first frame of animations) to RGB, EXIF orientation applied.

    `draft_size` decodes at a reduced size that still covers draft_size x draft_size
    (`decode_small`): memory then depends on the encoder's size, not the photo's. Headers
    declaring more than MAX_IMAGE_PIXELS are refused before any pixel is decoded, whatever
    `PIL.Image.MAX_IMAGE_PIXELS` says. Raises UnreadableImage for anything that is not a
    usable image.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w < 1 or h < 1:
                    raise UnreadableImage("image has no pixels")
                if w * h > MAX_IMAGE_PIXELS:
                    raise UnreadableImage("too many pixels", f"{w}x{h} declared, {BOMB_GUARD}")
                return decode_small(img, draft_size)
    except UnreadableImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UnreadableImage("too many pixels", BOMB_GUARD) from None
    except Image.UnidentifiedImageError:
        empty = isinstance(path, (str, os.PathLike)) and os.path.isfile(path) and os.path.getsize(path) == 0
        raise UnreadableImage("empty file" if empty else "not a decodable image") from None
    except OSError as e:
        if e.errno is not None:  # from the file system; decoders raise OSError without an errno
            raise file_error(e, path if isinstance(path, (str, os.PathLike)) else None) from None
        raise UnreadableImage("corrupt image", f"{type(e).__name__}: {e}") from None
    except Exception as e:  # plugins raise ValueError, SyntaxError, EOFError, struct.error, IndexError...
        raise UnreadableImage("corrupt image", f"{type(e).__name__}: {e}") from None


def thumbnail(img: Image.Image, size: int) -> Image.Image:
    """Fit inside size x size, keeping aspect; tiny images (28 px) are enlarged without blur."""
    scale = size / max(img.size)
    resample = Image.Resampling.NEAREST if scale >= 2 else Image.Resampling.LANCZOS
    w, h = max(1, round(img.width * scale)), max(1, round(img.height * scale))
    return img.resize((w, h), resample)


def resize_center_crop(size: int) -> v2.Compose:
    """PIL RGB image -> uint8 (3, size, size): shorter side to `size`, centre crop.

    This is the one geometric preprocessing used for training caches, embedding and
    queries; normalisation happens later, in float, on the model's device.
    """
    return v2.Compose([
        v2.ToImage(),
        v2.Resize(size, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
        v2.CenterCrop(size),
    ])


def downsample(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (M, 3, S, S) -> uint8 (M, 3, size, size) by area averaging (no-op if S <= size)."""
    if images.shape[-1] <= size:
        return images
    x = torch.nn.functional.interpolate(images.float(), size=(size, size), mode="area")
    return x.round().clamp(0, 255).to(torch.uint8)


def decode_images(images, size: int) -> torch.Tensor:
    """Paths, binary file objects or PIL images -> uint8 (N, 3, size, size), exactly as indexed
    files are prepared: paths and files through `open_rgb` (EXIF orientation, RGB, JPEG draft),
    PIL images with EXIF orientation and RGB conversion, then `resize_center_crop`.
    Raises UnreadableImage."""
    tf = resize_center_crop(size)
    tensors = []
    for im in images:
        rgb = to_rgb(ImageOps.exif_transpose(im)) if isinstance(im, Image.Image) else open_rgb(im, size)
        tensors.append(tf(rgb).as_subclass(torch.Tensor))
    return torch.stack(tensors) if tensors else torch.empty(0, 3, size, size, dtype=torch.uint8)


class ImageFiles(Dataset):
    """Files -> (index, uint8 (3, S, S) tensor, UnreadableImage or None).

    A failed decode returns an empty tensor and the error, so one bad file never stops
    a DataLoader; `collate_skipping` drops it and the caller counts it.
    """

    def __init__(self, files: list[Path], size: int, decoded: Decoded | None = None):
        self.files = files
        self.size = size
        self.transform = resize_center_crop(size)
        self.decoded = decoded  # pixels pretraining saved: taken as they are for unchanged files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        saved = self.decoded.get(self.files[i]) if self.decoded is not None else None
        if saved is not None:
            return i, saved, None
        try:
            img = open_rgb(self.files[i], draft_size=self.size)
            return i, self.transform(img).as_subclass(torch.Tensor), None
        except UnreadableImage as e:
            return i, torch.empty(0, dtype=torch.uint8), e


def collate_skipping(batch):
    """Collate (index, tensor, error) triples; returns (ok_idx, images, [(idx, UnreadableImage)])."""
    ok = [(i, x) for i, x, err in batch if err is None]
    bad = [(i, err) for i, _, err in batch if err is not None]
    idx = torch.tensor([i for i, _ in ok], dtype=torch.long)
    images = torch.stack([x for _, x in ok]) if ok else torch.empty(0, 3, 0, 0, dtype=torch.uint8)
    return idx, images, bad


def default_workers(beside_compute: bool = False, processes: int = 1) -> int:
    """The one default for decoding worker processes: this process's share of the cores (`processes`
    = processes on this machine), less one for the forward pass when decoding runs beside it
    (build_index: oversubscribed cores embed more slowly, bench/results/embed_throughput.json),
    all of it when decoding runs alone (pretrain's decode-once cache)."""
    share = max(1, (os.cpu_count() or 1) // max(1, processes))
    return max(1, share - 1) if beside_compute else share


def iter_decoded(files: list[Path], size: int, batch_size: int = 256, workers: int | None = None,
                 decoded: Decoded | None = None):
    """Yield (ok_idx, uint8 (n, 3, S, S), bad) batches, decoding in worker processes (`decoded`: see ImageFiles)."""
    workers = default_workers() if workers is None else workers
    loader = DataLoader(
        ImageFiles(files, size, decoded), batch_size=batch_size, shuffle=False,
        num_workers=workers, collate_fn=collate_skipping,
        persistent_workers=False, prefetch_factor=4 if workers else None,
    )
    yield from loader


def decode_folder(root: str | os.PathLike, size: int, workers: int | None = None,
                  progress: bool = True) -> tuple[list[Path], torch.Tensor, SkipReport]:
    """Decode every usable image under `root` into one uint8 (M, 3, S, S) tensor.

    Returns (paths of the decoded images, images, skip report). Raises ValueError when
    the folder holds no readable image.
    """
    from tqdm import tqdm

    skips = SkipReport()
    files = scan_images(root, skips)
    if not files:
        raise ValueError(f"--data {root}: no image files found ({skips.summary()})")
    log.info("%d image files under %s; decoding them at %d px", len(files), root, size)
    out = torch.empty(len(files), 3, size, size, dtype=torch.uint8)
    good = torch.zeros(len(files), dtype=torch.bool)
    bar = tqdm(total=len(files), desc="decode", unit="img", disable=not progress)
    for idx, images, bad in iter_decoded(files, size, workers=workers):
        if len(idx):
            out[idx] = images
            good[idx] = True
        for i, err in bad:
            skips.add(files[i], err.reason, err.detail)
        bar.update(len(idx) + len(bad))
    bar.close()
    keep = good.nonzero().flatten()
    if len(keep) == 0:
        raise ValueError(f"--data {root}: no readable image ({skips.summary()})")
    if len(keep) == len(files):
        return files, out, skips  # nothing to drop: no second copy of the whole cache
    return [files[i] for i in keep.tolist()], out[keep], skips
