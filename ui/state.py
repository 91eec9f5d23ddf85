"""What a session keeps while exploring, and the settings of the command line.

    launch()            -> Launch: the index of `streamlit run app.py -- --index DIR`, and whether the
                           page is shared (`--share`, or a server address other machines can reach)
    open_index_dir()    -> the session's index folder: the command line's, or `?index=DIR` (refused
                           when shared), or the one chosen in the sidebar since
    query()             -> the indexed image searched (`?query=PATH`), or None
    search_this(path)   -> search an indexed image next (the query string changes, the browser's
                           Back returns to the previous query; no page load)
    clicked(key, act)   -> what a grid's click does: "open" the viewer, or "search" the image
    keep_widgets()      -> widget values (k, ...) kept while their page is not shown

The address carries the index (when not the command line's) and the query, so a reload or a
link opens the same view. Uploads are kept in the session (`kept_uploads`), not in the widget,
so they survive a visit to another page.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

DEFAULT_INDEX = Path("indexes") / "demo"  # under the folder the page is started from (the repository root)
LOCAL_ADDRESSES = ("127.0.0.1", "localhost", "::1")
KEPT = ("k", "strong_only")  # widget keys whose values outlive their page


@dataclass(frozen=True)
class Launch:
    index: str  # the command line's index folder
    share: bool  # shared: this index only; the sidebar cannot open another, `?index=` is refused


def local_only(address: str | None) -> bool:
    """Whether the server listens on this machine only (no address: every interface)."""
    return bool(address) and (address in LOCAL_ADDRESSES or address.startswith("127."))


def launch() -> Launch:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--index", default=str(DEFAULT_INDEX))
    p.add_argument("--share", action="store_true")
    args = p.parse_known_args(sys.argv[1:])[0]
    return Launch(args.index, args.share or not local_only(st.get_option("server.address")))


def open_index_dir(settings: Launch) -> str:
    """The index folder this run shows. `?index=DIR` opens DIR, except on a shared page, where
    any folder but the command line's is refused (`st.session_state.refused` says which)."""
    ss = st.session_state
    ss.setdefault("index_dir", settings.index)
    asked = st.query_params.get("index")
    if asked and asked != ss.index_dir:
        if settings.share and asked != settings.index:
            ss.refused = asked
            del st.query_params["index"]
        else:
            ss.index_dir = asked
    if settings.share:
        ss.index_dir = settings.index
    return ss.index_dir


def link_params() -> dict[str, str]:
    """The query string every link of the page carries besides its own: the index, when not the launch one."""
    index = st.session_state.get("index_dir")
    return {"index": index} if index and index != launch().index else {}


def choose_index(path: str) -> None:
    """Another index for this session (the sidebar): the query of the old one is dropped, the
    uploads and k are kept."""
    st.session_state.index_dir = path
    st.session_state.pop("viewing", None)
    st.query_params.clear()
    st.query_params.update(link_params())


def query() -> str | None:
    return st.query_params.get("query") or None


def search_this(path: str) -> None:
    """Search an indexed image next, on the Search page (`app.py` switches to it)."""
    st.query_params.update({**link_params(), "query": path})
    st.session_state.pop("viewing", None)
    st.session_state.clear_name = True  # the name box empties (ui/search.py) when the page draws it
    st.session_state.to_search = True


def clear_query() -> None:
    st.query_params.pop("query", None)


def clicked(key: str, act: str) -> None:
    """A grid's click (component `key`, trigger `act`): "open" the viewer or "search" the image."""
    path = (st.session_state.get(key) or {}).get(act)
    if not path:
        return
    if act == "open":
        st.session_state.viewing = path
    else:
        search_this(path)


def keep_widgets() -> None:
    """Widget values survive a page that does not draw them (Streamlit drops those otherwise)."""
    for key in KEPT:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def uploads_changed() -> None:
    """The uploader's files, kept in the session: they are searched until other files are dropped."""
    files = st.session_state.get("uploads") or []
    st.session_state.kept_uploads = [(f.name, f.getvalue()) for f in files]
    clear_query()


def kept_uploads() -> list[tuple[str, bytes]]:
    return st.session_state.get("kept_uploads", [])
