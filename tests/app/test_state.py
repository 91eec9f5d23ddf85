"""What a session keeps while exploring (AppTest): k and the uploads across pages, the query in the
address, another index chosen in the sidebar or asked for in the address, the shared mode that
refuses it, the photo viewer, where matches turn weak, name search with a count and pages."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.conftest import APP
from tests.app.pages import goto, grid_hits, grid_paths, grid_text
from ui.state import local_only


def run_app(monkeypatch, *argv: str) -> AppTest:
    monkeypatch.setattr(sys, "argv", ["app.py", *argv])
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, at.exception
    return at


def data_root(index: Path) -> Path:
    return Path(json.loads((index / "manifest.json").read_text())["data_root"])


def test_k_and_uploads_survive_other_pages_and_a_search_from_a_result(app, app_index):
    query = (data_root(app_index) / "rectangle_3_004.png").read_bytes()
    app.slider(key="k").set_value(5).run()
    app.file_uploader(key="uploads").upload("mine.png", query, "image/png").run()
    assert [h[0] for h in grid_hits(app)] == [1, 2, 3, 4, 5]
    for page in ("Clusters", "Map", "About", "Search"):
        goto(app, page)
        assert not app.exception and not app.error, page
    assert app.slider(key="k").value == 5
    assert [s.value for s in app.subheader] == ["Query: mine\\.png"]  # the upload, searched again
    assert any(c.value.startswith("Searching the 1 photo dropped earlier") for c in app.caption)
    app.query_params["query"] = grid_hits(app)[1][2]  # its second result's "similar"
    app.run()
    assert app.subheader[0].value.startswith("Query: ") and len(grid_hits(app)) == 5
    app.button(key="clear-query").click().run()  # "Back to uploads"
    assert [s.value for s in app.subheader] == ["Query: mine\\.png"] and "query" not in app.query_params


def test_viewer_shows_the_file_and_searches_it_from_another_page(app, app_index):
    goto(app, "Clusters")
    app.session_state["viewing"] = "triangle_3_002.png"  # what a click on its thumbnail asks for
    app.run()
    assert [c.value for c in app.get("code")] == [str(data_root(app_index) / "triangle_3_002.png")]
    facts = [m.value for m in app.markdown if m.value.startswith("**Size**")][0]
    assert "40 × 40 pixels" in facts and "**File** ·" in facts and "no date in the file" in facts
    app.button(key="viewer-search").click().run()
    assert app.header[0].value == "Search by example"
    assert app.query_params["query"] == "triangle_3_002.png"
    assert app.subheader[0].value == "Query: triangle\\_3\\_002\\.png"


def test_weak_matches_below_a_divider_and_only_strong_ones_on_request(app):
    app.slider(key="k").set_value(33).run()  # every other image of the 34
    app.query_params["query"] = "cross_3_000.png"
    app.run()
    hits, grid = grid_hits(app), grid_text(app)
    assert len(hits) == 33 and grid.count('data-divider="') == 1
    first_weak = int(grid.split('data-divider="')[1].split('"')[0])
    assert 0 < first_weak < 33 and grid.count("pg-weak") == 33 - first_weak
    assert hits[0][2] == "copy_of_cross.png" and "duplicate</span>" not in grid  # not calibrated: no badge
    said = [c.value for c in app.caption if "neighbours in" in c.value][0]
    assert f"· {first_weak} strong match" in said
    app.toggle(key="strong_only").set_value(True).run()
    assert len(grid_hits(app)) == first_weak and "pg-weak" not in grid_text(app)
    assert "data-divider" not in grid_text(app)


def test_name_search_shows_a_count_and_pages(app):
    app.text_input(key="name_query").input("_3_").run()  # 32 of the 34 names
    assert not app.exception
    assert any(c.value.startswith("32 photos have") and "24 a page" in c.value for c in app.caption)
    assert len(grid_paths(app, "names")) == 24
    app.text_input(key="name_query").input("triangle").run()
    assert any(c.value.startswith("8 photos have") for c in app.caption)
    assert sorted(grid_paths(app, "names")) == [f"triangle_3_{i:03d}.{('png', 'jpg')[i % 2]}" for i in range(8)]


def test_the_sidebar_lists_the_indexes_and_another_keeps_k_and_uploads(two_indexes, monkeypatch):
    a, b = two_indexes
    at = run_app(monkeypatch, "--index", str(a))
    options = at.selectbox(key="index_choice").options
    assert options[0] == str(a) and str(b) in options and options[-1] == "Other folder…"
    at.slider(key="k").set_value(7).run()
    at.file_uploader(key="uploads").upload("q.png", (data_root(a) / "cross_3_000.png").read_bytes(),
                                           "image/png").run()
    assert grid_hits(at)[1][2] == "copy_of_cross.png"
    at.selectbox(key="index_choice").set_value(str(b)).run()
    assert not at.exception and not at.error
    assert at.query_params["index"] == str(b) and at.slider(key="k").value == 7
    hits = grid_hits(at)
    assert len(hits) == 7 and "copy_of_cross.png" not in [h[2] for h in hits]  # b's answer to the same upload
    assert any(c.value.startswith("33 photos") for c in at.sidebar.caption)
    at.query_params["query"] = hits[0][2]  # a result of b, clicked: still b
    at.run()
    assert not at.error and at.subheader[0].value.startswith("Query: ")
    at.selectbox(key="index_choice").set_value("Other folder…").run()
    at.text_input(key="index_other").input(str(a)).run()
    assert any(c.value.startswith("34 photos") for c in at.sidebar.caption) and "index" not in at.query_params


def test_the_address_opens_another_index_locally(two_indexes, monkeypatch):
    a, b = two_indexes
    monkeypatch.setattr(sys, "argv", ["app.py", "--index", str(a)])
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["index"] = str(b)
    at.run()
    assert not at.error and any(c.value.startswith("33 photos") for c in at.sidebar.caption)


def test_a_shared_page_refuses_another_folder_and_offers_no_chooser(two_indexes, monkeypatch):
    a, b = two_indexes
    monkeypatch.setattr(sys, "argv", ["app.py", "--index", str(a), "--share"])
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["index"] = str(b)
    at.run()
    assert not at.exception
    assert len(at.error) == 1 and "was not opened" in at.error[0].value and str(b) in at.error[0].value.replace(
        "\\", "")
    assert any(c.value.startswith("34 photos") for c in at.sidebar.caption)  # the command line's index
    assert not at.get("selectbox") or "index_choice" not in [s.key for s in at.selectbox]
    assert not [t for t in at.text_input if t.key == "index_other"]
    assert "index" not in at.query_params


@pytest.mark.parametrize("address, local", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                            ("127.0.1.1", True), ("0.0.0.0", False), ("192.168.1.5", False),
                                            ("", False), (None, False)])
def test_only_a_loopback_address_is_local(address, local):
    assert local_only(address) is local
