"""ui/charts.py: clusters in number order (never as text), at least 20 distinguishable colours and
then colour + shape, axes in plain words."""
from __future__ import annotations

import numpy as np
import pytest

from ui.charts import PALETTE, colours, map_chart, shapes, sizes_chart


def rgb(c: str) -> np.ndarray:
    return np.array([int(c[i:i + 2], 16) for i in (1, 3, 5)], float)


def test_palette_has_twenty_distinguishable_colours():
    assert len(set(PALETTE)) == len(PALETTE) >= 20
    gaps = [np.linalg.norm(rgb(a) - rgb(b)) for i, a in enumerate(PALETTE) for b in PALETTE[i + 1:]]
    assert min(gaps) > 40  # no two alike (RGB distance; 0 = the same colour)


@pytest.mark.parametrize("k", [2, 18, 24, 50])
def test_every_cluster_has_its_own_colour_and_shape(k):
    pairs = list(zip(colours(k), shapes(k)))
    assert len(set(pairs)) == k
    if k <= len(PALETTE):
        assert len(set(colours(k))) == k and set(shapes(k)) == {"circle"}


def test_sizes_chart_orders_clusters_as_numbers():
    spec = sizes_chart(np.array([50, 40, 30, 20, 10, 9, 8, 7, 6, 5, 4, 3])).to_dict()
    x = spec["encoding"]["x"]
    assert x["type"] == "ordinal" and x["sort"] == list(range(12))
    assert spec["encoding"]["color"]["scale"]["domain"] == list(range(12))
    assert spec["encoding"]["color"]["scale"]["range"] == colours(12)


def test_map_legend_is_numeric_and_axes_are_plain_words():
    rng = np.random.default_rng(0)
    k = 18
    spec = map_chart(rng.normal(size=(90, 2)), np.arange(90) % k, [f"p{i}" for i in range(90)], "pca",
                     k).to_dict()
    color = spec["encoding"]["color"]
    assert color["sort"] == list(range(k)) and color["scale"]["domain"] == list(range(k))
    assert len(set(color["scale"]["range"])) == k
    assert spec["encoding"]["x"]["title"] == "the biggest difference between the photos"
    assert spec["encoding"]["x"]["axis"]["labels"] is False  # no meaningless numbers


def test_map_fades_the_unsorted_photos_and_only_them():
    rng = np.random.default_rng(1)
    unsorted = rng.random(60) < 0.2
    spec = map_chart(rng.normal(size=(60, 2)), np.arange(60) % 4, [f"p{i}" for i in range(60)], "pca", 4,
                     unsorted).to_dict()
    rows = next(iter(spec["datasets"].values()))
    assert [r["fits"] != "yes" for r in rows] == unsorted.tolist()
    opacity = spec["encoding"]["opacity"]
    assert opacity["field"] == "fits" and opacity["scale"]["range"][0] > opacity["scale"]["range"][1]
    plain = map_chart(rng.normal(size=(5, 2)), np.arange(5) % 2, [f"p{i}" for i in range(5)], "pca", 2).to_dict()
    assert {r["fits"] for r in next(iter(plain["datasets"].values()))} == {"yes"}
