"""Charts of the Clusters and Map pages (Altair): clusters in numeric order, one colour per
cluster from a 24-colour palette (then colour + shape), axes in plain words.

    sizes_chart(sizes)                         -> bar chart of cluster sizes
    map_chart(xy, labels, paths, method, k, unsorted) -> scatter, clickable ("pick") and boxable ("box"),
                                                   unsorted photos faded
"""
from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

# Kelly's colours of maximum contrast, most distinct first (white, and three too close to others on
# screen, replaced), then five more
PALETTE = ["#0067A5", "#F38400", "#008856", "#BE0032", "#875692", "#F3C300", "#A1CAF1", "#882D17", "#E68FAC",
           "#848482", "#8DB600", "#604E97", "#F99379", "#FFD8B1", "#C2B280", "#B3446C", "#4B0082", "#654522",
           "#E25822", "#00CC96", "#222222", "#17BECF", "#1B2A6B", "#C5B0D5"]
UNSORTED = "no (unsorted)"  # the map's name for photos that fit no group well
SHAPES = ["circle", "square", "triangle-up", "diamond", "cross", "triangle-down"]  # after each 24 clusters
AXES = {"pca": ("the biggest difference between the photos", "the next biggest difference"),
        "tsne": ("similar photos are placed near each other; the axes have no units", ""),
        "umap": ("similar photos are placed near each other; the axes have no units", "")}


def colours(k: int) -> list[str]:
    return [PALETTE[j % len(PALETTE)] for j in range(k)]


def shapes(k: int) -> list[str]:
    return [SHAPES[(j // len(PALETTE)) % len(SHAPES)] for j in range(k)]


def sizes_chart(sizes: np.ndarray) -> alt.Chart:
    """Images per cluster, clusters left to right in number order (0 is the largest)."""
    k = len(sizes)
    df = pd.DataFrame({"cluster": np.arange(k), "images": np.asarray(sizes, int)})
    scale = alt.Scale(domain=list(range(k)), range=colours(k))
    return (alt.Chart(df).mark_bar()
            .encode(x=alt.X("cluster:O", sort=list(range(k)), title="cluster", axis=alt.Axis(labelAngle=0)),
                    y=alt.Y("images:Q", title="photos"),
                    color=alt.Color("cluster:O", scale=scale, legend=None), tooltip=["cluster", "images"])
            .properties(height=220))


def map_chart(xy: np.ndarray, labels: np.ndarray, paths: list[str], method: str, k: int,
              unsorted: np.ndarray | None = None) -> alt.Chart:
    """Scatter of the map xy (M, 2) coloured by cluster label (M,), each point named by its path, the
    unsorted photos (bool (M,), index.clusters) faded in their nearest cluster's colour, with a click
    selection named "pick" (by image) and a dragged-box selection named "box"."""
    fits = np.where(np.zeros(len(paths), bool) if unsorted is None else unsorted, UNSORTED, "yes")
    df = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "cluster": labels.astype(int), "image": paths, "fits": fits})
    pick = alt.selection_point(name="pick", fields=["image"], on="click")
    box = alt.selection_interval(name="box", encodings=["x", "y"])
    order = list(range(k))
    legend = alt.Legend(title=f"cluster ({k})", columns=2 if k > 16 else 1, symbolLimit=0)
    x_title, y_title = AXES.get(method, ("", ""))
    bare = {"labels": False, "ticks": False, "grid": False, "domain": False}
    return (alt.Chart(df).mark_point(size=22, filled=True)
            .encode(x=alt.X("x:Q", title=x_title, axis=alt.Axis(**bare)),
                    y=alt.Y("y:Q", title=y_title, axis=alt.Axis(**bare)),
                    color=alt.Color("cluster:O", sort=order, scale=alt.Scale(domain=order, range=colours(k)),
                                    legend=legend),
                    shape=alt.Shape("cluster:O", sort=order, scale=alt.Scale(domain=order, range=shapes(k)),
                                    legend=legend),
                    opacity=alt.Opacity("fits:N", scale=alt.Scale(domain=["yes", UNSORTED], range=[0.85, 0.2]),
                                        legend=alt.Legend(title="fits its cluster")),
                    tooltip=["image", "cluster", "fits"])
            .add_params(pick, box).properties(height=520))
