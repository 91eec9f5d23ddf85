"""What the pages show, loaded once: the index and encoder per process (`st.cache_resource`),
the rest per argument (`st.cache_data`). `ix` = (index folder, build stamp): a rebuilt index
(new manifest) is a new key, so nothing stale is served."""
from __future__ import annotations

import streamlit as st

from index.cluster_report import read_saved, saved_result
from index.clusters import ClusterSettings, cluster_collection
from index.duplicates import detect_duplicates, saved_rule, suggest_threshold
from index.gallery import thumb_image
from index.graph import knn_graph
from index.projection import cached_projection
from index.query import load_query_encoder, one_thread_per_query, strong_match_threshold
from index.store import build_stamp, load_index
from ui.grid import jpeg_data_uri

THUMB_PX = 160
MAX_PAIRS = 2_000_000  # near-duplicate pairs held at once; a lower threshold is refused

Ix = tuple[str, int]


def ix_of(index_dir: str) -> Ix:
    return index_dir, build_stamp(index_dir)


def opened():
    """(ix, loaded index) of this session's index (app.py has opened it before any page runs)."""
    ix = ix_of(st.session_state.index_dir)
    return ix, get_index(*ix)


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
    return jpeg_data_uri(thumb_image(get_index(index_dir, stamp), path, size))


def thumbs(ix: Ix, size: int = THUMB_PX):
    """path -> data URI of its thumbnail, for the grids."""
    return lambda path: thumb_uri(*ix, path, size)


@st.cache_data(show_spinner="Grouping the collection…", max_entries=16)
def clusters(index_dir: str, stamp: int, k: int | None, _settings: ClusterSettings, settings_key: str):
    x = get_index(index_dir, stamp).embeddings
    return cluster_collection(x, k, _settings, neighbour_graph(index_dir, stamp, _settings.neighbours), store=index_dir)


@st.cache_data(show_spinner=False, max_entries=4)
def saved_clusters(index_dir: str, stamp: int):
    loaded = get_index(index_dir, stamp)
    return saved_result(index_dir, [it.path for it in loaded.manifest.items], loaded.embeddings, build=loaded.build_id)


def clusters_for(ix: Ix, choice):
    """The groups for a K choice: "automatic" is what `pipelines.cluster` saved beside the index
    (read, not recomputed), else as many groups as the neighbour graph supports (same settings)."""
    res = saved_clusters(*ix) if choice == "automatic" else None
    if res is None:
        saved = read_saved(ix[0])
        settings = ClusterSettings() if saved is None else saved["settings"]
        res = clusters(*ix, None if choice == "automatic" else int(choice), settings, repr(settings))
    return res


@st.cache_resource(show_spinner="Linking every image to its nearest neighbours…", max_entries=4)
def neighbour_graph(index_dir: str, stamp: int, neighbours: int):
    return knn_graph(get_index(index_dir, stamp).embeddings, neighbours)


@st.cache_data(show_spinner="Projecting…", max_entries=8)
def projection(index_dir: str, stamp: int, method: str):
    return cached_projection(index_dir, get_index(index_dir, stamp).embeddings, method)


@st.cache_data(show_spinner="Finding duplicates (perceptual hashes are computed once per image)…", max_entries=16)
def duplicates(index_dir: str, stamp: int, threshold: float, rule: dict | None):
    """Groups with keepers: cosine >= threshold, or the saved rule's pHash match, where its pairs stand
    apart (`rule`: saved_rule)."""
    hashed = rule is not None and rule["hamming"] is not None
    return detect_duplicates(get_index(index_dir, stamp), threshold, rule["hamming"] if hashed else None,
                             min(rule["hash_floor"], threshold) if hashed else -1.0,
                             rule["hash_kinds"] if hashed else ("plain",), max_pairs=MAX_PAIRS,
                             crowding=rule["crowding"] if hashed else None)


@st.cache_data(show_spinner=False, max_entries=4)
def duplicate_rule(index_dir: str, stamp: int, rule_stamp: int) -> tuple[float, dict | None]:
    """(starting threshold, the rule `pipelines.duplicates` calibrated for this build, or None);
    `rule_stamp` (saved_rule_stamp) changes when a new rule is saved."""
    rule = saved_rule(index_dir, get_index(index_dir, stamp).manifest.created)
    if rule is not None:
        return round(rule["threshold"], 3), rule
    return round(max(0.5, suggest_threshold(get_index(index_dir, stamp).embeddings)), 3), None


@st.cache_data(show_spinner=False, max_entries=4)
def strong_threshold(index_dir: str, stamp: int) -> tuple[float, str]:
    """The score below which a result is a weak match on this collection, and why (index.query)."""
    return strong_match_threshold(get_index(index_dir, stamp))
