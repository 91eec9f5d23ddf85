"""pipelines.duplicates end to end: calibrated threshold, keepers, --move-extras / --undo and the index after them."""
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from encoders.files import CRASH_ENV
from index.crowding import Crowding
from index.phash import image_hashes
from index.store import load_index
from pipelines import build_index, duplicates
from tests.conftest import make_shape_folder
from tests.index.test_duplicates import crowded_rule_pairs

REPO = Path(__file__).resolve().parents[2]


def snapshot(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def indexed(tiny_encoder, tmp_path):
    """32 shape images with planted copies: exact, larger, mirrored, re-saved; and their index."""
    data = make_shape_folder(tmp_path / "data", per_class=8, seed=4)
    (data / "sub").mkdir()
    shutil.copy(data / "cross_4_000.png", data / "sub" / "cross_copy.png")
    big = Image.open(data / "ellipse_4_000.png")
    big.resize((80, 80), Image.Resampling.BICUBIC).save(data / "ellipse_big.png")
    ImageOps.mirror(Image.open(data / "triangle_4_002.png")).save(data / "triangle_mirrored.png")
    Image.open(data / "rectangle_4_004.png").save(data / "rectangle_again.jpg", quality=90)
    out = tmp_path / "index"
    assert build_index.main(["--data", str(data), "--encoder", str(tiny_encoder), "--out", str(out),
                             "--workers", "0", "--no-progress"]) == 0
    return data, out


def expected_keeper(root: Path, paths: list[str]) -> str:
    """Most pixels, then largest file, then newest: read from the files themselves."""
    def rank(p):
        with Image.open(root / p) as im:
            st = (root / p).stat()
            return im.width * im.height, st.st_size, st.st_mtime_ns
    return max(paths, key=rank)


def test_calibrated_groups_follow_the_rule_and_name_keepers(indexed, capsys):
    data, out = indexed
    assert duplicates.main(["--index", str(out)]) == 0
    printed = capsys.readouterr().out
    saved = json.loads((out / "duplicates.json").read_text())
    cal = saved["calibration"]
    assert saved["threshold"] == cal["threshold"] and -1 <= cal["threshold"] <= 1
    assert cal["sentence"].startswith(f"threshold {cal['threshold']:.3f}: ") and cal["sentence"] in printed
    assert cal["edited"] == cal["photos"] * 6 and cal["distinct"] == cal["photos"] == 36
    # the near pairs are the rule's, by brute force over all pairs (stand-apart test included); every pair
    # the rule accepts is inside one group (and no other pair links groups)
    loaded = load_index(out)
    paths = [it.path for it in loaded.manifest.items]
    x = loaded.embeddings
    h = np.stack([image_hashes(Image.open(data / p).convert("RGB")) for p in paths])
    sha = [it.sha256 for it in loaded.manifest.items]
    assert saved["crowding"] == cal["crowding"] and saved["crowding"]["k"] == 10
    near = crowded_rule_pairs(sha, x, h, np.ones(len(paths), bool), saved["threshold"], saved["hamming"],
                              saved["hash_floor"], Crowding(**saved["crowding"]))
    assert sorted(tuple(sorted((paths.index(p["a"]), paths.index(p["b"])))) for g in saved["near"]
                  for p in g["pairs"]) == near
    a, b = np.triu_indices(len(paths), 1)
    same = np.array([sha[i] == sha[j] for i, j in zip(a, b)])
    edges = np.array([(i, j) in set(near) for i, j in zip(a, b)]) | same
    group_of = {p: g for g, grp in enumerate(saved["groups"]) for p in grp["paths"]}
    for i, j, e in zip(a, b, edges):
        gi, gj = group_of.get(paths[i]), group_of.get(paths[j])
        if e:
            assert gi is not None and gi == gj
    assert sum(len(g["paths"]) for g in saved["groups"]) == len(group_of)  # groups are disjoint
    for g in saved["groups"] + saved["exact"] + saved["near"]:
        assert g["keeper"] == expected_keeper(data, g["paths"])
    exact = [g for g in saved["exact"] if "sub/cross_copy.png" in g["paths"]]
    assert exact and sorted(exact[0]["paths"]) == ["cross_4_000.png", "sub/cross_copy.png"]
    assert any({"ellipse_4_000.png", "ellipse_big.png"} <= set(g["paths"]) and g["keeper"] == "ellipse_big.png"
               for g in saved["groups"])  # a resized copy: pHash distance 0, found whatever the encoder says


def test_move_extras_then_undo(indexed, tmp_path, capsys):
    data, out = indexed
    before, index_before = snapshot(data), load_index(out)
    emb_before = {it.path: index_before.embeddings[r] for r, it in enumerate(index_before.manifest.items)}
    target = tmp_path / "extras"
    assert duplicates.main(["--index", str(out), "--move-extras", str(data / "dups")]) == 2  # inside: refused
    assert "inside the data folder" in capsys.readouterr().err and snapshot(data) == before
    group = json.loads((out / "duplicates.json").read_text())["groups"][0]  # the refused run found it
    extra = target / next(p for p in group["paths"] if p != group["keeper"])
    extra.parent.mkdir(parents=True)
    extra.write_bytes(b"in the way")
    assert duplicates.main(["--index", str(out), "--move-extras", str(target)]) == 2  # collision: refused
    assert "already exists" in capsys.readouterr().err and snapshot(data) == before
    assert extra.read_bytes() == b"in the way"
    extra.unlink()

    assert duplicates.main(["--index", str(out), "--move-extras", str(target)]) == 0
    saved = json.loads((out / "duplicates.json").read_text()) if (out / "duplicates.json").exists() else None
    manifest = next(target.glob("moves-*.json"))
    listed = json.loads(manifest.read_text())["moves"]
    assert listed and all(m["state"] == "moved" for m in listed)
    now = snapshot(data)
    assert {m["src"] for m in listed} == set(before) - set(now)
    for m in listed:
        assert (target / m["dest"]).read_bytes() == before[m["src"]][0] and m["keeper"] in now
    after = load_index(out)  # updated: exactly the files left, with the embeddings they had
    assert sorted(it.path for it in after.manifest.items) == sorted(now)
    for r, it in enumerate(after.manifest.items):
        np.testing.assert_array_equal(after.embeddings[r], emb_before[it.path])
    assert saved is None  # the index was rebuilt: its old duplicates.json went with it

    assert duplicates.main(["--undo", str(manifest)]) == 0
    assert snapshot(data) == before  # byte-identical, same mtimes
    restored = load_index(out)
    assert sorted(it.path for it in restored.manifest.items) == sorted(before)
    for r, it in enumerate(restored.manifest.items):
        np.testing.assert_allclose(restored.embeddings[r], emb_before[it.path], atol=1e-6)


@pytest.mark.parametrize("point", ["moves:before:2", "moves:after:2"])
def test_killed_move_leaves_files_moved_and_listed_or_untouched(indexed, tmp_path, point):
    data, out = indexed
    before = snapshot(data)
    index_before = (out / "manifest.json").read_bytes()
    target = tmp_path / "extras"
    proc = subprocess.run([sys.executable, "-m", "pipelines.duplicates", "--index", str(out), "--move-extras",
                           str(target)], cwd=REPO, env={**os.environ, CRASH_ENV: point}, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    manifest = next(target.glob("moves-*.json"))
    listed = {m["src"]: m for m in json.loads(manifest.read_text())["moves"]}
    now = snapshot(data)
    moved = [p for p in before if p not in now]
    assert len(moved) == (1 if point == "moves:before:2" else 2) and len(listed) > 2
    for p, content in before.items():
        if p in now:
            assert now[p] == content
        else:
            assert p in listed and (target / listed[p]["dest"]).read_bytes() == content[0]
    assert (out / "manifest.json").read_bytes() == index_before  # not updated half way; still loads
    load_index(out)
    assert duplicates.main(["--undo", str(manifest)]) == 0
    assert snapshot(data) == before
    assert sorted(it.path for it in load_index(out).manifest.items) == sorted(before)
