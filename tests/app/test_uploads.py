"""Untrusted uploads in the app: every file of the bad-input corpus, the size cap against
.streamlit/config.toml, upload names that never reach the file system, and a page that
opens only images listed in the manifest."""
from __future__ import annotations

import builtins
import json
import tomllib
from pathlib import Path

import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

import encoders.embed
from tests.app.pages import grid_hits
from tests.bad_corpus import make_corpus

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def opened(monkeypatch) -> list[str]:
    """Every path passed to `open` while the test runs (the app runs in this process)."""
    seen, real_open = [], builtins.open

    def spy(file, *args, **kwargs):
        if isinstance(file, (str, Path)):
            seen.append(str(file))
        return real_open(file, *args, **kwargs)
    monkeypatch.setattr(builtins, "open", spy)
    return seen


def data_root(app_index: Path) -> Path:
    return Path(json.loads((app_index / "manifest.json").read_text())["data_root"])


def query_subheaders(at: AppTest) -> list[str]:
    return [s.value for s in at.subheader if s.value.startswith("Query: ")]


def test_every_corpus_file_uploaded_is_searched_or_refused_with_its_reason(app, tmp_path, monkeypatch):
    uploads = make_corpus(tmp_path / "corpus").uploads()
    embedded = []
    real_embed = encoders.embed.embed_images

    def embed_spy(encoder, images, *args, **kwargs):
        embedded.extend(images)
        return real_embed(encoder, images, *args, **kwargs)
    monkeypatch.setattr(encoders.embed, "embed_images", embed_spy)

    app.file_uploader(key="uploads").set_value([(name, data, "application/octet-stream")
                                                for name, data, _ in uploads]).run()
    assert not app.exception, app.exception
    refused = [(name, reason) for name, _, reason in uploads if reason is not None]
    errors = [e.value for e in app.error]
    assert len(errors) == len(refused) == 5
    for (name, reason), msg in zip(refused, errors):
        assert f"cannot be searched ({reason}" in msg and "Traceback" not in msg, (name, msg)
    assert len(query_subheaders(app)) == len(uploads) - len(refused) == 16
    # only decoded RGB pixels reach the encoder, never the uploaded bytes or a file object
    assert len(embedded) == 16 and all(isinstance(im, Image.Image) and im.mode == "RGB" for im in embedded)


def test_upload_size_cap_is_streamlits_max_upload_size(app):
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    cap_mb = config["server"]["maxUploadSize"]
    cap = cap_mb * 1024 * 1024
    uploader = app.file_uploader(key="uploads")
    uploader.set_value([("at_the_cap.png", b"\x00" * cap, "image/png"),
                        ("over_the_cap.png", b"\x00" * (cap + 1), "image/png")]).run()
    errors = [e.value for e in app.error]
    assert len(errors) == 2
    assert "not a decodable image" in errors[0]  # read and refused for what it is, not for its size
    assert f"over the {cap_mb} MB limit" in errors[1] and "file too large" in errors[1]


def test_upload_names_never_touch_the_file_system(app, app_index, opened):
    root = data_root(app_index)
    own = (root / "triangle_3_002.png").read_bytes()
    names = ["canary-7f3a.png", str(root / "rectangle_3_004.png"), "../../rectangle_3_004.png"]
    st.cache_data.clear()  # thumbnails are read again, so the spy sees what the page opens
    app.slider(key="k").set_value(1)  # only the best hit's thumbnail is opened
    app.file_uploader(key="uploads").set_value([(n, own, "image/png") for n in names]).run()
    assert not app.exception and not app.error
    firsts = [(f"{score:.3f}", path) for rank, score, path in grid_hits(app) if rank == 1]
    assert len(firsts) == 3  # each found the uploaded pixels, not the file its name points at
    assert all(c == ("1.000", "triangle_3_002.png") for c in firsts), firsts
    assert any(p.endswith("triangle_3_002.png") for p in opened)  # the hits' thumbnails, from the data root
    assert not [p for p in opened if "canary" in p or p.endswith("../rectangle_3_004.png")]
    assert str(root / "rectangle_3_004.png") not in opened


@pytest.mark.parametrize("query", ["../outside.png", "OUTSIDE"])
def test_the_page_opens_only_images_listed_in_the_manifest(app, app_index, tmp_path, opened, query):
    outside = app_index.parent / "outside.png"  # a real image beside the data root, not in it
    Image.new("RGB", (8, 8), (255, 0, 0)).save(outside)
    if query == "OUTSIDE":
        query = str(outside)
    opened.clear()
    app.query_params["query"] = query  # a link or a typed address
    app.run()
    assert not app.exception
    errors = [e.value for e in app.error]
    assert len(errors) == 1 and ("not in the index" in errors[0] or "not under the indexed folder" in errors[0])
    assert not [p for p in opened if p.endswith("outside.png")]
