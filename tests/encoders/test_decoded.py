"""Pixels pretraining decoded are reused by the next steps exactly, and only while the file is unchanged."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

import encoders.imagefolder
from encoders.decoded import load_decoded, save_decoded
from encoders.imagefolder import ImageFiles, decode_folder


def photos(folder, n=5, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((160, 120), Image.Resampling.BICUBIC).save(folder / f"p{i}.jpg", quality=90)
    return folder


def test_saved_pixels_are_served_without_decoding(tmp_path, monkeypatch):
    data = photos(tmp_path / "data")
    paths, images, _ = decode_folder(data, 32, workers=0, progress=False)
    save_decoded(tmp_path / "run", paths, images)
    decoded = load_decoded(tmp_path / "run", 32)
    monkeypatch.setattr(encoders.imagefolder, "open_rgb", lambda *a, **k: pytest.fail("decoded again"))
    served = ImageFiles(paths, 32, decoded)
    assert all(torch.equal(served[i][1], images[i]) for i in range(len(paths)))


def test_a_changed_file_is_decoded_again_and_other_sizes_are_not_served(tmp_path):
    data = photos(tmp_path / "data")
    paths, images, _ = decode_folder(data, 32, workers=0, progress=False)
    save_decoded(tmp_path / "run", paths, images)
    assert load_decoded(tmp_path / "run", 48) is None and load_decoded(tmp_path / "nowhere", 32) is None
    photos(tmp_path / "other", n=1, seed=9)
    os.replace(tmp_path / "other" / "p0.jpg", paths[0])  # new content under the same name
    fresh = ImageFiles(paths, 32)[0][1]
    got = ImageFiles(paths, 32, load_decoded(tmp_path / "run", 32))
    assert torch.equal(got[0][1], fresh) and not torch.equal(fresh, images[0])
    assert torch.equal(got[1][1], images[1])
    (tmp_path / "run" / "decoded.npy").write_bytes(b"not an array")
    assert load_decoded(tmp_path / "run", 32) is None
