"""What the search page shows, without Streamlit, so that app.py only draws.

    jpeg_data_uri(img)                          -> "data:image/jpeg;base64,..."
    thumb_image(loaded, path, size)             -> an indexed image as a thumbnail (only manifest paths)
    thumb_data_uri(loaded, path, size)          -> the same as a data URI
    grid_html(paths, thumb, captions, columns)  -> one HTML block of thumbnails with captions
    markdown_literal(text)                      -> user text shown literally in markdown
    picked_rows(selection, xy, paths)           -> rows picked on the map (clicked points or a box)
    index_facts(loaded)                         -> {field: value} describing an index
    spread_paths(loaded, n)                     -> n indexed paths spread over the collection
    mosaic_png(loaded, xy, cols, rows, px)      -> PNG bytes: the 2-D map as a grid of thumbnails
    map_chart(xy, labels, paths, axis, k)       -> Altair scatter, clickable ("pick") and boxable ("box")
"""
from __future__ import annotations

import base64
import html
import io
from typing import Callable
from urllib.parse import urlencode

import altair as alt
import numpy as np
import pandas as pd
from PIL import Image

from encoders.imagefolder import UnreadableImage, open_rgb, thumbnail
from index.projection import map_cells
from index.store import IndexLoadError, LoadedIndex

THUMB_STYLE = "width:100%;aspect-ratio:1;object-fit:contain;background:#f3f3f3;border-radius:4px;display:block"
CAPTION_STYLE = "font-size:0.8rem;color:#555;margin-top:4px;overflow-wrap:anywhere;line-height:1.3"
MARKDOWN_SPECIAL = "\\`*_{}[]()#+-.!|<>~$"


def jpeg_data_uri(img: Image.Image, quality: int = 85) -> str:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def thumb_image(loaded: LoadedIndex, path: str, size: int) -> Image.Image:
    """An indexed image fitted in size x size. Only manifest paths inside the data root are
    opened (`LoadedIndex.image_file`); raises IndexLoadError or UnreadableImage."""
    return thumbnail(open_rgb(loaded.image_file(path), draft_size=size), size)


def thumb_data_uri(loaded: LoadedIndex, path: str, size: int) -> str:
    """`thumb_image` as a JPEG data URI."""
    return jpeg_data_uri(thumb_image(loaded, path, size))


def grid_html(paths: list[str], thumb: Callable[[str], str], captions: list[str] | None = None,
              columns: int = 6, searchable: bool = True) -> str:
    """Thumbnails (`thumb(path)` -> image URI) with captions as one HTML grid.

    `captions` are HTML (escape user text with `html.escape`); default: the escaped path. A
    thumbnail that cannot be made shows why instead. When `searchable`, each links to
    `?query=PATH`, which the page turns into a search for that indexed image.
    """
    cells = []
    for i, path in enumerate(paths):
        try:
            img = f'<img src="{thumb(path)}" alt="" style="{THUMB_STYLE}">'
        except (IndexLoadError, UnreadableImage) as e:
            img = f'<div style="{THUMB_STYLE};font-size:0.75rem;padding:4px">(cannot show: {html.escape(str(e))})</div>'
        if searchable:
            img = f'<a href="?{urlencode({"query": path})}" target="_self" title="Search this image">{img}</a>'
        caption = captions[i] if captions else html.escape(path)
        cells.append(f'<figure data-hit="{i}" style="margin:0">{img}<figcaption style="{CAPTION_STYLE}">{caption}'
                     f'</figcaption></figure>')
    return (f'<div style="display:grid;grid-template-columns:repeat({columns},minmax(0,1fr));gap:14px">'
            + "".join(cells) + "</div>")


def markdown_literal(text: str) -> str:
    """User-provided text (an upload's name) shown literally in markdown."""
    return "".join("\\" + c if c in MARKDOWN_SPECIAL else c for c in text)


