"""Image search in the browser: `streamlit run app.py [-- --index INDEX_DIR]` (default: indexes/demo).

Search by example, clusters, a 2-D map, duplicates, about. This file only draws; what it shows is
computed in index/ (gallery.py: thumbnails, grids, map selections) and encoders/. The index and
encoder load once per process (`st.cache_resource`); the rest is cached with `st.cache_data`.
"""
from __future__ import annotations

import argparse
import html
import sys
import time
from pathlib import Path
from typing import Callable

import pandas as pd
import streamlit as st

from encoders.copies import read_report, report_rows
from encoders.imagefolder import UnreadableImage, thumbnail
from encoders.store import EncoderLoadError
from index.clusters import (
    ClusterSettings,
    central_rows,
    cluster_collection,
    describe,
    members,
    read_saved,
    saved_result,
)
from index.duplicates import (
    TooManyPairs,
    detect_duplicates,
    near_groups_best_first,
    saved_rule,
    saved_rule_stamp,
    suggest_threshold,
)
from index.exports import clusters_csv, duplicates_csv, move_plan_json, named_duplicates
from index.gallery import grid_html, index_facts, jpeg_data_uri, map_chart, picked_rows, spread_paths, thumb_data_uri
from index.gallery import markdown_literal as plain
from index.gallery import mosaic_png as draw_mosaic
from index.graph import knn_graph
from index.projection import LABELS, available_methods, cached_projection
from index.query import decode_upload, load_query_encoder, one_thread_per_query, search_images, search_indexed
from index.store import IndexLoadError, build_stamp, load_index

DEFAULT_INDEX = Path("indexes") / "demo"  # under the folder the page is started from (the repository root)
MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # also server.maxUploadSize in .streamlit/config.toml
THUMB_PX = 160
COLUMNS = 6
PAGE_SIZE = 24
MOSAIC = (16, 10, 72)  # columns, rows, tile pixels of the map's thumbnail mosaic
MAX_PAIRS = 2_000_000  # near-duplicate pairs held at once; a lower threshold is refused


@st.cache_resource(show_spinner="Loading the index…", max_entries=4)
def get_index(index_dir: str, stamp: int):
    # CPU index: FAISS CPU indexes are safe to search from many session threads at once
    return load_index(index_dir, use_gpu=False)


@st.cache_resource(show_spinner="Loading the encoder…", max_entries=4)
def get_encoder(index_dir: str, stamp: int):
    """The index's encoder (refused unless hash and preprocessing are the recorded ones), one thread per query."""
    one_thread_per_query()
    return load_query_encoder(get_index(index_dir, stamp).manifest, "cpu")


@st.cache_data(show_spinner=False, max_entries=20_000)
def thumb_uri(index_dir: str, stamp: int, path: str, size: int = THUMB_PX) -> str:
    return thumb_data_uri(get_index(index_dir, stamp), path, size)


@st.cache_data(show_spinner="Grouping the collection…", max_entries=16)
def clusters(index_dir: str, stamp: int, k: int | None, _settings: ClusterSettings, settings_key: str):
    x = get_index(index_dir, stamp).embeddings
    return cluster_collection(x, k, _settings, neighbour_graph(index_dir, stamp, _settings.neighbours))


@st.cache_data(show_spinner=False, max_entries=4)
def saved_clusters(index_dir: str, stamp: int):
    loaded = get_index(index_dir, stamp)
    return saved_result(index_dir, [it.path for it in loaded.manifest.items], loaded.embeddings)


@st.cache_resource(show_spinner="Linking every image to its nearest neighbours…", max_entries=4)
def neighbour_graph(index_dir: str, stamp: int, neighbours: int):
    return knn_graph(get_index(index_dir, stamp).embeddings, neighbours)


@st.cache_data(show_spinner="Projecting (once per index; t-SNE and UMAP take a while)…", max_entries=8)
def projection(index_dir: str, stamp: int, method: str):
    return cached_projection(index_dir, get_index(index_dir, stamp).embeddings, method)


@st.cache_data(show_spinner="Drawing the mosaic…", max_entries=8)
def mosaic_png(index_dir: str, stamp: int, method: str) -> bytes:
    return draw_mosaic(get_index(index_dir, stamp), projection(index_dir, stamp, method), *MOSAIC)


