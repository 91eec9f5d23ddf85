"""The sidebar below the page list: which index is open. Locally, a dropdown of the index folders
under indexes/ and beside the command line's (and "Other folder…" for any other); on a shared
page, the one index it serves.

    open_index(settings) -> (ix, loaded index), or None after saying why it cannot be opened
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from index.store import MANIFEST, IndexLoadError
from ui import data, state
from ui.grid import markdown_literal as plain

INDEXES = Path("indexes")  # where `make demo` and the docs put index folders
OTHER = "Other folder…"


def index_folders(launch_index: str) -> list[str]:
    """The command line's index, then the index folders (those holding a manifest) under indexes/
    and beside the command line's."""
    found = [str(p.parent) for folder in (INDEXES, Path(launch_index).parent)
             for p in sorted(folder.glob(f"*/{MANIFEST}"))]
    return list(dict.fromkeys([launch_index, *found]))


def picked() -> None:
    choice = st.session_state.index_choice
    st.session_state.index_typing = choice == OTHER
    if choice != OTHER:
        state.choose_index(choice)


def typed() -> None:
    text = st.session_state.index_other.strip()
    if text:
        state.choose_index(str(Path(text).expanduser()))


def chooser(settings: state.Launch, index_dir: str) -> None:
    folders = index_folders(settings.index)
    ss = st.session_state
    ss.index_choice = OTHER if ss.get("index_typing") or index_dir not in folders else index_dir
    st.selectbox("Index", [*folders, OTHER], key="index_choice", on_change=picked,
                 help="Index folders written by `python -m pipelines.build_index` (those under indexes/ are listed)")
    if ss.index_choice == OTHER:
        ss.setdefault("index_other", "" if index_dir in folders else index_dir)
        st.text_input("Index folder", key="index_other", on_change=typed, placeholder="/path/to/INDEX_DIR")


def open_index(settings: state.Launch):
    index_dir = state.open_index_dir(settings)
    with st.sidebar:
        if settings.share:
            st.caption(f"Shared page: it serves the index **{plain(Path(index_dir).name)}** only.")
        else:
            chooser(settings, index_dir)
    refused = st.session_state.pop("refused", None)
    if refused:
        st.error(f"This page is shared: it serves only its own index, so the folder “{plain(refused)}” asked "
                 "for in the address was not opened.")
    ix = data.ix_of(index_dir)
    try:
        loaded = data.get_index(*ix)
    except IndexLoadError as e:
        st.error(f"Cannot open the index: {e}")
        st.markdown("Build the sample collection's index with `make demo`, or index your own images with "
                    "`python -m pipelines.build_index --data DIR --encoder RUN_DIR --out INDEX_DIR`, "
                    "then open it with `streamlit run app.py -- --index INDEX_DIR`.")
        return None
    st.sidebar.caption(f"{loaded.manifest.count:,} photos · {plain(loaded.manifest.data_root)}")
    seen = st.session_state.get("seen_build")  # (folder, build, photos) this session last showed
    if seen and seen[0] == index_dir and seen[1] != loaded.build_id:
        st.toast(f"The index was updated while you were here: {loaded.manifest.count:,} photos (was "
                 f"{seen[2]:,}). Results below come from the new one.", icon=":material/update:")
    st.session_state.seen_build = (index_dir, loaded.build_id, loaded.manifest.count)
    return ix, loaded
