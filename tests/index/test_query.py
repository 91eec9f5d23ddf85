"""Query decoding: an upload's bytes go through the production path the page uses
(`index.query.decode_upload`), refused with a reason before anything large is decoded."""
import io

import numpy as np
import pytest
from PIL import Image

from encoders.embed import EncoderConfig
from encoders.imagefolder import MAX_IMAGE_PIXELS, UnreadableImage
from index.query import decode_upload
from tests.bad_corpus import bomb_png


def _jpeg_bytes(img, exif):
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif, quality=100)
    return buf.getvalue()


@pytest.mark.parametrize("side", [8100, 100_000])  # 1x-2x the cap (PIL only warns), and far over it
@pytest.mark.parametrize("pil_cap", [MAX_IMAGE_PIXELS, None])  # None: some library turned PIL's guard off
def test_uploads_over_the_pixel_cap_are_refused_before_decoding(monkeypatch, side, pil_cap):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pil_cap)
    data = bomb_png(side)
    assert len(data) < 200_000 and side * side > MAX_IMAGE_PIXELS
    with pytest.raises(UnreadableImage, match="^too many pixels .*decompression bomb guard"):
        decode_upload(data, EncoderConfig(), max_bytes=1 << 20)


def test_an_upload_becomes_decoded_rgb_pixels_only():
    arr = np.zeros((10, 20, 3), dtype=np.uint8)
    arr[:, :10] = 255
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6
    out = decode_upload(_jpeg_bytes(img, exif), EncoderConfig(), max_bytes=1 << 20)
    assert out.mode == "RGB" and out.size == (10, 20)  # EXIF rotation applied
    assert getattr(out, "fp", None) is None  # fully decoded: no handle on the uploaded bytes
    assert np.asarray(out)[:10].mean() > 200
    with pytest.raises(UnreadableImage, match=r"^file too large \(1.0 MB, over the 1 MB limit\)"):
        decode_upload(b"x" * ((1 << 20) + 1), EncoderConfig(), max_bytes=1 << 20)