@st.cache_data(show_spinner="Finding duplicates (perceptual hashes are computed once per image)…", max_entries=16)
def duplicates(index_dir: str, stamp: int, threshold: float, rule: dict | None):
    """Groups with keepers: cosine >= threshold, or the saved rule's pHash match (`rule`: saved_rule)."""
    hashed = rule is not None and rule["hamming"] is not None
    return detect_duplicates(get_index(index_dir, stamp), threshold, rule["hamming"] if hashed else None,
                             min(rule["hash_floor"], threshold) if hashed else -1.0,
                             rule["hash_kinds"] if hashed else ("plain",), max_pairs=MAX_PAIRS)


@st.cache_data(show_spinner=False, max_entries=4)
def duplicate_rule(index_dir: str, stamp: int, rule_stamp: int) -> tuple[float, dict | None]:
    """(starting threshold, the rule `pipelines.duplicates` calibrated for this build, or None);
    `rule_stamp` (saved_rule_stamp) changes when a new rule is saved."""
    rule = saved_rule(index_dir, get_index(index_dir, stamp).manifest.created)
    if rule is not None:
        return round(rule["threshold"], 3), rule
    return round(max(0.5, suggest_threshold(get_index(index_dir, stamp).embeddings)), 3), None


def choose_clusters(ix: tuple[str, int], m: int, label: str, key: str, explain: bool = True):
    """The groups at the K of a select box; "automatic": the clustering `pipelines.cluster` saved beside the
    index (read, not recomputed), else as many groups as the neighbour graph supports (the same settings)."""
    choice = st.selectbox(label, ["automatic", *range(2, min(50, m) + 1)], key=key)
    res = saved_clusters(*ix) if choice == "automatic" else None
    if res is None:
        saved = read_saved(ix[0])
        settings = ClusterSettings() if saved is None else saved["settings"]
        res = clusters(*ix, None if choice == "automatic" else int(choice), settings, repr(settings))
    if explain:
        st.caption(describe(res))
    return res


def search_this(path: str) -> None:
    st.session_state.update(indexed_query=path, page="Search", name_query="")


def name_entered(loaded) -> None:
    """An exact indexed name typed in the name box is searched at once."""
    name = st.session_state.name_query.strip()
    if loaded.find_paths(name) == [name]:
        search_this(name)


def show_thumb(uri: Callable[[], str]) -> None:
    """One image, full column width, from `uri()` (a data URI); why not, if it cannot be shown."""
    try:
        st.markdown(f'<img src="{uri()}" style="width:100%;border-radius:4px" alt="">', unsafe_allow_html=True)
    except (IndexLoadError, UnreadableImage) as e:
        st.caption(f"(cannot show: {e})")


def groups_column(ix: tuple[str, int], title: str, note: str, empty: str, groups: list[tuple[str, list[str]]]):
    """A list of duplicate groups: for each, its heading and up to three thumbnails with names."""
    st.subheader(title)
    st.caption(note)
    if not groups:
        st.info(empty)
    for g, (heading, paths) in enumerate(groups):
        st.markdown(f"**Group {g + 1}** · {heading}")
        for col, path in zip(st.columns(3), paths):
            with col:
                show_thumb(lambda: thumb_uri(*ix, path))
                st.caption(plain(path))


def image_grid(ix: tuple[str, int], paths: list[str], key: str, captions: list[str] | None = None,
               searchable: bool = True) -> None:
    """Thumbnails with HTML captions as one element; when `searchable`, each links to a search for it."""
    with st.container(key=key):
        st.markdown(grid_html(paths, lambda p: thumb_uri(*ix, p), captions, COLUMNS, searchable),
                    unsafe_allow_html=True)


def show_result(ix: tuple[str, int], title: str, note: str, uri: Callable[[], str], hits, key: str, ms: float,
                back: bool = False) -> None:
    """A query (its image from `uri()`, its name, where it came from) and its neighbours."""
    left, right = st.columns([1, 5])
    with left:
        show_thumb(uri)
    right.subheader(f"Query: {plain(title)}")
    right.caption(note)
    if back:
        right.button("Back to uploads", key="clear-query", on_click=lambda: st.session_state.pop("indexed_query"))
    st.caption(f"{len(hits)} neighbours in {ms:.0f} ms · click an image to search it")
    image_grid(ix, [h.path for h in hits], key,
               [f"<b>{r + 1}.</b> {h.score:.3f} · {html.escape(h.path)}" for r, h in enumerate(hits)])


