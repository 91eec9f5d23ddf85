"""Phone photos: decoded at the encoder's size (memory independent of megapixels), equal to a
full decode + resize, EXIF orientation honoured, HEIC and AVIF read like JPEG."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps, features
from skimage import data as skdata

import encoders.formats
from encoders.embed import EncoderConfig
from encoders.imagefolder import SkipReport, decode_folder, open_rgb, resize_center_crop, scan_images
from index.query import decode_upload

ROOT = Path(__file__).resolve().parents[2]
SIZE = 96
FORMATS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP", "heic": "HEIF", "avif": "AVIF"}


def photo(width: int, height: int, resample=Image.Resampling.BICUBIC) -> Image.Image:
    """A real photo (scikit-image's astronaut, cropped to 4:3) at width x height."""
    img = Image.fromarray(skdata.astronaut())
    return img.crop((0, 64, 512, 448)).resize((width, height), resample)


def save(img: Image.Image, path: Path, orientation: int = 1) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(path, format=FORMATS[path.suffix[1:]], quality=90, exif=exif.tobytes())
    return path


def reference(path: Path) -> torch.Tensor:
    """Full-resolution decode, EXIF transpose, RGB, then the preprocessing: uint8 (3, S, S)."""
    with Image.open(path) as img:
        full = ImageOps.exif_transpose(img).convert("RGB")
    return resize_center_crop(SIZE)(full).as_subclass(torch.Tensor)


@pytest.mark.parametrize("ext", list(FORMATS))
@pytest.mark.parametrize("orientation", [1, 6])
def test_small_decode_matches_full_decode_and_resize(tmp_path, ext, orientation):
    path = save(photo(1024, 768), tmp_path / f"p.{ext}", orientation)
    small = open_rgb(path, draft_size=SIZE)
    assert max(small.size) <= 1024 // 4  # decoded (JPEG) or kept (others) at a reduced size
    assert (small.width < small.height) == (orientation == 6)  # stored sideways, shown upright
    got = resize_center_crop(SIZE)(small).as_subclass(torch.Tensor)
    diff = (got.float() - reference(path).float()).abs()
    assert diff.mean() < 2.0 and diff.quantile(0.99) < 16  # of 255: the same picture, resampled differently


def test_orientation_transposes_like_exif_transpose(tmp_path):
    img = photo(400, 300)
    for orientation in range(1, 9):
        path = save(img, tmp_path / f"o{orientation}.png", orientation)
        with Image.open(path) as im:
            want = np.asarray(ImageOps.exif_transpose(im).convert("RGB").reduce(2))
        assert np.array_equal(np.asarray(open_rgb(path, draft_size=75)), want), orientation


PEAK_RSS = """
import resource, sys
from encoders.imagefolder import open_rgb
for path in sys.argv[2:]:
    open_rgb(path, draft_size=int(sys.argv[1]))
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_peak_memory_does_not_grow_with_megapixels(tmp_path):
    """A 48 MP JPEG decodes within a few MB of a 1 MP one (its full RGB pixels would be 144 MB)."""
    small = save(photo(1152, 864), tmp_path / "1mp.jpg")
    big = save(photo(8000, 6000, Image.Resampling.NEAREST), tmp_path / "48mp.jpg")
    out = subprocess.run([sys.executable, "-c", PEAK_RSS, "224", str(small), str(big)], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.split()
    grown_kb = int(out[1]) - int(out[0])  # peak RSS after the 48 MP photo - after the 1 MP one
    assert grown_kb < 16 * 1024, f"decoding 48 MP took {grown_kb / 1024:.0f} MB more than 1 MP"


def test_heic_and_avif_are_scanned_decoded_and_uploaded(tmp_path):
    img = photo(640, 480)
    (tmp_path / "2024").mkdir()
    for ext in FORMATS:
        save(img, tmp_path / "2024" / f"p.{ext}" if ext == "heic" else tmp_path / f"p.{ext}", orientation=6)
    paths, images, skips = decode_folder(tmp_path, SIZE, workers=0, progress=False)
    assert sorted(p.suffix for p in paths) == sorted(f".{e}" for e in FORMATS) and not skips.total
    jpeg = images[[p.suffix for p in paths].index(".jpg")].float()
    assert all((x.float() - jpeg).abs().mean() < 6 for x in images)  # one picture, all upright
    data = (tmp_path / "2024" / "p.heic").read_bytes()
    up = decode_upload(data, EncoderConfig(image_size=SIZE), max_bytes=len(data))
    assert up.height > up.width  # the HEIC's rotation honoured in an upload too


def test_unreadable_photo_formats_name_what_would_read_them(tmp_path, monkeypatch):
    (tmp_path / "IMG_0001.DNG").write_bytes(b"raw")
    (tmp_path / "notes.txt").write_text("x")
    skips = SkipReport()
    assert scan_images(tmp_path, skips) == []
    assert any("rawpy" in r for r in skips.reasons) and skips.reasons["not an image file"] == 1
    monkeypatch.setattr(encoders.formats, "pillow_heif", None)
    monkeypatch.setattr(encoders.formats.features, "check", lambda name: False)
    missing = encoders.formats.missing_readers()
    assert "pillow-heif" in missing[".heic"] and "libavif" in missing[".avif"]


def test_this_installation_reads_heic_and_avif():
    assert features.check("avif") and encoders.formats.pillow_heif is not None
    assert {".heic", ".heif", ".avif"} <= encoders.formats.IMAGE_EXTENSIONS
    json.dumps(encoders.formats.MISSING_READERS)  # plain strings: they go into the JSON skip report
