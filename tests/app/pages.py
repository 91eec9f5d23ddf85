"""Reading the app in AppTest: its pages, its grids (ui/grid.py components) and their hits."""
from __future__ import annotations

import html
import json
import re

from streamlit.testing.v1 import AppTest

PAGES = {"Search": "ui/search.py", "Clusters": "ui/clusters.py", "Map": "ui/map.py",
         "Duplicates": "ui/duplicates.py", "About": "ui/about.py"}
FIGURE = re.compile(r'<figure class="([^"]*)" data-hit="(\d+)" data-path="([^"]*)">(.*?)</figure>')


def goto(at: AppTest, page: str) -> AppTest:
    """What clicking `page` in the page list does."""
    return at.switch_page(PAGES[page]).run()


def grids(at: AppTest) -> dict[str, str]:
    """{grid key: its HTML} of every thumbnail grid on the page."""
    return {el.proto.id.split("-", 2)[-1].removesuffix("-clicks"): json.loads(el.proto.json)["html"]
            for el in at.get("bidi_component") if el.proto.component_name == "photo_grid"}


def grid_text(at: AppTest) -> str:
    return "".join(grids(at).values())


def grid_hits(at: AppTest) -> list[tuple[int, float, str]]:
    """(rank, score, path) of every ranked result in the page's grids, in page order."""
    out = []
    for _, _, path, inner in FIGURE.findall(grid_text(at)):
        m = re.search(r"<b>(\d+)\.</b> ([0-9.-]+)", inner)
        if m:
            out.append((int(m.group(1)), float(m.group(2)), html.unescape(path)))
    return out


def grid_paths(at: AppTest, key: str | None = None) -> list[str]:
    """Paths shown in the grids (only the grid whose key contains `key`, when given)."""
    return [html.unescape(p) for k, g in grids(at).items() if key is None or key in k
            for _, _, p, _ in FIGURE.findall(g)]