@st.fragment
def page_search(ix: tuple[str, int], loaded) -> None:
    """A fragment: an upload or a click reruns only this, not the whole page."""
    st.header("Search by example")
    k = st.slider("Neighbours (k)", 1, 48, 12, key="k")
    uploads = st.file_uploader("Drop one or several images to find similar ones in the collection",
                               accept_multiple_files=True, key="uploads",
                               on_change=lambda: st.session_state.pop("indexed_query", None))
    name = st.text_input("…or search an indexed image by name", key="name_query", on_change=name_entered,
                         args=(loaded,), placeholder="e.g. photos/astronaut.png or part of a name")
    if name:
        found = loaded.find_paths(name)
        if not found:
            st.info(f"No indexed image name contains “{plain(name)}”.")
        else:
            st.caption("Matching names (click one to search it):")
            for i, p in enumerate(found):
                st.button(p, key=f"name-{i}", on_click=search_this, args=(p,))

    query = st.session_state.get("indexed_query")
    if query is not None:
        show_indexed_query(ix, loaded, query, k)
    elif not uploads:
        st.info("Drop images above, or type a name, to search the collection, or start from one of these:")
        image_grid(ix, spread_paths(loaded, COLUMNS), "sample")
    else:
        show_upload_queries(ix, loaded, uploads, k)


def show_indexed_query(ix: tuple[str, int], loaded, query: str, k: int) -> None:
    """Neighbours of an already indexed image, from its stored vector."""
    t0 = time.perf_counter()
    try:
        hits = search_indexed(loaded, query, k)
    except IndexLoadError as e:
        st.error(str(e))
        return
    show_result(ix, query, "from the collection (its stored vector; itself left out)", lambda: thumb_uri(*ix, query),
                hits, "results-0", (time.perf_counter() - t0) * 1e3, back=True)


def show_upload_queries(ix: tuple[str, int], loaded, uploads, k: int) -> None:
    """Each upload decoded exactly as an indexed file, then its neighbours."""
    try:
        encoder = get_encoder(*ix)
    except EncoderLoadError as e:
        st.error(f"Upload search needs the index's encoder: {e}")
        return
    for qi, f in enumerate(uploads):
        st.divider()
        t0 = time.perf_counter()
        try:  # decoded exactly as an indexed file (index/query.py), in memory
            img = decode_upload(f.getvalue(), encoder.cfg, MAX_UPLOAD_BYTES)
        except UnreadableImage as e:
            st.container(key=f"upload-error-{qi}").error(f"{plain(f.name)}: cannot be searched ({e}).")
            continue
        hits = search_images(loaded, encoder, [img], k)[0]
        show_result(ix, f.name, "uploaded; decoded as the indexed files were",
                    lambda: jpeg_data_uri(thumbnail(img, THUMB_PX)), hits, f"results-{qi}",
                    (time.perf_counter() - t0) * 1e3)


