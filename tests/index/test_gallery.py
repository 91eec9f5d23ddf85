"""index/gallery.py (what the page shows) against plain loops, and the helpers the page calls."""
from __future__ import annotations

import html
import json

import numpy as np
import pytest

from encoders.copies import REPORT_FILE, read_report, report_rows
from encoders.imagefolder import UnreadableImage
from index.clusters import Clustering, members
from index.duplicates import near_groups_best_first
from index.gallery import MARKDOWN_SPECIAL, grid_html, markdown_literal, picked_rows


def test_box_selection_equals_a_plain_loop():
    rng = np.random.default_rng(0)
    xy = rng.normal(size=(500, 2)).astype(np.float32)
    paths = [f"img{i}.png" for i in range(500)]
    box = {"x": [0.5, -0.3], "y": [-1.0, 0.2]}  # reversed bounds are allowed
    want = [r for r in range(500) if -0.3 <= xy[r, 0] <= 0.5 and -1.0 <= xy[r, 1] <= 0.2]
    assert want and picked_rows({"box": box}, xy, paths) == want


def test_clicked_points_win_over_the_box_and_junk_is_ignored():
    xy = np.zeros((4, 2), np.float32)
    paths = ["a", "b", "c", "d"]
    sel = {"pick": [{"image": "c"}, {"image": "a"}, "junk", {"other": 1}], "box": {"x": [-1, 1], "y": [-1, 1]}}
    assert picked_rows(sel, xy, paths) == [0, 2]
    assert picked_rows({}, xy, paths) == [] and picked_rows({"box": {"x": [0, 1]}}, xy, paths) == []


def test_grid_escapes_names_links_them_and_says_why_a_thumbnail_is_missing():
    paths = ['<b>x</b>&"y".png', "broken.png"]

    def thumb(p):
        if p == "broken.png":
            raise UnreadableImage("truncated file")
        return "data:image/jpeg;base64,AAAA"
    out = grid_html(paths, thumb, columns=3)
    assert html.escape(paths[0]) in out and "<b>x</b>" not in out
    assert "?query=%3Cb%3Ex%3C%2Fb%3E%26%22y%22.png" in out
    assert "(cannot show: truncated file)" in out and out.count("<figure") == 2
    assert "repeat(3," in out
    assert "<a href" not in grid_html(paths[:1], thumb, searchable=False)


def test_markdown_literal_escapes_every_special_character_and_nothing_else():
    text = "a" + MARKDOWN_SPECIAL + "é z"
    out = markdown_literal(text)
    assert out == "a" + "".join("\\" + c for c in MARKDOWN_SPECIAL) + "é z"


def test_near_groups_are_ordered_by_their_best_pair():
    near = [{"rows": [0, 1, 2], "pairs": [(0, 1, 0.91), (1, 2, 0.95)]},
            {"rows": [3, 4], "pairs": [(3, 4, 0.99)]},
            {"rows": [5, 6, 7, 8], "pairs": [(5, 6, 0.92), (7, 8, 0.90), (6, 7, 0.93)]}]
    out = near_groups_best_first(near, shown=3)
    assert [best for _, best, _ in out] == [0.99, 0.95, 0.93]
    assert [rows for _, _, rows in out] == [[3, 4], [1, 2, 0], [6, 7, 5]]


def test_members_are_the_cluster_rows_most_central_first():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 200)
    scores = rng.choice([0.1, 0.5, 0.9], 200).astype(np.float32)  # ties: row order
    c = Clustering(np.zeros((4, 2), np.float32), labels, scores)
    for j in range(4):
        want = sorted(range(200), key=lambda r: (labels[r] != j, -scores[r]))[:int((labels == j).sum())]
        assert members(c, j).tolist() == want


def test_copies_report_reading(tmp_path):
    assert read_report(tmp_path) is None  # missing
    (tmp_path / REPORT_FILE).write_text("{not json")
    assert read_report(tmp_path) is None
    (tmp_path / REPORT_FILE).write_text("[1, 2]")
    assert read_report(tmp_path) is None
    report = {"edits": ["crop", "grey", 3], "encoder": {"recall_at_1": 0.9, "by_edit": {"crop": 0.8, "grey": "x"}},
              "raw_pixels": {"recall_at_1": 0.5, "by_edit": {"crop": 0.4, "grey": True}}}
    (tmp_path / REPORT_FILE).write_text(json.dumps(report))
    assert read_report(tmp_path) == report
    assert report_rows(report) == {"all edits": (0.9, 0.5), "crop": (0.8, 0.4), "grey": (None, None)}


@pytest.mark.parametrize("report", [{}, {"encoder": None, "raw_pixels": [1], "edits": None},
                                    {"encoder": {"by_edit": [0.5]}, "edits": 7}])
def test_an_empty_or_malformed_report_has_only_the_overall_row(report):
    assert report_rows(report) == {"all edits": (None, None)}
