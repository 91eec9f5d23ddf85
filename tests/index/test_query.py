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


def flat_index(x: np.ndarray, tmp_path):
    """A LoadedIndex over x (M, D) with an exact inner-product index, rows = ids."""
    import faiss

    from index.store import Item, LoadedIndex, Manifest

    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    items = [Item(f"{i}.png", 1, 0, f"h{i}", i) for i in range(len(x))]
    return LoadedIndex(index, x, np.arange(len(x), dtype=np.int64), Manifest("Flat", x.shape[1], len(x),
                       str(tmp_path), {"sha256": "s"}, items), tmp_path)


@pytest.mark.parametrize("m, centres, spread, kth_wins", [
    (2000, 150, 0.3, True),  # many groups of ~13: the 10th neighbour is in the group, random pairs rarely are
    (300, 3, 0.6, False),  # 3 groups: a third of random pairs are in one group
    (300, 120, 0.6, False)])  # groups of 2-3: the 10th neighbour is already in another group
def test_strong_match_threshold_against_brute_force(tmp_path, m, centres, spread, kth_wins):
    from index.query import strong_match_threshold
    from tests.index.conftest import clustered

    x, _ = clustered(m, 32, centres, spread=spread, seed=1)
    got, why = strong_match_threshold(flat_index(x, tmp_path), sample=m, pairs=5000, seed=0)
    sim = x @ x.T  # (M, M)
    np.fill_diagonal(sim, -np.inf)
    kth = float(np.median(np.sort(sim, axis=1)[:, -10]))  # each photo's 10th most similar other photo
    rng = np.random.default_rng(0)
    rng.choice(m, m, replace=False)  # the rows the function drew first
    a, b = rng.integers(0, m, 5000), rng.integers(0, m, 5000)
    a, b = a[a != b], b[a != b]
    chance = float(np.quantile([x[i] @ x[j] for i, j in zip(a, b)], 0.99))
    assert got == pytest.approx(max(kth, chance), abs=1e-5)
    assert (kth >= chance) == kth_wins
    assert ("10 others" in why) == kth_wins and ("1 time in 100" in why) != kth_wins


def test_no_strong_match_line_for_a_tiny_collection(tmp_path):
    from index.query import strong_match_threshold

    x = np.eye(8, dtype=np.float32)
    assert strong_match_threshold(flat_index(x, tmp_path)) == (-1.0, "")
