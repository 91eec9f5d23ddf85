"""A tiny encoder + index of generated shapes, built once per test session for the app tests."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from pipelines import build_index, pretrain
from tests.conftest import make_shape_folder

APP = str(Path(__file__).resolve().parents[2] / "app.py")


@pytest.fixture(scope="session")
def app_index(tmp_path_factory) -> Path:
    """Index of 32 shapes + one exact copy + one re-encoded near copy (smallcnn, 16 px, 1 epoch)."""
    base = tmp_path_factory.mktemp("app")
    train = make_shape_folder(base / "train", per_class=8, seed=11)
    run = base / "run"
    assert pretrain.main(["--data", str(train), "--out", str(run), "--backbone", "smallcnn", "--image-size", "16",
                          "--epochs", "1", "--batch-size", "32", "--workers", "0", "--no-progress"]) == 0
    data = make_shape_folder(base / "data", per_class=8, seed=3)
    shutil.copy(data / "cross_3_000.png", data / "copy_of_cross.png")
    Image.open(data / "ellipse_3_000.png").save(data / "ellipse_again.jpg", quality=97)
    out = base / "index"
    assert build_index.main(["--data", str(data), "--encoder", str(run), "--out", str(out),
                             "--workers", "0", "--batch-size", "16", "--no-progress"]) == 0
    return out


@pytest.fixture(scope="session")
def two_indexes(app_index, tmp_path_factory) -> tuple[Path, Path]:
    """Two index folders side by side (indexes/a, indexes/b): b without the exact copy of a cross."""
    base = tmp_path_factory.mktemp("two")
    a, b = base / "indexes" / "a", base / "indexes" / "b"
    shutil.copytree(app_index, a)
    data = base / "data_b"
    shutil.copytree(Path(json.loads((app_index / "manifest.json").read_text())["data_root"]), data)
    (data / "copy_of_cross.png").unlink()
    assert build_index.main(["--data", str(data), "--encoder", str(app_index.parent / "run"), "--out", str(b),
                             "--workers", "0", "--no-progress"]) == 0
    return a, b


@pytest.fixture(scope="session")
def corrupt_png(tmp_path_factory) -> Path:
    """A PNG signature followed by garbage: looks like an image, does not decode."""
    p = tmp_path_factory.mktemp("bad") / "corrupt.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 50)
    return p


@pytest.fixture
def app(app_index, monkeypatch) -> AppTest:
    """app.py run once on the tiny index, no exception."""
    monkeypatch.setattr(sys, "argv", ["app.py", "--index", str(app_index)])
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at
