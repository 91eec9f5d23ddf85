"""Clusters page: how many groups and why, their sizes, each group's most central photos, and one
group browsed page by page. Run by app.py's navigation."""
from __future__ import annotations

import numpy as np
import streamlit as st

from index.cluster_report import cut_choice, describe
from index.clusters import ClusterResult
from index.exports import clusters_csv
from ui import data, viewer
from ui.charts import colours, sizes_chart
from ui.grid import Cell, show_grid

CENTRAL = 5  # most central photos shown per cluster
PAGE_SIZE = 24
UNSORTED = -1  # the browse choice of the unsorted photos


def summary(res: ClusterResult, automatic: bool) -> tuple[str, str]:
    """(headline, detail) in plain words; the clusterer's own sentence goes in a tooltip."""
    q = res.quality
    if not automatic:
        how = "as chosen"
    elif res.k_by == "hand":
        how = "as set when the index was clustered (`pipelines.cluster -k`)"
    elif res.k_by == "finer scale":
        how = ("found automatically: the split that comes back most alike when it is made again with some of the "
               "links between similar photos left out")
    else:
        how = "found automatically: the split that keeps each photo's most similar photos in its own group best"
    detail = (f"On average {q.overall_cohesion:.0%} of a photo's {res.settings.neighbours} most similar photos "
              f"are in its own group")
    if q.stability is not None:
        same = "nearly the same" if q.stability >= 0.8 else "similar" if q.stability >= 0.5 else "rather different"
        detail += (f"; grouping again from another random start, with a tenth of the links between similar photos "
                   f"left out, gives {same} groups ({q.stability:.2f} of 1)")
    if cut_choice(res) == "vote":
        detail += (f". Of four ways to group the photos, the {res.made_by} groups agree most with the others, "
                   "so they are shown")
    elif cut_choice(res):
        detail += f". Of the two ways to cut the links, the {res.made_by} cut leaves fewer of them cut, so it is shown"
    n = int(res.unsorted.sum())
    if n:
        detail += (f". {n:,} photos fit no group well (fewer than {res.settings.unsorted_below:.0%} of their most "
                   "similar photos share their group): they are left out of the groups below and listed as Unsorted")
    return f"**{res.k} groups**, {how}.", detail + "."


def choose(ix: data.Ix, m: int, label: str, key: str) -> tuple[ClusterResult, bool]:
    choice = st.selectbox(label, ["automatic", *range(2, min(50, m) + 1)], key=key)
    return data.clusters_for(ix, choice), choice == "automatic"


def heading(j: int, size: int, cohesion: float) -> str:
    swatch = f'<span style="color:{colours(j + 1)[j]};font-size:1.1em">●</span>'
    return f"{swatch} **Cluster {j}** · {size:,} photos · {cohesion:.0%} of their neighbours in the group"


def central(ix: data.Ix, res: ClusterResult, paths: list[str]) -> None:
    """Each cluster's most central photos, two clusters a row, each in its own box."""
    c, sizes = res.clustering, res.sorted_sizes
    groups = [res.sorted_members(j)[:CENTRAL] for j in range(res.k)]
    for start in range(0, len(groups), 2):
        for j, col in zip(range(start, min(start + 2, len(groups))), st.columns(2, gap="medium")):
            with col.container(border=True, key=f"cluster-{j}"):
                st.markdown(heading(j, int(sizes[j]), float(res.quality.cohesion[j])), unsafe_allow_html=True)
                rows = groups[j].tolist()
                show_grid([paths[r] for r in rows], f"central-{j}", data.thumbs(ix),
                          [Cell(f"{c.scores[r]:.3f}") for r in rows], columns=CENTRAL)


def browse(ix: data.Ix, res: ClusterResult, paths: list[str]) -> None:
    c, sizes, n_unsorted = res.clustering, res.sorted_sizes, int(res.unsorted.sum())
    j = st.selectbox("Cluster", [*range(res.k), *([UNSORTED] if n_unsorted else [])], key="browse_cluster",
                     format_func=lambda j: f"Unsorted ({n_unsorted:,} photos)" if j == UNSORTED
                     else f"{j} ({sizes[j]:,} photos)")
    if j == UNSORTED:
        rows = np.flatnonzero(res.unsorted).tolist()
        st.caption("Photos whose most similar photos are mostly in other groups. Each still has its nearest "
                   "group in the download: shown under the photo.")
        cells = [Cell(f"cluster {c.labels[r]} · {c.scores[r]:.3f}") for r in rows]
    else:
        rows = res.sorted_members(j).tolist()
        cells = [Cell(f"{c.scores[r]:.3f}") for r in rows]
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    page = st.pagination(pages, key=f"browse_page_{res.k}_{j}") if pages > 1 else 1
    start = (page - 1) * PAGE_SIZE
    shown = rows[start: start + PAGE_SIZE]
    show_grid([paths[r] for r in shown], "member", data.thumbs(ix), cells[start: start + PAGE_SIZE])


def main() -> None:
    ix, loaded = data.opened()
    st.header("Clusters")
    res, automatic = choose(ix, len(loaded.embeddings), "Number of clusters", "k_clusters")
    headline, detail = summary(res, automatic)
    st.markdown(headline, help=describe(res))
    st.caption(detail)
    c, paths = res.clustering, [it.path for it in loaded.manifest.items]
    st.download_button(f"Download the {res.k} clusters (CSV: path, cluster, score)",
                       lambda: clusters_csv(paths, c.labels, c.scores), file_name=f"clusters_k{res.k}.csv",
                       mime="text/csv", key="download_clusters", on_click="ignore")
    st.subheader("Cluster sizes")
    st.altair_chart(sizes_chart(res.sorted_sizes), width="stretch")
    st.subheader("Most central photos of each cluster")
    st.caption("Score: how close a photo is to the centre of its cluster (cosine, 1 = at the centre).")
    central(ix, res, paths)
    st.subheader("Browse one cluster")
    browse(ix, res, paths)
    viewer.open_asked(ix)


if __name__ == "__main__":
    main()
