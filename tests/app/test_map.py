"""The Map page (AppTest): PCA at once; t-SNE computed in a background thread while the page shows
PCA and how long it has run, then drawn once saved beside the index."""
from __future__ import annotations

import json
import shutil
import sys
import threading
import time

from streamlit.testing.v1 import AppTest

from index import projection
from tests.app.conftest import APP
from tests.app.pages import goto
from ui.charts import AXES


def x_title(at: AppTest) -> str:
    spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    return spec["encoding"]["x"]["title"]


def test_tsne_is_computed_in_the_background_while_pca_is_shown(app_index, tmp_path, monkeypatch):
    folder = tmp_path / "index"
    shutil.copytree(app_index, folder)
    release, real = threading.Event(), projection.cached_projection

    def held(index_dir, x, method="pca", seed=0):  # t-SNE "takes a while", until the test says so
        if method == "tsne":
            release.wait(60)
        return real(index_dir, x, method, seed)
    monkeypatch.setattr(projection, "cached_projection", held)
    monkeypatch.setattr(sys, "argv", ["app.py", "--index", str(folder)])
    at = AppTest.from_file(APP, default_timeout=120).run()
    goto(at, "Map")
    assert x_title(at) == AXES["pca"][0]
    at.radio(key="projection").set_value("tsne").run()
    assert not at.exception
    said = [i.value for i in at.info]
    assert len(said) == 1 and said[0].startswith("Arranging 34 photos by Neighbourhoods (t-SNE) in the background")
    assert x_title(at) == AXES["pca"][0]  # the quick map meanwhile
    assert not (folder / "projection_tsne.npz").exists()
    release.set()
    deadline = time.monotonic() + 60
    while not (folder / "projection_tsne.npz").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    at.run()
    assert not at.exception and not at.info
    assert x_title(at) == AXES["tsne"][0]