def picked_rows(selection: dict, xy: np.ndarray, paths: list[str]) -> list[int]:
    """Rows picked on the map: the clicked points' images (selection "pick": [{"image": path}]),
    else the points inside the dragged box (selection "box": {"x": [x0, x1], "y": [y0, y1]})."""
    clicked = {p["image"] for p in (selection.get("pick") or []) if isinstance(p, dict) and "image" in p}
    if clicked:
        return [r for r, p in enumerate(paths) if p in clicked]
    bounds = selection.get("box") or {}
    if "x" not in bounds or "y" not in bounds:
        return []
    (x0, x1), (y0, y1) = sorted(bounds["x"]), sorted(bounds["y"])
    inside = (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)  # (M,)
    return [int(r) for r in inside.nonzero()[0]]


def index_facts(loaded: LoadedIndex) -> dict[str, str]:
    """What an index is: size, folder, key, encoder, training run, when built."""
    m = loaded.manifest
    enc = m.encoder.get("config", {})
    enc = enc if isinstance(enc, dict) else {}
    training = enc.get("training", {}) if isinstance(enc.get("training"), dict) else {}
    return {
        "Images": f"{m.count:,}",
        "Collection folder": m.data_root,
        "Index": f"{m.index_key} ({m.metric}, dim {m.dim})",
        "Search parameters": ", ".join(f"{k}={v}" for k, v in m.search_params.items()) or "none",
        "Built": m.created or "unknown",
        "Encoder method": enc.get("method") or training.get("method") or "unknown",
        "Backbone": f"{enc.get('backbone', '?')} at {enc.get('image_size', '?')} px",
        "Training run": m.encoder.get("path", "?"),
        "Encoder sha256": m.encoder.get("sha256", "?")[:16] + "…",
        "Skipped when indexing": str(m.skipped.get("total", 0)) if m.skipped else "0",
        "Index folder": str(loaded.directory),
    }


def spread_paths(loaded: LoadedIndex, n: int) -> list[str]:
    """n indexed paths evenly spread over the collection's order, to start searching from."""
    items = loaded.manifest.items
    return [items[i].path for i in np.linspace(0, len(items) - 1, min(n, len(items))).astype(int)]


def mosaic_png(loaded: LoadedIndex, xy: np.ndarray, cols: int, rows: int, px: int) -> bytes:
    """The map xy (M, 2) as cols x rows tiles of px pixels: in each cell, the thumbnail of the
    image nearest the cell's centre (`map_cells`); cells without an image (or whose image cannot
    be opened) stay empty. Row 0 of the map is drawn at the bottom, as on a plot."""
    canvas = Image.new("RGB", (cols * px, rows * px), (245, 245, 245))
    for (c, r), row in map_cells(xy, cols, rows).items():
        try:
            img = thumb_image(loaded, loaded.manifest.items[row].path, px)
        except (IndexLoadError, UnreadableImage):
            continue
        canvas.paste(img, (c * px + (px - img.width) // 2, (rows - 1 - r) * px + (px - img.height) // 2))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


def map_chart(xy: np.ndarray, labels: np.ndarray, paths: list[str], axis: str, k: int) -> alt.Chart:
    """Scatter of the map xy (M, 2) coloured by cluster label (M,), each point named by its path,
    with a click selection named "pick" (by image) and a dragged-box selection named "box"."""
    df = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "cluster": labels.astype(int), "image": paths})
    pick = alt.selection_point(name="pick", fields=["image"], on="click")
    box = alt.selection_interval(name="box", encodings=["x", "y"])
    return (alt.Chart(df).mark_circle(size=18, opacity=0.75)
            .encode(x=alt.X("x", title=f"{axis} 1"), y=alt.Y("y", title=f"{axis} 2"),
                    color=alt.Color("cluster:N", title=f"cluster (K={k})", sort=list(range(k)),
                                    scale=alt.Scale(scheme="category20")), tooltip=["image", "cluster"])
            .add_params(pick, box).properties(height=520))
