"""The map's thumbnail mosaic (index/gallery.py) on the app's tiny index: a tile where map_cells
puts an image, background elsewhere, and the tile is that image's thumbnail."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from encoders.imagefolder import open_rgb, thumbnail
from index.gallery import mosaic_png
from index.projection import map_cells, project_2d
from index.store import load_index

BACKGROUND = (245, 245, 245)


def test_mosaic_tiles_are_the_thumbnails_of_the_cells_images(app_index):
    loaded = load_index(app_index, use_gpu=False)
    xy = project_2d(loaded.embeddings, "pca")
    cols, rows, px = 5, 4, 24
    mosaic = np.asarray(Image.open(io.BytesIO(mosaic_png(loaded, xy, cols, rows, px))).convert("RGB"))
    assert mosaic.shape == (rows * px, cols * px, 3)
    cells = map_cells(xy, cols, rows)
    for c in range(cols):
        for r in range(rows):
            tile = mosaic[(rows - 1 - r) * px:(rows - r) * px, c * px:(c + 1) * px]
            if (c, r) not in cells:
                assert (tile == BACKGROUND).all()
                continue
            img = thumbnail(open_rgb(loaded.image_file(loaded.manifest.items[cells[c, r]].path), draft_size=px), px)
            y0, x0 = (px - img.height) // 2, (px - img.width) // 2
            assert np.array_equal(tile[y0:y0 + img.height, x0:x0 + img.width], np.asarray(img))
