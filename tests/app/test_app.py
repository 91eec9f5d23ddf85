"""Every page of app.py through streamlit's AppTest (no browser), on a tiny generated index."""
from __future__ import annotations

import io
import json
import re
import shutil
import sys
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from encoders.imagefolder import MAX_IMAGE_PIXELS
from tests.app.pages import PAGES, goto, grid_hits, grid_paths, grid_text

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption]


def first_hit(at: AppTest) -> str:
    """The first result as 'score · path'."""
    hits = grid_hits(at)
    assert hits, grid_text(at)[:300]
    return f"{hits[0][1]:.3f} · {hits[0][2]}"


def cluster_sizes(at: AppTest) -> dict[int, int]:
    """{cluster: photos} from the headings of the Clusters page."""
    found = (re.search(r"\*\*Cluster (\d+)\*\* · ([\d,]+) photos", m.value) for m in at.markdown)
    return {int(f.group(1)): int(f.group(2).replace(",", "")) for f in found if f}


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(app, page):
    goto(app, page)
    assert not app.exception, app.exception
    assert not errors(app)
    assert app.header[0].value


def test_clusters_for_a_chosen_k_and_paging(app):
    goto(app, "Clusters")
    app.selectbox(key="k_clusters").set_value(3).run()
    assert not app.exception
    options = app.selectbox(key="browse_cluster").options
    assert [o.split(" (")[0] for o in options] in (["0", "1", "2"], ["0", "1", "2", "Unsorted"])
    assert sorted(cluster_sizes(app)) == [0, 1, 2]
    assert app.markdown[0].value.startswith("**3 groups**, as chosen")


def test_automatic_clusters_use_what_pipelines_cluster_saved(app_index, tmp_path, monkeypatch):
    from pipelines import cluster

    index_dir = tmp_path / "index"
    shutil.copytree(app_index, index_dir)
    assert cluster.main(["--index", str(index_dir), "-k", "4", "--neighbours", "5"]) == 0
    monkeypatch.setattr(sys, "argv", ["app.py", "--index", str(index_dir)])
    app = AppTest.from_file(APP, default_timeout=120)
    app.run()
    goto(app, "Clusters")
    assert not app.exception
    assert app.markdown[0].value.startswith("**4 groups**, as set when the index was clustered")
    said = [c for c in captions(app) if "5 most similar photos are in its own group" in c]
    assert said, captions(app)
    saved = json.loads((index_dir / "clusters.json").read_text())
    unsorted = set(saved["unsorted"])
    assert unsorted, "the sample's groups at K = 4 with 5 neighbours leave some photos unsorted"
    sorted_sizes = np.bincount([j for p, j in saved["assignments"].items() if p not in unsorted], minlength=4)
    assert cluster_sizes(app) == dict(enumerate(sorted_sizes.tolist()))  # headings count the sorted members
    options = app.selectbox(key="browse_cluster").options
    assert options[-1] == f"Unsorted ({len(unsorted)} photos)" and len(options) == 5
    app.selectbox(key="browse_cluster").set_value(-1).run()
    assert not app.exception
    assert set(grid_paths(app, "member")) == unsorted  # all on one page (fewer than 24)


def test_upload_of_an_indexed_image_finds_itself_first(app, app_index):
    data = Path(__import__("json").loads((app_index / "manifest.json").read_text())["data_root"])
    upload = (data / "rectangle_3_004.png").read_bytes()
    app.file_uploader(key="uploads").upload("my query.png", upload, "image/png").run()
    assert not app.exception and not errors(app)
    hit = first_hit(app)
    assert hit == "1.000 · rectangle_3_004.png"
    assert any("neighbours in" in c for c in captions(app))


def test_more_like_this_and_search_by_name(app):
    app.text_input(key="name_query").input("ellipse_3_000.png").run()
    assert not app.exception
    assert app.query_params["query"] == "ellipse_3_000.png" and app.text_input(key="name_query").value == ""
    assert first_hit(app).endswith(" · ellipse_again.jpg")  # the re-encoded copy, itself left out
    second = grid_hits(app)[1][2]
    assert f'href="?{urlencode({"query": second})}"' in grid_text(app)  # its link, for a new tab
    app.query_params["query"] = second  # the address a click on its "similar" leads to
    app.run()
    assert not app.exception and app.subheader[0].value.startswith("Query: ")
    assert second not in [h[2] for h in grid_hits(app)]
    assert app.query_params["query"] == second  # kept in the address: Back returns to the previous query


