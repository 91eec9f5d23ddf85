"""Map page: the collection laid out in 2-D (similar photos near each other), coloured by cluster,
as points (click or drag a box to list photos) or as a mosaic of clickable tiles.

PCA is computed at once; t-SNE and UMAP take a while, so they are computed in a background thread
(one per index and method, whoever asked first) while the page shows PCA and how long it has run.
Run by app.py's navigation."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import streamlit as st

from index.gallery import picked_rows
from index.projection import available_methods, cached_projection, map_cells, saved_projection
from ui import data, viewer
from ui.charts import map_chart
from ui.clusters import choose
from ui.grid import Cell, mosaic_html, show_grid, show_html

MOSAIC = (16, 10, 72)  # columns, rows, tile pixels of the map's thumbnail mosaic
PAGE_SIZE = 24
NAMES = {"pca": "Quick (PCA)", "tsne": "Neighbourhoods (t-SNE)", "umap": "Neighbourhoods (UMAP)"}


@dataclass
class Job:
    started: float = field(default_factory=time.monotonic)
    done: bool = False
    error: str | None = None


@st.cache_resource
def jobs() -> tuple[dict, threading.Lock]:
    """Background projections of this server process: {(index_dir, stamp, method): Job}."""
    return {}, threading.Lock()


def background(ix: data.Ix, method: str) -> Job:
    """The job computing (and saving beside the index) this projection; started if none is."""
    running, lock = jobs()
    with lock:
        job = running.get((*ix, method))
        if job is None or job.error:
            job = running[(*ix, method)] = Job()
            x = data.get_index(*ix).embeddings

            def work():
                try:
                    cached_projection(ix[0], x, method)
                except Exception as e:  # shown on the page, which falls back to PCA
                    job.error = f"{type(e).__name__}: {e}"
                job.done = True
            threading.Thread(target=work, name=f"projection-{method}", daemon=True).start()
    return job


@st.cache_data(show_spinner=False, max_entries=8)
def ready(index_dir: str, stamp: int, method: str):
    """The saved projection, or None (not cached while missing: `st.cache_data` would keep the None)."""
    xy = saved_projection(index_dir, data.get_index(index_dir, stamp).embeddings, method)
    if xy is None:
        raise LookupError(method)
    return xy


def projection(ix: data.Ix, method: str):
    """(xy, method shown): the asked projection if it is ready, else PCA and a line on its progress."""
    if method == "pca":
        return data.projection(*ix, "pca"), "pca"
    try:
        return ready(*ix, method), method
    except LookupError:
        pass
    progress(ix, method, background(ix, method))
    return data.projection(*ix, "pca"), "pca"


@st.fragment(run_every=1.0)
def progress(ix: data.Ix, method: str, job: Job) -> None:
    """Seconds so far, every second; the whole page redraws when the projection is saved."""
    if job.error:
        st.warning(f"{NAMES[method]} could not be computed ({job.error}); showing the quick map.")
        return
    if job.done:
        st.rerun()
    n = len(data.get_index(*ix).embeddings)
    st.info(f"Arranging {n:,} photos by {NAMES[method]} in the background: {time.monotonic() - job.started:.0f} s "
            f"so far (once per index; it is saved beside it). The quick map is shown meanwhile.", icon="⏳")


def points(ix: data.Ix, xy, labels, paths: list[str], method: str, k: int, unsorted) -> None:
    event = st.altair_chart(map_chart(xy, labels, paths, method, k, unsorted), on_select="rerun", key="map_chart",
                            width="stretch")
    st.caption("Each dot is a photo; hover one for its name. Click a dot, or drag a box, to see the photos. "
               "Faded dots fit no cluster well (Unsorted on the Clusters page): coloured by the nearest.")
    picked = picked_rows(event.selection, xy, paths) if event else []
    if picked:
        st.markdown(f"**{len(picked)} selected**" + (f" · showing {PAGE_SIZE}" if len(picked) > PAGE_SIZE else ""))
        shown = picked[:PAGE_SIZE]
        show_grid([paths[r] for r in shown], "picked", data.thumbs(ix), [Cell(f"cluster {labels[r]}") for r in shown])


def mosaic(ix: data.Ix, xy, paths: list[str]) -> None:
    cols, rows, px = MOSAIC
    tiles = {cell: paths[r] for cell, r in map_cells(xy, cols, rows).items()}
    show_html(mosaic_html(tiles, cols, rows, data.thumbs(ix, px)), "mosaic")
    st.caption(f"The same map as a {cols}x{rows} grid: in each cell, the photo nearest its centre (empty cells: "
               "no photo there). Click a tile to see it large.")


def main() -> None:
    ix, loaded = data.opened()
    st.header("Map of the collection")
    left, right = st.columns([3, 2])
    method = left.radio("Layout", available_methods(), horizontal=True, key="projection", format_func=NAMES.get,
                        help="Quick: the two main directions in which the photos differ. Neighbourhoods: "
                             "placed so that similar photos sit together (computed once per index).")
    with right:
        res, _ = choose(ix, len(loaded.embeddings), "Colour by clusters", "k_map")
    xy, shown = projection(ix, method)
    paths = [it.path for it in loaded.manifest.items]
    chart_tab, mosaic_tab = st.tabs(["Points", "Thumbnail mosaic"])
    with chart_tab:
        points(ix, xy, res.clustering.labels, paths, shown, res.k, res.unsorted)
    with mosaic_tab:
        mosaic(ix, xy, paths)
    viewer.open_asked(ix)


if __name__ == "__main__":
    main()
