"""Search page: drop photos, type a name, or start from a result; each query's neighbours, strong
matches first and a line where they turn weak (`index.query.strong_match_threshold`).

The body is a `st.fragment`: an upload or a click reruns only it. Run by app.py's navigation.
"""
from __future__ import annotations

import html
import time

import streamlit as st

from encoders.imagefolder import UnreadableImage, thumbnail
from encoders.store import EncoderLoadError
from index.duplicates import saved_rule_stamp
from index.gallery import matching_paths, spread_paths
from index.query import decode_upload, search_images, search_indexed
from index.store import IndexLoadError
from ui import data, state, viewer
from ui.grid import Cell, jpeg_data_uri, show_grid
from ui.grid import markdown_literal as plain

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # also server.maxUploadSize in .streamlit/config.toml
COLUMNS = 6
PAGE_SIZE = 24
DUPLICATE_BADGE = (' <span class="pg-badge" title="At or above the near-duplicate threshold calibrated on this '
                   'collection (Duplicates page)">duplicate</span>')


def name_entered(loaded) -> None:
    """An exact indexed name typed in the name box is searched at once."""
    name = st.session_state.name_query.strip()
    if loaded.find_paths(name) == [name]:
        state.search_this(name)


def show_thumb(uri) -> None:
    """One image, full column width, from `uri()` (a data URI); why not, if it cannot be shown."""
    try:
        st.markdown(f'<img src="{uri()}" style="width:100%;border-radius:4px" alt="">', unsafe_allow_html=True)
    except (IndexLoadError, UnreadableImage) as e:
        st.caption(f"(cannot show: {e})")


def result_cells(ix: data.Ix, hits, strong: float, why: str) -> tuple[list, list[Cell], tuple[int, str] | None]:
    """The hits shown (all, or the strong ones when "only strong matches" is on), their captions,
    and the line before the first weak one."""
    _, rule = data.duplicate_rule(*ix, saved_rule_stamp(ix[0]))
    copy = rule["threshold"] if rule is not None else None
    if st.session_state.strong_only:
        hits = [h for h in hits if h.score >= strong]
    cells = [Cell(f"<b>{r + 1}.</b> {h.score:.3f}"
                  + (DUPLICATE_BADGE if copy is not None and h.score >= copy else ""),
                  weak=h.score < strong) for r, h in enumerate(hits)]
    weak = next((r for r, h in enumerate(hits) if h.score < strong), None)
    if weak is None:
        return hits, cells, None
    text = (f"Weaker matches below: under {strong:.3f}, where {why}" if weak else
            f"No strong match: every result scores under {strong:.3f}, where {why}")
    return hits, cells, (weak, html.escape(text))


def show_result(ix: data.Ix, title: str, note: str, uri, hits, key: str, ms: float, back: bool = False) -> None:
    """A query (its image from `uri()`, its name, where it came from) and its neighbours."""
    left, right = st.columns([1, 5])
    with left:
        show_thumb(uri)
    right.subheader(f"Query: {plain(title)}")
    right.caption(note)
    if back and state.kept_uploads():
        right.button("Back to uploads", key="clear-query", on_click=state.clear_query)
    strong, why = data.strong_threshold(*ix)
    n_strong = sum(h.score >= strong for h in hits)
    shown, cells, divider = result_cells(ix, hits, strong, why)
    st.caption(f"{len(hits)} neighbours in {ms:.0f} ms · {n_strong} strong "
               f"{'match' if n_strong == 1 else 'matches'} · click a photo to see it large, "
               f"“similar” to search with it")
    show_grid([h.path for h in shown], key, data.thumbs(ix), cells, COLUMNS, divider=divider)


def show_indexed_query(ix: data.Ix, loaded, query: str, k: int) -> None:
    """Neighbours of an already indexed image, from its stored vector."""
    t0 = time.perf_counter()
    try:
        hits = search_indexed(loaded, query, k)
    except IndexLoadError as e:
        st.error(str(e))
        return
    show_result(ix, query, "from the collection (its stored vector; itself left out)",
                lambda: data.thumb_uri(*ix, query), hits, "results-0", (time.perf_counter() - t0) * 1e3, back=True)


