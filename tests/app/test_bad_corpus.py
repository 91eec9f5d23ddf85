"""The app over an index of the bad-input corpus, after indexed files went bad: every page
still draws, and a thumbnail that cannot be read says why instead of failing the page."""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from streamlit.testing.v1 import AppTest

from pipelines import build_index
from tests.app.pages import goto, grid_text
from tests.bad_corpus import deny_reading, make_corpus

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def test_app_over_the_corpus_index_with_files_gone_bad(app_index, tmp_path, monkeypatch):
    corpus = make_corpus(tmp_path / "data")
    deny_reading(monkeypatch, corpus.root / corpus.locked)
    encoder = json.loads((app_index / "manifest.json").read_text())["encoder"]["path"]
    (corpus.root / corpus.vanishing).unlink()  # gone before the build: not listed, not counted
    out = tmp_path / "index"
    assert build_index.main(["--data", str(corpus.root), "--encoder", encoder, "--out", str(out),
                             "--workers", "0", "--no-progress"]) == 0
    # after indexing: one file deleted, one overwritten with text, one replaced by a symlink loop
    root = corpus.root
    (root / "good_3.jpg").unlink()
    (root / "good_4.png").write_text("overwritten")
    (root / "good_5.jpg").unlink()
    os.symlink("good_5.jpg", root / "good_5.jpg")

    monkeypatch.setattr(sys, "argv", ["app.py", "--index", str(out)])
    at = AppTest.from_file(APP, default_timeout=120).run()
    for page in ("Clusters", "Map", "Duplicates", "About"):
        goto(at, page)
        assert not at.exception and not at.error, (page, at.exception)
    table = at.table[0].value
    assert table.loc["Photos", "Value"] == str(len(corpus.usable))
    assert table.loc["Files left out when indexing", "Value"].startswith(f"{len(corpus.skipped) - 1} ")

    goto(at, "Search")

    at.slider(key="k").set_value(len(corpus.usable) - 1).run()  # every other indexed image is a hit
    at.text_input(key="name_query").input("good_2.png").run()
    assert not at.exception and not at.error
    cannot = sorted(re.findall(r"\(cannot show: [^)]*\)?[^<]*", grid_text(at)))
    assert len(cannot) == 3, cannot
    assert any("vanished" in c for c in cannot)
    assert any("not a decodable image" in c for c in cannot)
    assert any("symlink loop" in c for c in cannot)
