"""Duplicates page: the calibrated rule, exact and near groups with their keeper (outlined, first),
each group expandable to all its photos; downloads of the groups and of the move plan.
Run by app.py's navigation."""
from __future__ import annotations

import streamlit as st

from index.duplicates import TooManyPairs, near_groups_best_first, saved_rule_stamp
from index.exports import duplicates_csv, move_plan_json, named_duplicates
from ui import data, viewer
from ui.grid import Cell, show_grid
from ui.grid import markdown_literal as plain

SHOWN_GROUPS = 20
FIRST = 6  # photos of a group shown before "show all"
PAGE_SIZE = 48  # then this many at a time


def threshold_slider(ix: data.Ix) -> tuple[float, dict | None]:
    suggested, rule = data.duplicate_rule(*ix, saved_rule_stamp(ix[0]))
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
    return threshold, rule


def downloads(ix: data.Ix, loaded, found: dict, threshold: float) -> None:
    paths = [it.path for it in loaded.manifest.items]
    extras = sum(len(g) - 1 for g in found["keepers"]["groups"])
    down, plan = st.columns(2)
    down.download_button("Download these groups (CSV: group, kind, path, score)", lambda: duplicates_csv(
                         named_duplicates(paths, [it.sha256 for it in loaded.manifest.items], found)),
                         file_name=f"duplicates_{threshold:.3f}.csv", mime="text/csv", key="download_duplicates",
                         on_click="ignore")
    plan.download_button(f"Download the move plan (JSON: {extras} extras, keepers stay)",
                         lambda: move_plan_json(paths, found, ix[0]), file_name="duplicates_move_plan.json",
                         mime="application/json", key="download_move_plan", on_click="ignore",
                         help="Nothing is moved from this page: `python -m pipelines.duplicates --index INDEX_DIR "
                              "--move-extras TARGET` moves the extras, `--undo` puts them back.")


def group(ix: data.Ix, key: str, number: int, heading: str, rows: list[int], keep: int, paths: list[str],
          first: list[int] = ()) -> None:
    """One group in a box: its heading, the keeper first (outlined), then the rows `first` (the
    closest pairs), then the others; all of them behind "show all" when there are more than FIRST."""
    ordered = list(dict.fromkeys([keep, *first, *rows]))
    cells = [Cell('<span class="pg-badge">keep</span>' if r == keep else "", keep=r == keep) for r in ordered]
    with st.container(border=True, key=f"group-{key}"):
        st.markdown(f"**Group {number}** · {heading} · keep {plain(paths[keep])}")
        show_grid([paths[r] for r in ordered[:FIRST]], f"dup-{key}", data.thumbs(ix), cells[:FIRST])
        if len(ordered) > FIRST and st.toggle(f"Show all {len(ordered)} photos", key=f"all-{key}"):
            rest, rest_cells = ordered[FIRST:], cells[FIRST:]
            pages = -(-len(rest) // PAGE_SIZE)
            page = st.pagination(pages, key=f"page-{key}") if pages > 1 else 1
            shown = slice((page - 1) * PAGE_SIZE, page * PAGE_SIZE)
            show_grid([paths[r] for r in rest[shown]], f"dup-{key}-rest", data.thumbs(ix), rest_cells[shown])


def section(title: str, note: str, empty: str, groups: list) -> bool:
    """A kind of group's heading; a single line when it has none (no empty column)."""
    if not groups:
        st.caption(f"**{title}**: none. {empty}")
        return False
    st.subheader(f"{title} ({len(groups)} {'group' if len(groups) == 1 else 'groups'})")
    st.caption(note)
    return True


def groups(ix: data.Ix, loaded, found: dict, threshold: float, rule: dict | None) -> None:
    paths = [it.path for it in loaded.manifest.items]
    keep = found["keepers"]
    if section("Exact copies", "Byte-identical files (same sha256).", "No two indexed files have the same bytes.",
               found["exact"]):
        for g, (rows, k) in enumerate(list(zip(found["exact"], keep["exact"]))[:SHOWN_GROUPS]):
            group(ix, f"exact-{g}", g + 1, f"{len(rows)} files", rows, k, paths)
    how = f"cosine ≥ {threshold:.3f}" + (f" or pHash distance ≤ {rule['hamming']}" if rule and rule["hamming"]
                                         is not None else "")
    if section("Near duplicates", f"Connected by pairs with {how} (byte-identical pairs listed as exact); "
               "highest scores first.", "No pair of different files reaches this threshold.", found["near"]):
        keeper_of = {tuple(g["rows"]): k for g, k in zip(found["near"], keep["near"])}
        for g, (grp, best, closest) in enumerate(near_groups_best_first(found["near"], FIRST)[:SHOWN_GROUPS]):
            group(ix, f"near-{g}", g + 1, f"{len(grp['rows'])} photos · best pair {best:.3f}", grp["rows"],
                  keeper_of[tuple(grp["rows"])], paths, closest)
    if len(found["exact"]) > SHOWN_GROUPS or len(found["near"]) > SHOWN_GROUPS:
        st.caption(f"Showing the first {SHOWN_GROUPS} groups of each kind; "
                   "`python -m pipelines.duplicates --index INDEX_DIR --json` lists them all.")


def main() -> None:
    ix, loaded = data.opened()
    st.header("Duplicates")
    threshold, rule = threshold_slider(ix)
    try:
        found = data.duplicates(*ix, round(threshold, 3), rule)
    except TooManyPairs as e:
        st.warning(str(e))
        return
    downloads(ix, loaded, found, threshold)
    st.caption("The photo to keep in each group is outlined and shown first (most pixels, then the largest "
               "file, then the newest). Click a photo to see it large.")
    groups(ix, loaded, found, threshold, rule)
    viewer.open_asked(ix)


if __name__ == "__main__":
    main()