def png_bytes(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (w, h)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


@pytest.mark.parametrize("name, data, reason", [
    ("notes.txt", b"just some text", "not a decodable image"),
    ("corrupt.png", b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 50, "cannot be searched"),
    ("empty.jpg", b"", "empty"),
    ("huge.png", b"\x00" * (20 * 1024 * 1024 + 1), "over the 20 MB limit"),
    ("bomb.png", None, "decompression bomb"),
])
def test_bad_uploads_show_a_message(app, name, data, reason):
    if data is None:  # tiny file, enormous declared size
        side = int(np.sqrt(MAX_IMAGE_PIXELS * 2.5)) + 1
        data = png_bytes(side, side)
        assert len(data) < 2_000_000
    app.file_uploader(key="uploads").upload(name, data, "application/octet-stream").run()
    assert not app.exception
    msgs = errors(app)
    assert len(msgs) == 1 and reason in msgs[0] and "Traceback" not in msgs[0], msgs


def test_missing_index_says_how_to_build_one(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["app.py", "--index", str(tmp_path / "nope")])
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert "Cannot open the index" in errors(at)[0]
    assert any("make demo" in m.value for m in at.markdown)


def test_upload_search_refuses_an_encoder_whose_preprocessing_changed(app_index, tmp_path, monkeypatch):
    """Same weights (hash matches), other image size in config.json: queries would be embedded
    differently from the collection, so the page refuses the encoder, as the CLI search does."""
    run, index = tmp_path / "run", tmp_path / "index"
    shutil.copytree(app_index.parent / "run", run)
    shutil.copytree(app_index, index)
    manifest = json.loads((index / "manifest.json").read_text())
    manifest["encoder"]["path"] = str(run)
    (index / "manifest.json").write_text(json.dumps(manifest))
    config = json.loads((run / "config.json").read_text())
    config["image_size"] = 24
    (run / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr(sys, "argv", ["app.py", "--index", str(index)])
    at = AppTest.from_file(APP, default_timeout=120).run()
    query = sorted(Path(manifest["data_root"]).glob("*.png"))[0].read_bytes()
    at.file_uploader(key="uploads").upload("q.png", query, "image/png").run()
    assert not at.exception
    msgs = errors(at)
    assert len(msgs) == 1 and "differs from the config" in msgs[0] and "image_size" in msgs[0], msgs


def test_about_shows_the_quality_report_when_there_is_one(app, app_index):
    """`pipelines.evaluate --copies` writes RUN_DIR/eval_copies.json; About shows it, per edit."""
    run = Path(json.loads((app_index / "manifest.json").read_text())["encoder"]["path"])
    report = run / "eval_copies.json"
    report.write_text(json.dumps({
        "images": 400, "edited": 40, "edits": ["crop", "mirror_grey"],
        "encoder": {"recall_at_1": 0.925, "by_edit": {"crop": 1.0, "mirror_grey": 0.85}},
        "raw_pixels": {"recall_at_1": 0.6, "by_edit": {"crop": 0.7, "mirror_grey": 0.5}}}))
    try:
        goto(app, "About")
        assert not app.exception and not errors(app)
        table = app.table[1].value
        assert list(table.index) == ["all edits", "crop", "mirror_grey"]
        assert table["encoder"].tolist() == [0.925, 1.0, 0.85] and table["raw pixels"].tolist() == [0.6, 0.7, 0.5]
        assert any("40 photos" in c for c in captions(app))
    finally:
        report.unlink()
    app.run()
    assert len(app.table) == 2  # no report: the plain facts and the technical ones


def test_duplicates_page_shows_the_calibrated_rule_keepers_and_the_move_plan(app_index, tmp_path, monkeypatch):
    from index.duplicates import detect_duplicates, saved_rule
    from index.exports import move_plan_json
    from index.store import load_index
    from pipelines import duplicates

    index = tmp_path / "index"
    shutil.copytree(app_index, index)
    assert duplicates.main(["--index", str(index)]) == 0
    saved = json.loads((index / "duplicates.json").read_text())
    monkeypatch.setattr(sys, "argv", ["app.py", "--index", str(index)])
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    goto(at, "Duplicates")
    assert not at.exception and not errors(at)
    assert at.info[0].value.lower().startswith(saved["reason"].lower()[:40])  # the calibrated sentence
    assert at.slider(key="dup_threshold").value == pytest.approx(round(saved["threshold"], 3), abs=1e-3)
    headings = [m.value for m in at.markdown if m.value.startswith("**Group")]
    from ui.grid import markdown_literal
    for g in saved["exact"] + saved["near"]:
        assert any(f"keep {markdown_literal(g['keeper'])}" in h for h in headings), headings
    rule = saved_rule(index, load_index(index).manifest.created)
    found = detect_duplicates(load_index(index), round(saved["threshold"], 3), rule["hamming"],
                              min(rule["hash_floor"], round(saved["threshold"], 3)), rule["hash_kinds"])
    plan = json.loads(move_plan_json([it.path for it in load_index(index).manifest.items], found, str(index)))
    assert sorted(g["keeper"] for g in plan["groups"]) == sorted(g["keeper"] for g in saved["groups"])
    labels = [b.proto.label for b in at.get("download_button")]
    assert any(f"{plan['files_to_move']} extras" in label for label in labels), labels
    assert duplicates.main(["--index", str(index), "--threshold", "0.99"]) == 0  # a new rule, same index build
    at.run()
    assert not at.exception and at.info[0].value.startswith("Threshold 0.990: given with --threshold")
