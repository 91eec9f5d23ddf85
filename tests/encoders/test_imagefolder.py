import io

import numpy as np
import pytest
import torch
from PIL import Image

import encoders.imagefolder
from encoders.imagefolder import UnreadableImage, decode_folder, open_rgb, scan_images
from tests.bad_corpus import deny_reading, make_corpus, relative, vanish_after_listing


def _png_bytes(img):
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def make_messy_folder(root):
    """Good images in several formats plus the usual garbage of a real photo folder."""
    good = {}
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    (root / "sub" / "deeper").mkdir(parents=True)
    Image.fromarray(arr).save(root / "a.png")
    Image.fromarray(arr).save(root / "b.jpg", quality=95)
    Image.fromarray(arr).save(root / "sub" / "c.webp")
    Image.fromarray(arr).save(root / "sub" / "d.bmp")
    Image.fromarray(arr).save(root / "sub" / "deeper" / "e.tiff")
    Image.fromarray(arr).save(root / "sub" / "f.GIF")
    Image.fromarray(arr[:, :, 0]).save(root / "grey.png")
    good.update(dict.fromkeys(["a.png", "b.jpg", "sub/c.webp", "sub/d.bmp", "sub/deeper/e.tiff", "sub/f.GIF",
                               "grey.png"]))
    # bad
    (root / "notes.txt").write_text("hello")
    (root / "fake.jpg").write_text("this is text, not a JPEG")
    (root / "empty.png").write_bytes(b"")
    (root / "truncated.png").write_bytes(_png_bytes(Image.fromarray(arr))[:60])
    (root / "dir.jpg").mkdir()
    return sorted(good), {"notes.txt", "fake.jpg", "empty.png", "truncated.png"}


def test_bad_files_are_skipped_and_counted(tmp_path):
    good, bad = make_messy_folder(tmp_path)
    paths, images, skips = decode_folder(tmp_path, 16, workers=0, progress=False)
    got = sorted(p.relative_to(tmp_path).as_posix() for p in paths)
    assert got == sorted(good)
    assert images.shape == (len(good), 3, 16, 16) and images.dtype == torch.uint8
    assert skips.total == len(bad)
    assert skips.reasons["not an image file"] == 1
    assert "skipped 4 files" in skips.summary()


def test_decode_in_worker_processes_matches_in_process(tmp_path):
    make_messy_folder(tmp_path)
    p0, x0, s0 = decode_folder(tmp_path, 16, workers=0, progress=False)
    p2, x2, s2 = decode_folder(tmp_path, 16, workers=2, progress=False)
    assert p0 == p2 and torch.equal(x0, x2) and s0.reasons == s2.reasons


@pytest.mark.parametrize("workers", [0, 2])
def test_bad_corpus_usable_images_are_decoded_the_rest_counted_by_reason(tmp_path, monkeypatch, workers):
    corpus = make_corpus(tmp_path / "data")
    deny_reading(monkeypatch, corpus.root / corpus.locked)  # only seen in process under root
    vanish_after_listing(monkeypatch, encoders.imagefolder, corpus.root / corpus.vanishing)
    paths, images, skips = decode_folder(corpus.root, 16, workers=workers, progress=False)
    assert relative(paths, corpus.root) == corpus.usable
    assert images.shape == (len(corpus.usable), 3, 16, 16)
    assert skips.reasons == corpus.reasons()  # reasons cross from worker processes intact


def test_empty_folder_and_missing_folder_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="no image files"):
        decode_folder(tmp_path, 16, workers=0, progress=False)
    (tmp_path / "bad.jpg").write_text("x")
    with pytest.raises(ValueError, match="no readable image"):
        decode_folder(tmp_path, 16, workers=0, progress=False)
    with pytest.raises(ValueError, match="not a directory"):
        scan_images(tmp_path / "nope")


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((10, 20, 3), dtype=np.uint8)
    arr[:, :10] = 255  # left half white
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    img.save(tmp_path / "r.jpg", exif=exif, quality=100)
    out = open_rgb(tmp_path / "r.jpg")
    assert out.size == (10, 20)  # width and height swapped
    a = np.asarray(out)
    assert a[:10].mean() > 200 and a[10:].mean() < 50  # the white half is now on top


def test_palette_transparency_16bit_and_gif_first_frame(tmp_path):
    p = Image.new("P", (8, 8), 0)
    p.putpalette([255, 0, 0] + [0, 255, 0] * 255)
    p.info["transparency"] = 0
    p.save(tmp_path / "pal.png", transparency=0)
    assert np.asarray(open_rgb(tmp_path / "pal.png")).min() == 255  # transparent -> white
    deep = Image.fromarray((np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16))
    deep.save(tmp_path / "deep.png")
    a = np.asarray(open_rgb(tmp_path / "deep.png"))
    assert a.shape == (8, 8, 3) and a.max() > 200 and a[0, 0, 0] == 0
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    r, g, b = np.asarray(open_rgb(tmp_path / "anim.gif"))[0, 0]
    assert r > 200 and b < 50


def test_open_rgb_reasons(tmp_path):
    (tmp_path / "t.jpg").write_text("nope")
    with pytest.raises(UnreadableImage, match="not a decodable image"):
        open_rgb(tmp_path / "t.jpg")
    with pytest.raises(UnreadableImage, match="^vanished"):
        open_rgb(tmp_path / "gone.jpg")
