"""The map's thumbnail mosaic (ui/grid.py) on the app's tiny index: a tile where map_cells puts
an image, blank elsewhere, laid out as on a plot (row 0 at the bottom), each tile that image's
thumbnail and a link that opens it."""
from __future__ import annotations

import html
import re

from index.projection import map_cells, project_2d
from index.store import load_index
from ui.grid import mosaic_html


def test_mosaic_tiles_are_the_images_of_their_cells(app_index):
    loaded = load_index(app_index, use_gpu=False)
    xy = project_2d(loaded.embeddings, "pca")
    cols, rows = 5, 4
    cells = map_cells(xy, cols, rows)
    tiles = {cell: loaded.manifest.items[r].path for cell, r in cells.items()}
    out = mosaic_html(tiles, cols, rows, lambda p: f"data:thumb/{p}")
    found = re.findall(r'<div class="pg-tile" data-cell="(\d+),(\d+)">(.*?)</div>', out)
    assert [(int(c), int(r)) for c, r, _ in found] == [(c, r) for r in range(rows - 1, -1, -1) for c in range(cols)]
    for c, r, inner in found:
        path = tiles.get((int(c), int(r)))
        if path is None:
            assert inner == ""
            continue
        assert f'src="data:thumb/{path}"' in inner and f'data-path="{html.escape(path)}"' in inner
        assert 'data-act="open"' in inner
    assert f"repeat({cols}," in out
