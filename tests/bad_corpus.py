"""A photo folder with everything that goes wrong in real ones, generated per test (no binaries committed).

`make_corpus(root)` writes it and returns a `Corpus` that knows, for every file, whether a
pipeline must use it or skip it and under which reason (`SkipReport` category). Two cases
need the test's help, in process: `deny_reading` makes a file unreadable even for root, and
`vanish_after_listing` deletes a file after `scan_images` listed it, before it is read.
"""
from __future__ import annotations

import builtins
import errno
import io
import os
import struct
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import SHAPES, draw_shape_image

BOMB_SIDE = 100_000  # declared width and height: 10 Gpixels, in a file of under 100 bytes


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(side: int = BOMB_SIDE) -> bytes:
    """A valid PNG header declaring side x side 8-bit grey pixels, with one row of data."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # w, h, depth, grey, deflate, filter, no interlace
    idat = zlib.compress(b"\x00" * (side + 1))  # filter byte + one row
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def good_images(rng: np.random.Generator) -> dict[str, bytes]:
    """Unusual but valid images: every one must be used."""
    shape = lambda i: draw_shape_image(SHAPES[i % len(SHAPES)], rng, 40)  # noqa: E731
    out = {f"good_{i}.{('png', 'jpg')[i % 2]}": encoded(shape(i), ("PNG", "JPEG")[i % 2]) for i in range(6)}
    out["cmyk.jpg"] = encoded(shape(0).convert("CMYK"), "JPEG", quality=95)
    deep = (np.arange(40 * 40, dtype=np.uint16).reshape(40, 40) * 40).astype(np.uint16)
    out["deep16.png"] = encoded(Image.fromarray(deep), "PNG")
    pal = shape(1).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    out["palette_transparent.png"] = encoded(pal, "PNG", transparency=0)
    frames = [shape(i) for i in range(3)]
    out["animated.gif"] = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    rotated = shape(2)
    exif = rotated.getexif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    out["exif_rotated.jpg"] = encoded(rotated, "JPEG", exif=exif)
    out["grey.png"] = encoded(shape(3).convert("L"), "PNG")
    out["one_pixel.png"] = encoded(Image.new("RGB", (1, 1), (200, 30, 30)), "PNG")
    out["panorama.jpg"] = encoded(Image.fromarray(rng.integers(0, 256, (50, 20_000, 3), dtype=np.uint8)), "JPEG")
    out["name with spaces é 名前.png"] = encoded(shape(4), "PNG")
    out["x.jpg/inside.png"] = encoded(shape(5), "PNG")  # a directory named x.jpg is a folder like any other
    return out


def bad_files(rng: np.random.Generator) -> dict[str, tuple[bytes, str]]:
    """Files with content that no pipeline may use: name -> (bytes, reason in a folder)."""
    jpeg = encoded(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)), "JPEG", quality=90)
    return {
        "truncated.jpg": (jpeg[:len(jpeg) // 2], "corrupt image"),
        "zero.jpg": (b"", "empty file"),
        "text.jpg": (b"a text file with an image's name\n", "not a decodable image"),
        "bomb.png": (bomb_png(), "too many pixels"),
        "notes.txt": (b"not a photo", "not an image file"),
    }


# An upload has no extension check and no file system: the reasons index.query.decode_upload gives.
UPLOAD_REASONS = {"notes.txt": "not a decodable image"}


@dataclass
class Corpus:
    root: Path
    usable: set[str]  # paths relative to root that must be used
    skipped: dict[str, str]  # path relative to root -> expected SkipReport reason
    contents: dict[str, bytes] = field(default_factory=dict)  # files with bytes (the upload cases)
    vanishing: str = "vanishing.png"  # exists when listed, deleted before reading (vanish_after_listing)
    locked: str = "locked.png"  # unreadable (deny_reading)

    def reasons(self) -> Counter:
        return Counter(self.skipped.values())

    def uploads(self) -> list[tuple[str, bytes, str | None]]:
        """(name, bytes, expected upload error reason or None when the upload must be searched)."""
        return [(Path(rel).name, data, None if rel in self.usable
                 else UPLOAD_REASONS.get(Path(rel).name, self.skipped[rel])) for rel, data in self.contents.items()]


def make_corpus(root: Path, seed: int = 0) -> Corpus:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    good, bad = good_images(rng), bad_files(rng)
    contents = {**good, **{name: data for name, (data, _) in bad.items()}}
    for rel, data in contents.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    corpus = Corpus(root, usable=set(good), skipped={name: reason for name, (_, reason) in bad.items()},
                    contents=contents)
    for rel in (corpus.vanishing, corpus.locked):
        (root / rel).write_bytes(good["good_0.png"])
    corpus.skipped[corpus.vanishing] = "vanished"
    corpus.skipped[corpus.locked] = "permission denied"
    os.symlink("loop.jpg", root / "loop.jpg")  # a file symlink pointing at itself
    corpus.skipped["loop.jpg"] = "symlink loop"
    os.symlink(".", root / "loopdir")  # a folder symlink into its own parent: never walked
    corpus.skipped["loopdir"] = "symlinked folder not followed"
    os.symlink("moved away.jpg", root / "dangling.jpg")
    corpus.skipped["dangling.jpg"] = "broken symlink"
    return corpus


def deny_reading(monkeypatch, path: Path) -> None:
    """chmod 000 `path`; root reads it anyway, so there `open` of that path is also made to fail as it
    would for anyone else (the product code sees the same PermissionError either way)."""
    path.chmod(0)
    if os.geteuid() != 0:
        return
    real_open, target = builtins.open, os.path.realpath(path)

    def open_as_user(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and os.path.realpath(file) == target:
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)
    monkeypatch.setattr(builtins, "open", open_as_user)


def vanish_after_listing(monkeypatch, module, path: Path) -> None:
    """`module.scan_images` lists as usual, then `path` is deleted: it disappears between listing and reading."""
    real_scan = module.scan_images

    def scan_then_delete(*args, **kwargs):
        found = real_scan(*args, **kwargs)
        path.unlink(missing_ok=True)
        return found
    monkeypatch.setattr(module, "scan_images", scan_then_delete)


def relative(paths, root: Path) -> set[str]:
    return {Path(p).relative_to(root).as_posix() for p in paths}
