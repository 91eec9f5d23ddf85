"""Thumbnail grids: one HTML block per grid, drawn by a small Streamlit component that turns a
click into a rerun (never a page load).

    show_grid(paths, key, thumb, cells=...)   a grid of thumbnails; clicking one opens the photo
                                              viewer, its "similar" link searches it (ui.state)
    show_mosaic(cells, cols, rows, key, ...)  the map as a grid of clickable tiles
    grid_html(paths, thumb, ...)              the grid's HTML (tests read it)
    jpeg_data_uri(img) / markdown_literal(text)

Each thumbnail is also a plain link (`?query=PATH`) so that opening it in a new tab works.
Names are escaped; a thumbnail that cannot be made says why instead.
"""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlencode

import streamlit as st
from PIL import Image

from encoders.imagefolder import UnreadableImage
from index.store import IndexLoadError
from ui import state

MARKDOWN_SPECIAL = "\\`*_{}[]()#+-.!|<>~$"
CSS = """
.pg-grid {display:grid;gap:18px 14px;margin:4px 0 8px}
.pg-cell {margin:0;min-width:0}
.pg-img {display:block;cursor:zoom-in}
.pg-img img, .pg-none {width:100%;aspect-ratio:1;object-fit:contain;background:#f3f3f3;border-radius:4px;display:block}
.pg-none {font-size:0.75rem;padding:4px;box-sizing:border-box;overflow:hidden}
.pg-cell figcaption {font-size:0.8rem;color:#555;margin-top:4px;line-height:1.35}
.pg-cell figcaption div {white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.pg-sim {float:right;color:#1f6feb;text-decoration:none;margin-left:6px}
.pg-sim:hover {text-decoration:underline}
.pg-keep .pg-img img {outline:3px solid #2e9e4f;outline-offset:-3px}
.pg-badge {font-size:0.7rem;padding:0 5px;border-radius:8px;background:#e7f5ea;color:#1d6b35;margin-left:4px}
.pg-weak {opacity:0.55}
.pg-divider {grid-column:1 / -1;border-top:2px dashed #c9a227;padding-top:4px;font-size:0.8rem;color:#8a6d00}
.pg-mosaic {display:grid;gap:0;background:#f5f5f5;border-radius:4px}
.pg-mosaic .pg-img img {border-radius:0;background:none}
.pg-tile {aspect-ratio:1}
"""
JS = """
export default function(component) {
  const { data, setTriggerValue, parentElement } = component;
  let root = parentElement.querySelector(':scope > div.pg-root');
  if (!root) {
    root = document.createElement('div');
    root.className = 'pg-root';
    parentElement.appendChild(root);
  }
  if (root._html !== data.html) { root.innerHTML = data.html; root._html = data.html; }
  root.onclick = (e) => {
    const a = e.target.closest('a[data-act]');
    if (!a || e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) return;  // new tab: the link
    e.preventDefault();
    setTriggerValue(a.dataset.act, a.dataset.path);
  };
}
"""
_component = st.components.v2.component("photo_grid", css=CSS, js=JS, isolate_styles=False)


@dataclass
class Cell:
    """What a grid cell says under its thumbnail: `top` (HTML, escape user text) on the first line;
    `keep` outlines it (a duplicate group's keeper); `weak` dims it (a weak match)."""

    top: str = ""
    keep: bool = False
    weak: bool = False


def jpeg_data_uri(img: Image.Image, quality: int = 85) -> str:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def markdown_literal(text: str) -> str:
    """User-provided text (an upload's name) shown literally in markdown."""
    return "".join("\\" + c if c in MARKDOWN_SPECIAL else c for c in text)


def _link(path: str, act: str, inner: str, cls: str, title: str, params: dict[str, str]) -> str:
    href = "?" + urlencode({**params, "query": path})
    return (f'<a class="{cls}" href="{html.escape(href)}" data-act="{act}" data-path="{html.escape(path)}" '
            f'title="{html.escape(title)}">{inner}</a>')


def _image(path: str, thumb: Callable[[str], str]) -> str:
    try:
        return f'<img src="{thumb(path)}" alt="">'
    except (IndexLoadError, UnreadableImage) as e:
        return f'<div class="pg-none">(cannot show: {html.escape(str(e))})</div>'


def cell_html(i: int, path: str, thumb: Callable[[str], str], cell: Cell, searchable: bool = True,
              params: dict[str, str] | None = None) -> str:
    """One figure: the thumbnail (opens the viewer), a first line, the file name, a "similar" link;
    its links carry `params` (the index) besides the query."""
    params = {} if params is None else params
    img = _link(path, "open", _image(path, thumb), "pg-img", f"{path}: click to see it large", params)
    name = html.escape(path.rsplit("/", 1)[-1])
    similar = _link(path, "search", "similar", "pg-sim", "Search similar photos", params) if searchable else ""
    top = f"<div>{similar}{cell.top}</div>" if cell.top or similar else ""
    cls = "pg-cell" + (" pg-keep" if cell.keep else "") + (" pg-weak" if cell.weak else "")
    return (f'<figure class="{cls}" data-hit="{i}" data-path="{html.escape(path)}">{img}<figcaption>{top}'
            f'<div title="{html.escape(path)}">{name}</div></figcaption></figure>')


def grid_html(paths: list[str], thumb: Callable[[str], str], cells: list[Cell] | None = None, columns: int = 6,
              searchable: bool = True, divider: tuple[int, str] | None = None) -> str:
    """Thumbnails (`thumb(path)` -> image URI) as one HTML grid; `divider` (before cell i, HTML
    text): a line across the grid, e.g. where matches turn weak."""
    out, params = [], state.link_params()
    for i, path in enumerate(paths):
        if divider is not None and divider[0] == i:
            out.append(f'<div class="pg-divider" data-divider="{i}">{divider[1]}</div>')
        out.append(cell_html(i, path, thumb, cells[i] if cells else Cell(), searchable, params))
    return (f'<div class="pg-grid" style="grid-template-columns:repeat({columns},minmax(0,1fr))">'
            + "".join(out) + "</div>")


def show_html(grid: str, key: str) -> None:
    """A grid's HTML on the page; its clicks go to `state.clicked`."""
    with st.container(key=key):
        _component(data={"html": grid}, key=f"{key}-clicks",
                   on_open_change=lambda: state.clicked(f"{key}-clicks", "open"),
                   on_search_change=lambda: state.clicked(f"{key}-clicks", "search"))


def show_grid(paths: list[str], key: str, thumb: Callable[[str], str], cells: list[Cell] | None = None,
              columns: int = 6, searchable: bool = True, divider: tuple[int, str] | None = None) -> None:
    show_html(grid_html(paths, thumb, cells, columns, searchable, divider), key)


def mosaic_html(tiles: dict[tuple[int, int], str], cols: int, rows: int, thumb: Callable[[str], str]) -> str:
    """The map as cols x rows tiles: `tiles` {(column, row): path}, row 0 at the bottom as on a plot;
    empty cells stay blank. Each tile opens the photo viewer."""
    out, params = [], state.link_params()
    for r in range(rows - 1, -1, -1):
        for c in range(cols):
            path = tiles.get((c, r))
            inner = "" if path is None else _link(path, "open", _image(path, thumb), "pg-img", path, params)
            out.append(f'<div class="pg-tile" data-cell="{c},{r}">{inner}</div>')
    return (f'<div class="pg-mosaic" style="grid-template-columns:repeat({cols},minmax(0,1fr))">'
            + "".join(out) + "</div>")
