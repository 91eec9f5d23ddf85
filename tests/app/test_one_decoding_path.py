"""The same JPEG bytes give the same neighbours and scores from the page (upload), the CLI
(`pipelines.search --query`) and the index (the file's stored vector): one decoding path
(JPEG draft decoding, EXIF orientation, RGB, resize) for all three."""
from __future__ import annotations

import io
import json
import shutil
import sys

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from encoders.embed import embed_images
from encoders.imagefolder import open_rgb
from index.query import load_query_encoder
from index.store import load_index, search_vectors
from pipelines import build_index, search
from tests.app.conftest import APP
from tests.app.pages import grid_hits
from tests.conftest import draw_shape_image

K = 5


def big_rotated_jpeg() -> bytes:
    """An 800x600 photo-like JPEG with EXIF orientation 6: draft decoding and EXIF both matter."""
    rng = np.random.default_rng(4)
    img = draw_shape_image("triangle", rng, 600).resize((800, 600))
    noise = rng.integers(0, 40, (600, 800, 3), dtype=np.uint8)
    img = Image.fromarray(np.clip(np.asarray(img, np.int16) + noise - 20, 0, 255).astype(np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


@pytest.fixture(scope="module")
def photo_index(app_index, tmp_path_factory):
    base = tmp_path_factory.mktemp("one_path")
    data = base / "data"
    shutil.copytree(json.loads((app_index / "manifest.json").read_text())["data_root"], data)
    (data / "big_photo.jpg").write_bytes(big_rotated_jpeg())
    out = base / "index"
    assert build_index.main(["--data", str(data), "--encoder", str(app_index.parent / "run"), "--out", str(out),
                             "--workers", "0", "--batch-size", "16", "--no-progress"]) == 0
    return out


def test_page_cli_and_index_agree_on_the_same_jpeg(photo_index, tmp_path, monkeypatch, capsys):
    loaded = load_index(photo_index, use_gpu=False)
    row = loaded.row_of("big_photo.jpg")
    by_index = search_vectors(loaded, loaded.embeddings[row:row + 1], K)[0]
    query = tmp_path / "the same bytes.jpg"
    shutil.copy(loaded.absolute("big_photo.jpg"), query)

    capsys.readouterr()
    assert search.main(["--index", str(photo_index), "--query", str(query), "-k", str(K), "--json",
                        "--device", "cpu"]) == 0
    by_cli = json.loads(capsys.readouterr().out)[0]["neighbours"]

    monkeypatch.setattr(sys, "argv", ["app.py", "--index", str(photo_index)])
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.slider(key="k").set_value(K).run()
    at.file_uploader(key="uploads").upload("upload.jpg", query.read_bytes(), "image/jpeg").run()
    assert not at.exception and not at.error
    by_page = [(f"{score:.3f}", path) for _, score, path in grid_hits(at)]

    assert by_index[0].path == "big_photo.jpg" and by_index[0].score == pytest.approx(1.0, abs=1e-5)
    assert [h["path"] for h in by_cli] == [h.path for h in by_index]
    np.testing.assert_allclose([h["score"] for h in by_cli], [h.score for h in by_index], atol=1e-6)
    assert [p for _, p in by_page] == [h.path for h in by_index]
    assert [s for s, _ in by_page] == [f"{h.score:.3f}" for h in by_index]


def test_decoding_without_the_draft_would_give_another_vector(photo_index):
    """Control: the check above can fail; full-resolution decoding embeds the photo differently."""
    loaded = load_index(photo_index, use_gpu=False)
    encoder = load_query_encoder(loaded.manifest)
    stored = loaded.embeddings[loaded.row_of("big_photo.jpg")]
    full = embed_images(encoder, [open_rgb(loaded.absolute("big_photo.jpg"))])[0]
    assert np.abs(full - stored).max() > 1e-4