def show_upload_queries(ix: data.Ix, loaded, uploads: list[tuple[str, bytes]], k: int) -> None:
    """Each upload decoded exactly as an indexed file, then its neighbours."""
    try:
        encoder = data.get_encoder(*ix)
    except EncoderLoadError as e:
        st.error(f"Upload search needs the index's encoder: {e}")
        return
    for qi, (name, raw) in enumerate(uploads):
        st.divider()
        t0 = time.perf_counter()
        try:  # decoded exactly as an indexed file (index/query.py), in memory
            img = decode_upload(raw, encoder.cfg, MAX_UPLOAD_BYTES)
        except UnreadableImage as e:
            st.container(key=f"upload-error-{qi}").error(f"{plain(name)}: cannot be searched ({e}).")
            continue
        hits = search_images(loaded, encoder, [img], k)[0]
        show_result(ix, name, "uploaded; decoded as the indexed files were",
                    lambda: jpeg_data_uri(thumbnail(img, data.THUMB_PX)), hits, f"results-{qi}",
                    (time.perf_counter() - t0) * 1e3)


def show_name_matches(ix: data.Ix, loaded, name: str) -> None:
    """Every indexed photo whose name contains `name`, as a grid, PAGE_SIZE at a time."""
    found = matching_paths(loaded, name)
    if not found:
        st.info(f"No indexed image name contains “{plain(name)}”.")
        return
    pages = -(-len(found) // PAGE_SIZE)
    st.caption(f"{len(found):,} {'photo has' if len(found) == 1 else 'photos have'} “{plain(name)}” in their "
               f"name" + (f", {PAGE_SIZE} a page" if pages > 1 else "") + " · click one to see it large, "
               "“similar” to search with it")
    page = st.pagination(pages, key=f"name_page_{name}") if pages > 1 else 1
    show_grid(found[(page - 1) * PAGE_SIZE: page * PAGE_SIZE], "names", data.thumbs(ix), columns=COLUMNS)


def kept_note(kept: list[tuple[str, bytes]]) -> None:
    """Uploads from before a visit to another page: still searched, and how to drop them."""
    if kept and not st.session_state.get("uploads"):
        left, right = st.columns([5, 1])
        left.caption(f"Searching the {len(kept)} {'photo' if len(kept) == 1 else 'photos'} dropped earlier: "
                     + ", ".join(plain(n) for n, _ in kept[:5]) + ("…" if len(kept) > 5 else ""))
        right.button("Clear them", key="clear-uploads", on_click=lambda: st.session_state.pop("kept_uploads"))


@st.fragment
def body(ix: data.Ix, loaded) -> None:
    ss = st.session_state
    ss.pop("to_search", None)  # already here
    if ss.pop("clear_name", False):
        ss.name_query = ""
    ss.setdefault("k", 12)
    ss.setdefault("strong_only", False)
    left, right = st.columns([3, 1], vertical_alignment="bottom", gap="large")
    k = left.slider("Neighbours (k)", 1, 48, key="k")
    right.toggle("Strong matches only", key="strong_only",
                 help="Hide the results that score under the line where matches turn weak on this collection")
    st.file_uploader("Drop one or several images to find similar ones in the collection",
                     accept_multiple_files=True, key="uploads", on_change=state.uploads_changed)
    name = st.text_input("…or search an indexed image by name", key="name_query", on_change=name_entered,
                         args=(loaded,), placeholder="e.g. photos/astronaut.png or part of a name")
    if name:
        show_name_matches(ix, loaded, name)
    query, kept = state.query(), state.kept_uploads()
    if query is not None:
        show_indexed_query(ix, loaded, query, k)
    elif kept:
        kept_note(kept)
        show_upload_queries(ix, loaded, kept, k)
    elif not name:
        st.info("Drop images above, or type a name, to search the collection, or start from one of these:")
        show_grid(spread_paths(loaded, 2 * COLUMNS), "sample", data.thumbs(ix), columns=COLUMNS)
    viewer.open_asked(ix)


def main() -> None:
    ix, loaded = data.opened()
    st.header("Search by example")
    body(ix, loaded)


if __name__ == "__main__":
    main()
