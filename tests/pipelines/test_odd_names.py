"""File names the OS allows and people make: not UTF-8, newlines, commas and quotes, leading dashes,
a 255-byte name, a path near PATH_MAX, an unreadable file and an unreadable folder. Each is indexed
or skipped and counted; the manifest (JSON, `\\udcXX` escapes for bytes that are not UTF-8), the
CSV exports (`index.exports.read_csv_rows`) and the cluster folders give back the same files."""
from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from index.exports import read_csv_rows
from index.store import load_index
from pipelines import build_index, cluster, duplicates
from tests.bad_corpus import deny_reading
from tests.conftest import draw_shape_image
from tests.pipelines.test_build_index import build

DEEP = [("d" * 200)] * 18  # 18 folders of 200 bytes: the image's path is near PATH_MAX (4096)
NAMES = [os.fsdecode(b"caf\xe9 latin-1.png"), "line\nbreak.png", 'comma, "quoted".png', "-rf.png", "--help.jpg",
         "a" * 251 + ".png", "/".join(DEEP) + "/deep.png", "sub dir/ünïcode.png"]
COPY = '-copy, of "café\n.png'  # an exact copy of NAMES[0]


@pytest.fixture
def odd(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "d"
    rng = np.random.default_rng(0)
    for i, name in enumerate(NAMES + ["locked.png", "locked dir/inside.png"]):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        draw_shape_image(("ellipse", "cross", "triangle")[i % 3], rng).save(path)
    shutil.copy(root / NAMES[0], root / COPY)
    assert len(os.fsencode(root / NAMES[6])) > 3600
    deny_reading(monkeypatch, root / "locked.png")  # as root, chmod 000 would not stop us
    real_scandir = os.scandir

    def scandir(path="."):
        if not isinstance(path, int) and os.fspath(path).endswith("locked dir"):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_scandir(path)
    monkeypatch.setattr(os, "scandir", scandir)
    return root


def test_odd_names_are_indexed_skipped_counted_and_exported_back(odd, tiny_encoder, tmp_path):
    out = tmp_path / "index"
    assert build(odd, tiny_encoder, out) == 0
    loaded = load_index(out, use_gpu=False)
    paths = [it.path for it in loaded.manifest.items]
    assert sorted(paths) == sorted(NAMES + [COPY])
    assert all(loaded.image_file(p).is_file() for p in paths)  # the manifest gives back the files' own bytes
    assert (out / "manifest.json").read_bytes().isascii()
    skipped = loaded.manifest.skipped["by_reason"]
    assert skipped == {"permission denied": 1, "folder permission denied": 1}

    csv_path, folders = tmp_path / "clusters.csv", tmp_path / "folders"
    assert cluster.main(["--index", str(out), "-k", "2", "--nredo", "1", "--export", str(csv_path),
                         "--folders", str(folders)]) == 0
    rows = read_csv_rows(csv_path)
    assert sorted(r["path"] for r in rows) == sorted(paths)
    assert all((odd / r["path"]).is_file() for r in rows)
    links = [p for p in folders.rglob("*") if p.is_symlink()]
    assert sorted(os.fsencode(p.resolve()) for p in links) == sorted(os.fsencode((odd / p).resolve()) for p in paths)

    dup_csv = tmp_path / "dups.csv"
    assert duplicates.main(["--index", str(out), "--export", str(dup_csv), "--detector", "encoder"]) == 0
    groups = {r["path"] for r in read_csv_rows(dup_csv) if r["kind"] == "exact"}
    assert groups == {NAMES[0], COPY}


def test_update_keeps_odd_names_and_counts_a_file_gone_since_the_scan(odd, tiny_encoder, tmp_path, monkeypatch):
    out = tmp_path / "index"
    assert build(odd, tiny_encoder, out) == 0
    real_scan = build_index.scan_images

    def scan_then_delete(root, skips=None):
        files = real_scan(root, skips)
        (odd / NAMES[1]).unlink()  # gone between the listing and the stat / decode
        return files
    draw_shape_image("cross", np.random.default_rng(1)).save(odd / "new, one.png")
    monkeypatch.setattr(build_index, "scan_images", scan_then_delete)
    assert build(odd, tiny_encoder, out, "--update") == 0
    m = load_index(out, use_gpu=False).manifest
    assert sorted(it.path for it in m.items) == sorted(set(NAMES + [COPY, "new, one.png"]) - {NAMES[1]})
    assert m.skipped["by_reason"]["vanished"] == 1
