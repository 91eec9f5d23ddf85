"""ui/grid.py: the grids' HTML (escaped names, links, weak matches, the divider) and markdown escaping."""
from __future__ import annotations

import html

from encoders.imagefolder import UnreadableImage
from ui.grid import MARKDOWN_SPECIAL, Cell, grid_html, markdown_literal


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
    assert out.count('data-act="open"') == 2 and out.count('data-act="search"') == 2
    assert 'data-act="search"' not in grid_html(paths[:1], thumb, searchable=False)


def test_grid_marks_weak_matches_and_draws_the_divider_before_the_first():
    cells = [Cell("<b>1.</b> 0.900"), Cell("<b>2.</b> 0.500", weak=True), Cell("<b>3.</b> 0.400", weak=True)]
    out = grid_html(["a", "b", "c"], lambda p: "x", cells, divider=(1, "weaker below"))
    assert out.index('data-hit="0"') < out.index('data-divider="1"') < out.index('data-hit="1"')
    assert out.count("pg-weak") == 2 and out.count("pg-divider") == 1
    assert "pg-divider" not in grid_html(["a"], lambda p: "x")


def test_markdown_literal_escapes_every_special_character_and_nothing_else():
    text = "a" + MARKDOWN_SPECIAL + "é z"
    out = markdown_literal(text)
    assert out == "a" + "".join("\\" + c for c in MARKDOWN_SPECIAL) + "é z"
