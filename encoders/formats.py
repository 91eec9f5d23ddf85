"""Which photo formats this installation reads, and what would read the ones it cannot.

Pillow reads JPEG, PNG, WebP, BMP, TIFF, GIF and (when built with libavif, as PyPI's wheels
are) AVIF; the `pillow-heif` plug-in adds HEIC/HEIF, the default format of iPhones. It is
registered on import. HEIF decoding applies the file's own rotation (`irot`/`imir`) and
resets the EXIF orientation to 1, so EXIF orientation is honoured the same way for every format.
"""
from __future__ import annotations

from PIL import features

try:
    import pillow_heif
except ImportError:  # the skip report names what would read these files
    pillow_heif = None
else:
    pillow_heif.register_heif_opener()

PILLOW_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
HEIF_EXTENSIONS = frozenset({".heic", ".heif", ".hif"})
AVIF_EXTENSIONS = frozenset({".avif"})
# Photo files no decoder here reads, with what would: counted under that reason, never as "not an image file".
RAW_EXTENSIONS = frozenset({".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raf"})


def missing_readers() -> dict[str, str]:
    """{extension: skip reason} for the photo formats this installation cannot read."""
    missing = dict.fromkeys(RAW_EXTENSIONS, "camera RAW: not read (convert to JPEG or HEIC; rawpy would decode it)")
    if pillow_heif is None:
        missing.update(dict.fromkeys(HEIF_EXTENSIONS, "HEIC/HEIF: needs pillow-heif (pip install pillow-heif)"))
    if not features.check("avif"):
        missing.update(dict.fromkeys(AVIF_EXTENSIONS, "AVIF: needs Pillow built with libavif (Pillow >= 11.3 wheels)"))
    return missing


MISSING_READERS = missing_readers()
IMAGE_EXTENSIONS = (PILLOW_EXTENSIONS | HEIF_EXTENSIONS | AVIF_EXTENSIONS) - MISSING_READERS.keys()