def page_clusters(ix: tuple[str, int], loaded) -> None:
    st.header("Clusters")
    res = choose_clusters(ix, len(loaded.embeddings), "Number of clusters K", "k_clusters")
    k, c = res.k, res.clustering
    sizes = c.sizes
    paths = [it.path for it in loaded.manifest.items]
    st.download_button(f"Download the {k} clusters (CSV: path, cluster, score)",
                       lambda: clusters_csv(paths, c.labels, c.scores),
                       file_name=f"clusters_k{k}.csv", mime="text/csv", key="download_clusters", on_click="ignore")
    st.subheader("Cluster sizes")
    st.bar_chart(pd.DataFrame({"cluster": range(k), "images": sizes}), x="cluster", y="images", height=220)
    st.subheader("Most central images of each cluster")
    for j, rows in enumerate(central_rows(c, COLUMNS)):
        st.markdown(f"**Cluster {j}** · {sizes[j]} images · {res.quality.cohesion[j]:.0%} of their neighbours "
                    f"in the group")
        image_grid(ix, [paths[r] for r in rows], f"central-{j}",
                   [f"{c.scores[r]:.3f} · {html.escape(paths[r])}" for r in rows], searchable=False)
    st.subheader("Browse one cluster")
    left, right = st.columns(2)
    j = left.selectbox("Cluster", range(k), key="browse_cluster", format_func=lambda j: f"{j} ({sizes[j]} images)")
    members_j = members(c, j).tolist()
    pages = max(1, -(-len(members_j) // PAGE_SIZE))
    page = right.number_input(f"Page (of {pages})", 1, pages, 1, key=f"browse_page_{k}_{j}")
    shown = members_j[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
    image_grid(ix, [paths[r] for r in shown], "member",
               [f"{c.scores[r]:.3f} · {html.escape(paths[r])}" for r in shown])


def page_map(ix: tuple[str, int], loaded) -> None:
    st.header("Map of the collection")
    left, right = st.columns([3, 2])
    method = left.radio("Projection", available_methods(), horizontal=True, key="projection",
                        format_func=LABELS.get, help="Computed once per index and saved beside it")
    xy = projection(*ix, method)
    with right:
        res = choose_clusters(ix, len(xy), "Colour by clusters, K =", "k_map", explain=False)
    k, labels = res.k, res.clustering.labels
    paths = [it.path for it in loaded.manifest.items]
    chart_tab, mosaic_tab = st.tabs(["Points", "Thumbnail mosaic"])
    with chart_tab:
        event = st.altair_chart(map_chart(xy, labels, paths, LABELS[method], k), on_select="rerun", key="map_chart",
                                width="stretch")
        st.caption("Hover a point for its name and cluster; click a point, or drag a box, to list the images.")
        picked = picked_rows(event.selection, xy, paths) if event else []
        if picked:
            st.markdown(f"**{len(picked)} selected**" + (f" · showing {PAGE_SIZE}" if len(picked) > PAGE_SIZE else ""))
            image_grid(ix, [paths[r] for r in picked[:PAGE_SIZE]], "picked",
                       [f"cluster {labels[r]} · {html.escape(paths[r])}" for r in picked[:PAGE_SIZE]])
    with mosaic_tab:
        st.image(mosaic_png(*ix, method), width="stretch")
        st.caption(f"The same {LABELS[method]} map as a {MOSAIC[0]}x{MOSAIC[1]} grid: in each cell, the image nearest "
                   f"its centre (empty cells: no image there).")


def page_duplicates(ix: tuple[str, int], loaded) -> None:
    st.header("Duplicates")
    suggested, rule = duplicate_rule(*ix, saved_rule_stamp(ix[0]))
    if rule is not None:
        st.info(rule["sentence"][:1].upper() + rule["sentence"][1:] + ".")
        why = "calibrated on this collection by `pipelines.duplicates`"
    else:
        st.caption("Not calibrated yet: `python -m pipelines.duplicates --index INDEX_DIR` sets the threshold from "
                   "edited copies of this collection's own photos (and adds the perceptual hash).")
        why = "about 1% of this collection's images have a neighbour above it"
    threshold = st.slider("Near-duplicate threshold (cosine similarity)", 0.0, 1.0, min(1.0, max(0.0, suggested)),
                          0.001, format="%.3f", key="dup_threshold",
                          help=f"Starts at {suggested:.3f}: {why}. Raise it for fewer, closer pairs.")
    try:
        found = duplicates(*ix, round(threshold, 3), rule)
    except TooManyPairs as e:
        st.warning(str(e))
        return
    paths = [it.path for it in loaded.manifest.items]
    keep = found["keepers"]
    down, plan = st.columns(2)
    down.download_button("Download these groups (CSV: group, kind, path, score)", lambda: duplicates_csv(
                         named_duplicates(paths, [it.sha256 for it in loaded.manifest.items], found)),
                         file_name=f"duplicates_{threshold:.3f}.csv", mime="text/csv", key="download_duplicates",
                         on_click="ignore")
    plan.download_button(f"Download the move plan (JSON: {sum(len(g) - 1 for g in keep['groups'])} extras, "
                         f"keepers stay)", lambda: move_plan_json(paths, found, ix[0]),
                         file_name="duplicates_move_plan.json", mime="application/json", key="download_move_plan",
                         on_click="ignore", help="Nothing is moved from this page: `python -m pipelines.duplicates "
                                                 "--index INDEX_DIR --move-extras TARGET` moves the extras, "
                                                 "`--undo` puts them back.")
    exact, near = st.columns(2, gap="large")
    with exact:
        groups_column(ix, f"Exact ({len(found['exact'])} groups)", "Byte-identical files (same sha256).",
                      "No two indexed files have the same bytes.",
                      [(f"{len(rows)} files · keep {plain(paths[k])}", [paths[r] for r in rows[:3]])
                       for rows, k in list(zip(found["exact"], keep["exact"]))[:20]])
    with near:
        keeper_of = {tuple(g["rows"]): k for g, k in zip(found["near"], keep["near"])}
        how = f"cosine ≥ {threshold:.3f}" + (f" or pHash distance ≤ {rule['hamming']}" if rule and rule["hamming"]
                                             is not None else "")
        groups_column(ix, f"Near ({len(found['near'])} groups)",
                      f"Connected by pairs with {how} (byte-identical pairs listed as exact).",
                      "No pair of different files reaches this threshold.",
                      [(f"{len(g['rows'])} images · best pair {best:.3f} · "
                       f"keep {plain(paths[keeper_of[tuple(g['rows'])]])}",
                        [paths[r] for r in rows]) for g, best, rows in near_groups_best_first(found["near"])[:20]])
    if len(found["exact"]) > 20 or len(found["near"]) > 20:
        st.caption("Showing the first 20 groups of each kind (near: highest scores first); "
                   "`python -m pipelines.duplicates --index INDEX_DIR --json` lists them all.")


def page_about(ix: tuple[str, int], loaded) -> None:
    st.header("About this index")
    st.table(pd.DataFrame.from_dict(index_facts(loaded), orient="index", columns=["Value"]).rename_axis("Field"))
    report = read_report(loaded.manifest.encoder.get("path", ""))
    if report is not None:
        st.subheader("How good is the encoder? (no labels needed)")
        st.caption(f"Each of {report.get('images', '?')} photos of the collection was edited in memory: how often "
                   f"an edited copy finds its original first (recall@1), with this encoder and with raw pixels.")
        rows = report_rows(report)
        st.table(pd.DataFrame([[None if v is None else round(v, 3) for v in r] for r in rows.values()],
                              columns=["encoder", "raw pixels"], index=pd.Index(list(rows), name="recall@1")))
    training = (loaded.manifest.encoder.get("config") or {}).get("training")
    if training:
        with st.expander("Full training configuration"):
            st.json(training)


def main() -> None:
    st.set_page_config(page_title="Image search", layout="wide")
    if "index_dir" not in st.session_state:  # `streamlit run app.py -- --index DIR`
        p = argparse.ArgumentParser(add_help=False)
        p.add_argument("--index", default=str(DEFAULT_INDEX))
        st.session_state.index_dir = p.parse_known_args(sys.argv[1:])[0].index
    if st.query_params.get("query"):  # `?query=PATH`, a thumbnail's link: search that indexed image
        search_this(st.query_params.pop("query"))
    with st.sidebar:
        st.title("Image search")
        page = st.radio("Page", list(PAGES), key="page")
        index_dir = st.text_input("Index folder", key="index_dir",
                                  help="A folder written by `python -m pipelines.build_index`")
    index_dir = str(Path(index_dir).expanduser())
    ix = (index_dir, build_stamp(index_dir))
    try:
        loaded = get_index(*ix)
    except IndexLoadError as e:
        st.error(f"Cannot open the index: {e}")
        st.markdown("Build the sample collection's index with `make demo`, or index your own images with "
                    "`python -m pipelines.build_index --data DIR --encoder RUN_DIR --out INDEX_DIR`, "
                    "then open it with `streamlit run app.py -- --index INDEX_DIR`.")
        return
    st.sidebar.caption(f"{loaded.manifest.count:,} images · {loaded.manifest.index_key}")
    PAGES[page](ix, loaded)


PAGES = {"Search": page_search, "Clusters": page_clusters, "Map": page_map, "Duplicates": page_duplicates,
         "About": page_about}
main()
