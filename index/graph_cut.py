"""The two cuts of the k-NN graph, and how K is chosen from it when it is not given.

    graph_labels(graph, k, settings, seed) -> labels, KChoice (why and by which rule K), Leiden resolution:
                                              Leiden communities merged greedily to K; without K, the
                                              automatic K of `settings.k_rule` (docs/clustering.md,
                                              "Automatic K")
    spectral_labels(affinity, k, seed)     -> labels of spectral clustering (Ng-Jordan-Weiss)

Used by index/clusters.py, whose `ClusterSettings` they take. Legend: M images, K clusters.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from scipy import sparse

from index.graph import Neighbours, best_run, leiden, leiden_runs, merge_tree, scales, spectral_embedding

if TYPE_CHECKING:
    from index.clusters import ClusterSettings

RERUN_DROP = 0.1  # reruns (stability, the scan of scales) leave out this share of the graph's links
SCALE_STEPS = 8  # the "reproducible" rule tries resolutions 1, sqrt(2), 2, ... 2^3.5 times the settings' own
SCALE_RUNS = 5  # Leiden runs per resolution, each on the graph with RERUN_DROP of its links left out
SCALE_MAX_IMAGES = 20_000  # above, no scan of finer scales (its cost: docs/clustering.md)
FINER_SCALE = "chosen at a finer scale than modularity's"  # how `chosen_by` starts when the reproducible rule did
K_BY = ("hand", "modularity", "finer scale", "too few")  # ClusterResult.k_by: K given, the automatic rule, or 1


class KChoice(NamedTuple):
    """How K was chosen: a sentence for people, and which rule (one of K_BY) for code."""
    why: str
    by: str


HAND = KChoice("set by hand", "hand")


def graph_labels(graph: Neighbours, k: int | None, s: ClusterSettings, seed: int,
                 exact_k: bool = True) -> tuple[np.ndarray, KChoice, float]:
    """Leiden at the settings' resolution, merged to k groups (finer resolutions when k is above
    what it found; with `exact_k` False, as many as it found instead); without k, the cut at the automatic
    K of `s.k_rule` within [k_min, k_max] (docs/clustering.md, "Automatic K"). Also returns how K was
    chosen and the resolution that gave the groups."""
    adjacency = graph.adjacency()
    resolution = s.resolution
    runs = leiden_runs(adjacency, resolution, seed, s.leiden_runs)
    tree = merge_tree(adjacency, best_run(runs))
    if k is None:
        # "reproducible": K's whose modularity is within Leiden's run-to-run spread of the best are as well
        # supported as it, and the fewest groups among them are taken
        spread = max(q for q, _ in runs) - min(q for q, _ in runs) if s.k_rule == "reproducible" else 0.0
        peak = tree.best_k(s.k_min, s.k_max)
        k = tree.best_k(s.k_min, s.k_max, spread)
        q = tree.modularity[tree.max_k - k]
        why = f"chosen as the number of groups the neighbour graph supports best (modularity {q:.2f})"
        if k != peak:
            why = (f"chosen as the fewest groups the neighbour graph supports as well as its best (modularity "
                   f"{q:.3f}, within the {spread:.3f} that Leiden's runs vary by of the highest)")
        if s.k_rule == "reproducible" and adjacency.shape[0] <= SCALE_MAX_IMAGES:
            found = scales(graph, resolution * 2 ** (np.arange(SCALE_STEPS) / 2), SCALE_RUNS, seed, s.k_max,
                           RERUN_DROP)
            best = max(found, key=lambda sc: sc.agreement, default=None)  # the coarsest of equals
            if best is not None and best.resolution > resolution and best.k >= s.k_min:
                tree = merge_tree(adjacency, leiden(adjacency, best.resolution, seed, s.leiden_runs))
                why = (f"{FINER_SCALE}: the one at which the neighbour graph's groups come back most alike when a "
                       f"tenth of its links is left out (agreement {best.agreement:.2f} over {SCALE_RUNS} runs, "
                       f"{found[0].agreement:.2f} at modularity's)")
                return tree.cut(min(best.k, tree.max_k)), KChoice(why, "finer scale"), best.resolution
        return tree.cut(k), KChoice(why, "modularity"), resolution
    if not exact_k:
        return tree.cut(min(k, tree.max_k)), HAND, resolution
    while tree.max_k < k and resolution < 1e4:
        resolution *= 2
        tree = merge_tree(adjacency, leiden(adjacency, resolution, seed, s.leiden_runs))
    if tree.max_k < k:
        raise ValueError(f"{k} clusters asked, the neighbour graph splits into at most {tree.max_k}")
    return tree.cut(k), HAND, resolution


def spectral_labels(affinity: sparse.csr_matrix, k: int, seed: int) -> np.ndarray:
    """Spectral clustering (Ng-Jordan-Weiss) of a graph's (M, M) weights (here the self-tuning k-NN
    graph, `Neighbours.self_tuning`): K-means (10 restarts) of the rows of its K top eigenvectors."""
    from sklearn.cluster import KMeans

    u = spectral_embedding(affinity, k)  # (M, K)
    return KMeans(k, n_init=10, random_state=seed).fit_predict(u).astype(np.int64)
