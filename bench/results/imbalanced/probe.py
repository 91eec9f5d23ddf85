"""Groups of very different sizes: does the default still beat raw pixels, and does the automatic K
hold? A labelled collection is cut down so that its classes shrink geometrically from the largest
(500 images, or the smallest class's count if lower) to a twentieth of that (the class order
shuffled by the seed), then the
learned embedding and the raw pixels go through the default clusterer at the true K and with the
automatic K, and the raw pixels through UMAP + K-means at the true K (the free baseline). One JSON
line per (collection, seed, features).

    python bench/results/imbalanced/probe.py OUT.jsonl COLLECTION=RUN [COLLECTION=RUN ...]
"""
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import datasets  # noqa: E402
from encoders.evaluation import cluster_scores  # noqa: E402
from index.clusters import ClusterSettings, cluster_collection  # noqa: E402

LARGEST, RATIO, SEEDS = 500, 20, (0, 1)


def imbalanced_rows(y: np.ndarray, seed: int) -> np.ndarray:
    """Row indices keeping top * RATIO^(-rank / (C - 1)) images of the class at each (shuffled) rank,
    top = min(LARGEST, the smallest class's count)."""
    rng = np.random.default_rng(seed)
    classes = rng.permutation(np.unique(y))
    top = min(LARGEST, int(np.bincount(y)[classes].min()))
    keep = []
    for rank, c in enumerate(classes):
        n = round(top * RATIO ** (-rank / (len(classes) - 1)))
        keep.append(rng.choice(np.flatnonzero(y == c), n, replace=False))
    return np.sort(np.concatenate(keep))


def main(argv: list[str]) -> None:
    out = Path(argv[1])
    for arg in argv[2:]:
        name, run = arg.split("=", 1)
        learned, raw, y = datasets.learned_and_raw(name, run)
        for seed in SEEDS:
            rows = imbalanced_rows(y, seed)
            sizes = np.bincount(y[rows])
            for features, x in (("learned", learned), ("raw pixels", raw)):
                row = {"collection": name, "run": run, "seed": seed, "features": features, "images": len(rows),
                       "sizes": sorted(sizes[sizes > 0].tolist(), reverse=True)}
                k = int((sizes > 0).sum())
                for given in (k, None):
                    res = cluster_collection(x[rows], given, ClusterSettings(stability_runs=0))
                    row["true_k" if given else "automatic_k"] = {"k": res.k, "k_by": res.k_by, **{
                        m: round(float(v), 4) for m, v in cluster_scores(y[rows], res.clustering.labels).items()}}
                if features == "raw pixels":
                    res = cluster_collection(x[rows], k, ClusterSettings(algorithm="umap-kmeans", stability_runs=0))
                    row["umap_kmeans_true_k"] = {m: round(float(v), 4) for m, v in
                                                 cluster_scores(y[rows], res.clustering.labels).items()}
                datasets.append_json_line(out, row)


if __name__ == "__main__":
    main(sys.argv)
