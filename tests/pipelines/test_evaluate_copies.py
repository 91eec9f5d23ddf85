"""The label-free copy-detection report: edits, recall against a naive loop, exact encoders,
bad folders, and a user's folder left untouched."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from encoders import copies
from encoders.backbones import build_backbone
from encoders.embed import Encoder, EncoderConfig
from encoders.store import load_encoder, save_encoder
from pipelines import evaluate


def noise_photos(folder: Path, n: int, seed: int = 0, size=(120, 90)) -> Path:
    """n distinct smooth random colour images (JPEG and PNG)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
        img.save(folder / f"p{i:02d}.{('jpg', 'png')[i % 2]}", quality=95)
    return folder


@pytest.fixture()
def random_encoder(tmp_path) -> Path:
    torch.manual_seed(0)
    backbone = build_backbone("smallcnn")
    run = tmp_path / "run"
    save_encoder(run, Encoder(backbone, EncoderConfig(backbone="smallcnn", small_stem=True,
                                                      feat_dim=backbone.feat_dim, image_size=32)))
    return run


def test_copy_recall_matches_a_naive_loop():
    rng = np.random.default_rng(0)
    db = rng.normal(size=(30, 8)).astype(np.float32)
    db /= np.linalg.norm(db, axis=1, keepdims=True)
    q = (db[rng.integers(0, 30, 50)] + rng.normal(scale=0.8, size=(50, 8))).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    src = rng.integers(0, 30, 50)
    names = ["a", "b"] * 25
    res = copies.copy_recall(db, q, src, names)
    hits = [max(range(30), key=lambda j: float(q[i] @ db[j])) == src[i] for i in range(50)]
    assert res["recall_at_1"] == pytest.approx(np.mean(hits))
    assert res["by_edit"]["a"] == pytest.approx(np.mean(hits[0::2]))
    assert res["by_edit"]["b"] == pytest.approx(np.mean(hits[1::2]))


def test_edits_do_what_they_say():
    rng = np.random.default_rng(1)
    img = Image.fromarray(np.random.default_rng(2).integers(0, 256, (60, 80, 3), dtype=np.uint8))
    assert np.array_equal(np.asarray(copies.mirror(img, rng)), np.asarray(img)[:, ::-1])
    g = np.asarray(copies.grey(img, rng)).astype(int)
    assert (g[..., 0] == g[..., 1]).all() and (g[..., 1] == g[..., 2]).all()
    c = copies.crop(img, rng)
    assert c.width * c.height <= 0.8 * 80 * 60 + 80
    r = copies.rotate(img, rng)
    assert r.width < 80 and r.height < 60
    before = np.asarray(img).copy()
    copies.make_copies([img], seed=0)
    assert np.array_equal(np.asarray(img), before)  # originals are never modified


@pytest.mark.parametrize("area", [(0.1, 0.4), (0.5, 0.8)])
def test_random_box_lies_inside_and_covers_the_asked_area(area):
    rng = np.random.default_rng(0)
    for w, h in [(457, 301), (64, 640), (33, 33)]:
        for _ in range(200):
            x0, y0, x1, y1 = copies.random_box(w, h, area, rng)
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            cw, ch = x1 - x0, y1 - y0
            if cw < w and ch < h:  # not clipped by a side: area and aspect as drawn, up to rounding
                assert area[0] * w * h - (cw + ch + 1) <= cw * ch <= area[1] * w * h + (cw + ch + 1)
                assert 3 / 4 - 1 / min(cw, ch) <= cw / ch <= 4 / 3 + 1 / min(cw, ch)


def test_an_exact_encoder_finds_every_unedited_copy(tmp_path, random_encoder, monkeypatch):
    """Identity 'edits': each copy embeds like its original, so recall@1 must be exactly 1."""
    identity = {"identity": lambda im, rng: im.copy()}
    monkeypatch.setattr(copies, "EDITS", identity)
    monkeypatch.setattr(evaluate, "EDITS", identity)
    data = noise_photos(tmp_path / "photos", 12)
    assert evaluate.main(["--encoder", str(random_encoder), "--copies", str(data), "--device", "cpu"]) == 0
    res = json.loads((random_encoder / "eval_copies.json").read_text())
    assert res["encoder"]["recall_at_1"] == 1.0 and res["encoder"]["queries"] == 12
    assert res["raw_pixels"]["recall_at_1"] == 1.0


def test_report_on_real_edits_leaves_the_folder_untouched(tmp_path, random_encoder, capsys):
    data = noise_photos(tmp_path / "photos", 10)
    (data / "notes.txt").write_text("not an image")
    before = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in data.rglob("*")}
    assert evaluate.main(["--encoder", str(random_encoder), "--copies", str(data), "--copies-sample", "6",
                          "--device", "cpu"]) == 0
    assert {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in data.rglob("*")} == before
    res = json.loads((random_encoder / "eval_copies.json").read_text())
    assert res["images"] == 10 and res["edited"] == 6 and res["skipped"]["total"] == 1
    assert set(res["encoder"]["by_edit"]) == set(copies.EDITS)
    assert res["encoder"]["queries"] == 6 * len(copies.EDITS)
    assert "is the original the nearest image?" in capsys.readouterr().out


@pytest.mark.parametrize("content", ["empty", "one image", "no images"])
def test_unusable_folders_fail_loudly(tmp_path, random_encoder, capsys, content):
    data = tmp_path / "d"
    data.mkdir()
    if content == "one image":
        noise_photos(data, 1)
    elif content == "no images":
        (data / "a.txt").write_text("x")
    assert evaluate.main(["--encoder", str(random_encoder), "--copies", str(data), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and ("no image files" in err or "at least 2" in err)
    assert sorted(os.listdir(random_encoder)) == ["config.json", "encoder.safetensors"]  # no report written


def test_tiny_encoder_size_still_gets_a_raw_pixel_baseline(tmp_path):
    """An encoder trained at 8 px: the raw baseline is compared at 8 px, not skipped."""
    torch.manual_seed(0)
    backbone = build_backbone("smallcnn")
    run = tmp_path / "run8"
    save_encoder(run, Encoder(backbone, EncoderConfig(backbone="smallcnn", small_stem=True,
                                                      feat_dim=backbone.feat_dim, image_size=8)))
    data = noise_photos(tmp_path / "photos", 4)
    assert evaluate.main(["--encoder", str(run), "--copies", str(data), "--device", "cpu"]) == 0
    res = json.loads((run / "eval_copies.json").read_text())
    assert res["raw_pixels"]["size"] == 8 and res["encoder_path"] == str(run)


def test_editing_in_chunks_gives_the_copies_of_one_pass(tmp_path, random_encoder):
    """The report edits a few originals at a time (bounded memory): same copies, same features as all at once."""
    data = noise_photos(tmp_path / "photos", 7, size=(300, 200))
    encoder = load_encoder(random_encoder, "cpu")
    paths, _, _, _ = evaluate.folder_features(encoder, str(data), [16])
    cfg = evaluate.EvalConfig(seed=3)
    rows = np.array([0, 2, 3, 6])
    one = evaluate.copies_features(encoder, paths, rows, cfg, 128, [16], chunk=len(rows))
    small = evaluate.copies_features(encoder, paths, rows, cfg, 128, [16], chunk=1)
    assert np.allclose(one[0], small[0], atol=1e-5) and torch.equal(one[1][16], small[1][16])
    assert np.array_equal(one[2], small[2]) and np.array_equal(one[2], np.repeat(rows, len(copies.EDITS)))
    assert one[3] == small[3]
