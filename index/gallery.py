"""What the search page shows, computed without Streamlit or HTML (ui/ draws it).

    thumb_image(loaded, path, size)        -> an indexed image as a thumbnail (only manifest paths)
    photo_facts(loaded, path)              -> PhotoFacts: full path, pixel size, file size, date taken (EXIF)
    matching_paths(loaded, text)           -> every indexed path containing `text` (an exact path alone)
    picked_rows(selection, xy, paths)      -> rows picked on the map (clicked points or a box)
    index_facts(loaded)                    -> ({plain field: value}, {technical field: value}) about an index
    spread_paths(loaded, n)                -> n indexed paths spread over the collection
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from encoders.imagefolder import UnreadableImage, open_rgb, thumbnail
from index.store import LoadedIndex

EXIF_IFD, DATE_TAKEN, DATE_CHANGED, ORIENTATION = 0x8769, 36867, 306, 0x0112  # EXIF tags


def thumb_image(loaded: LoadedIndex, path: str, size: int) -> Image.Image:
    """An indexed image fitted in size x size. Only manifest paths inside the data root are
    opened (`LoadedIndex.image_file`); raises IndexLoadError or UnreadableImage."""
    return thumbnail(open_rgb(loaded.image_file(path), draft_size=size), size)


@dataclass
class PhotoFacts:
    path: Path  # the file on disk
    width: int  # as shown (EXIF orientation applied)
    height: int
    bytes: int
    taken: str | None  # EXIF DateTimeOriginal (else DateTime), "YYYY-MM-DD HH:MM:SS"; None if absent


def photo_facts(loaded: LoadedIndex, path: str) -> PhotoFacts:
    """What a viewer says about an indexed image, read from its header (the pixels are not decoded).
    Raises IndexLoadError (not in the index) or UnreadableImage (cannot be read now)."""
    f = loaded.image_file(path)
    try:
        size = os.stat(f).st_size
        with Image.open(f) as im:
            exif = im.getexif()
            w, h = im.size
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise UnreadableImage("cannot be read", str(e)) from None
    if exif.get(ORIENTATION) in (5, 6, 7, 8):  # turned a quarter: shown with width and height swapped
        w, h = h, w
    taken = exif.get_ifd(EXIF_IFD).get(DATE_TAKEN) or exif.get(DATE_CHANGED)
    if isinstance(taken, bytes):
        taken = taken.decode("ascii", "replace")
    taken = taken.strip("\x00 ") if isinstance(taken, str) else None
    if taken and len(taken) >= 10 and taken[4] == ":" and taken[7] == ":":  # EXIF writes 2024:05:01 12:00:00
        taken = taken[:4] + "-" + taken[5:7] + "-" + taken[8:]
    return PhotoFacts(f, w, h, size, taken or None)


def matching_paths(loaded: LoadedIndex, text: str) -> list[str]:
    """Indexed paths containing `text` (any case), in index order; an exact indexed path alone."""
    text = text.strip()
    if not text:
        return []
    found = loaded.find_paths(text, limit=1)
    if found == [text]:
        return found
    low = text.lower()
    return [it.path for it in loaded.manifest.items if low in it.path.lower()]


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


INDEX_KINDS = {"Flat": "exact: every photo is compared with the query",
               "IVF": "approximate: only the groups of photos nearest the query are compared",
               "HNSW": "approximate: a graph of near neighbours is walked"}


def index_facts(loaded: LoadedIndex) -> tuple[dict[str, str], dict[str, str]]:
    """What an index is, in plain words (photos, folder, how search works, encoder, when built),
    then the technical details (index key, metric, hashes, paths)."""
    m = loaded.manifest
    enc = m.encoder.get("config", {})
    enc = enc if isinstance(enc, dict) else {}
    training = enc.get("training", {}) if isinstance(enc.get("training"), dict) else {}
    kind = next((v for k, v in INDEX_KINDS.items() if m.index_key.startswith(k)), m.index_key)
    skipped = int(m.skipped.get("total", 0)) if m.skipped else 0
    plain = {
        "Photos": f"{m.count:,}",
        "Photo folder": m.data_root,
        "Search": kind,
        "Each photo is described by": f"{m.dim} numbers, learned from this collection without labels",
        "Learning method": enc.get("method") or training.get("method") or "unknown",
        "Built": m.created or "unknown",
        "Files left out when indexing": f"{skipped:,} (not readable as images)" if skipped else "none",
    }
    technical = {
        "Index": f"{m.index_key} ({m.metric}, dim {m.dim})",
        "Search parameters": ", ".join(f"{k}={v}" for k, v in m.search_params.items()) or "none",
        "Backbone": f"{enc.get('backbone', '?')} at {enc.get('image_size', '?')} px",
        "Training run": m.encoder.get("path", "?"),
        "Encoder sha256": m.encoder.get("sha256", "?")[:16] + "…",
        "Index folder": str(loaded.directory),
    }
    return plain, technical


def spread_paths(loaded: LoadedIndex, n: int) -> list[str]:
    """n indexed paths evenly spread over the collection's order, to start searching from."""
    items = loaded.manifest.items
    return [items[i].path for i in np.linspace(0, len(items) - 1, min(n, len(items))).astype(int)]
