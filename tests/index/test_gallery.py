"""index/gallery.py (what the page shows, without drawing it) against plain loops, and the helpers the page calls."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from encoders.copies import REPORT_FILE, read_report, report_rows
from encoders.imagefolder import UnreadableImage
from index.clusters import Clustering, members
from index.duplicates import near_groups_best_first
from index.gallery import photo_facts, picked_rows


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


def exif_jpeg(path, size=(60, 40), taken: str | None = None, orientation: int | None = None) -> None:
    exif = Image.Exif()
    if taken:
        exif.get_ifd(0x8769)[36867] = taken  # DateTimeOriginal
    if orientation:
        exif[0x0112] = orientation
    Image.new("RGB", size, (200, 30, 30)).save(path, quality=90, exif=exif.tobytes())


def test_photo_facts_read_size_bytes_and_the_date_taken(tmp_path):
    files = {"taken.jpg": dict(taken="2021:07:14 09:30:05"), "turned.jpg": dict(orientation=6),
             "plain.png": {}}
    for name, kw in files.items():
        if name.endswith(".png"):
            Image.new("RGB", (60, 40)).save(tmp_path / name)
        else:
            exif_jpeg(tmp_path / name, **kw)
    loaded = SimpleNamespace(image_file=lambda p: tmp_path / p)  # all photo_facts asks of an index
    taken = photo_facts(loaded, "taken.jpg")
    assert (taken.width, taken.height, taken.taken) == (60, 40, "2021-07-14 09:30:05")
    assert taken.path == tmp_path / "taken.jpg" and taken.bytes == (tmp_path / "taken.jpg").stat().st_size
    turned = photo_facts(loaded, "turned.jpg")
    assert (turned.width, turned.height, turned.taken) == (40, 60, None)  # shown upright: a quarter turn
    assert photo_facts(loaded, "plain.png").taken is None
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    with pytest.raises(UnreadableImage):
        photo_facts(loaded, "broken.jpg")
