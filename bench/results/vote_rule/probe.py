"""Which of the four cuts should the default keep? The vote keeps the cut with the highest mean NMI
to the other three, but the two UMAP cuts share one UMAP embedding and agree with each other more
than with anything else, so together they count twice. This probe makes the four cuts of the default
(graph, spectral, UMAP + K-means, UMAP + GMM) at the true K and at the automatic K, and scores the cut
each rule keeps:

    vote        the default: highest mean NMI to the other three cuts
    vote-umap1  the UMAP cuts one voter: a cut's agreement is its mean NMI to the other families
                (graph, spectral, UMAP), a family's NMI the mean over its cuts
    best-cut    the lower normalized cut of the graph and spectral cuts
    oracle      the cut of highest NMI to the labels (not label-free: the ceiling)

One JSON line per (collection, features, K).

    python bench/results/vote_rule/probe.py OUT.jsonl COLLECTION=RUN [COLLECTION=RUN ...]
"""
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import normalized_mutual_info_score as nmi

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import datasets  # noqa: E402
from encoders.evaluation import cluster_scores  # noqa: E402
from index.clusters import ClusterSettings, most_agreed, vote_cuts  # noqa: E402
from index.faiss_index import as_vectors  # noqa: E402
from index.graph import knn_graph, normalized_cut  # noqa: E402
from index.graph_cut import graph_labels  # noqa: E402

FAMILY = {"graph": "graph", "spectral": "spectral", "umap-kmeans": "umap", "umap-gmm": "umap"}


def one_voter_per_family(cuts: dict[str, np.ndarray]) -> str:
    """The cut with the highest mean, over the other families, of its mean NMI to that family's cuts."""
    def agreement(a):
        others = {FAMILY[b] for b in cuts if FAMILY[b] != FAMILY[a]}
        return np.mean([np.mean([nmi(cuts[a], cuts[b]) for b in cuts if FAMILY[b] == f]) for f in others])
    return max(cuts, key=agreement)


def four_cuts(x: np.ndarray, k: int | None, s: ClusterSettings) -> tuple[dict[str, np.ndarray], object]:
    graph = knn_graph(x, s.neighbours, s.seed)
    graph_cut, _, _ = graph_labels(graph, k, s, s.seed)
    cuts = vote_cuts(x, graph, graph_cut, int(graph_cut.max()) + 1, s.seed)
    return cuts, graph.self_tuning()


def main(argv: list[str]) -> None:
    out, s = Path(argv[1]), ClusterSettings(stability_runs=0)
    for arg in argv[2:]:
        name, run = arg.split("=", 1)
        learned, raw, y = datasets.learned_and_raw(name, run)
        for features, x in (("learned", learned), ("raw pixels", raw)):
            x = as_vectors(x)
            for given in (len(np.unique(y)), None):
                cuts, affinity = four_cuts(x, given, s)
                score = {a: {m: round(float(v), 4) for m, v in cluster_scores(y, la).items()} for a, la in cuts.items()}
                best_cut = min(("graph", "spectral"), key=lambda a: normalized_cut(affinity, cuts[a]))
                kept = {"vote": most_agreed(cuts), "vote-umap1": one_voter_per_family(cuts), "best-cut": best_cut,
                        "oracle": max(cuts, key=lambda a: score[a]["nmi"])}
                row = {"collection": name, "run": run, "features": features, "k": int(cuts["graph"].max()) + 1,
                       "k_given": given is not None, "cuts": score,
                       "kept": {r: {"cut": a, **score[a]} for r, a in kept.items()}}
                datasets.append_json_line(out, row)


if __name__ == "__main__":
    main(sys.argv)
