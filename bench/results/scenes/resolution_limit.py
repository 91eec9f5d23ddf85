"""Why automatic K stops low on the scenes folder: modularity's resolution limit, on the k-NN graph of
the 3-minute encoder's embeddings (runs/sc3) and the true groups. Merging groups i and j raises
modularity when the links between them exceed d_i d_j / 2m (Fortunato & Barthelemy 2007); output in
resolution_limit.txt beside this file.

    python bench/results/scenes/resolution_limit.py [RUN]
"""
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import datasets  # noqa: E402
from encoders.embed import embed_tensor  # noqa: E402
from encoders.store import load_encoder  # noqa: E402
from index.graph import community_weights, knn_graph, leiden  # noqa: E402

enc = load_encoder(sys.argv[1] if len(sys.argv) > 1 else ROOT / "runs" / "sc3")
images, y = datasets.labelled_images("scenes", enc.cfg.image_size)
a = knn_graph(embed_tensor(enc, images), 15, 0).adjacency()  # (M, M), what the clusterer's Leiden reads
two_m = a.sum()
w = community_weights(a, y)  # (C, C): link weight between the true groups, twice the inside on the diagonal
deg = w.sum(1)  # (C,)
gain = (w - np.outer(deg, deg) / two_m) / two_m  # (C, C): modularity change of merging groups i and j
iu = np.triu_indices(len(w), 1)
print(f"groups {len(w)}, images {len(y)}, 2m {two_m:.0f}")
print(f"links inside a group: median {np.median(np.diag(w)) / 2:.0f}, smallest {np.diag(w).min() / 2:.0f}")
print(f"merge threshold d_i d_j / 2m for two groups of median degree: {np.median(deg) ** 2 / two_m:.1f}")
print(f"pairs of true groups whose merge raises modularity: {int((gain[iu] > 0).sum())} of {len(iu[0])}")
print(f"Leiden communities at resolution 1 (best of 3 runs): {len(np.unique(leiden(a, 1.0, 0, 3)))}")
