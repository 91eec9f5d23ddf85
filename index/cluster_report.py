"""What a clustering says and saves: its plain sentence, and INDEX_DIR/clusters.json written by
`pipelines.cluster` and read back by the page.

    describe(result)                    -> one sentence: K and why, cohesion, stability, the cut kept, unsorted
    cut_choice(result) / kept_because   -> how and why a choosing clusterer kept its cut
    result_json(result, paths)          -> what clusters.json holds
    read_saved(index_dir)               -> K, how it was chosen (sentence, rule) and the settings saved
    saved_result(index_dir, paths, x)   -> the saved clustering itself, when it covers exactly `paths`
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from index import clusters, graph_cut
from index.clusters import ClusterResult, ClusterSettings, Quality, central_rows, clustering_from_labels, votes
from index.store import CLUSTERS_FILE

CLUSTERS = CLUSTERS_FILE  # written beside the index by pipelines.cluster


def cut_choice(res: ClusterResult) -> str:
    """How a clusterer that chooses among cuts kept `res.made_by`: "vote" (of four cuts), "normalized cut"
    (of two), or "" (not a choosing clusterer)."""
    if not res.made_by or res.settings.algorithm not in ("best-cut", "consensus"):
        return ""
    return "vote" if votes(res.settings, len(res.clustering.labels)) else "normalized cut"


def kept_because(res: ClusterResult) -> str:
    """Why `res.made_by` was kept, in a few words ("" for clusterers that do not choose among cuts)."""
    choice = cut_choice(res)
    if choice == "vote":
        return "it agrees most with the other three cuts"
    if choice and res.settings.algorithm == "consensus":
        return f"lower normalized cut (the UMAP cuts are left out above {clusters.CONSENSUS_MAX_IMAGES:,} images)"
    return "lower normalized cut" if choice else ""


def describe(res: ClusterResult, chosen_by: str | None = None) -> str:
    """One plain sentence about a clustering, for the CLI and the page (`chosen_by` replaces the result's own)."""
    q = res.quality
    text = (f"{res.k} groups, K {chosen_by or res.chosen_by}. On average {q.overall_cohesion:.0%} of a photo's "
            f"{res.settings.neighbours} most similar photos are in its own group")
    if q.stability is not None:
        text += (f"; clustering again with other random seeds and a tenth of the links left out gives "
                 f"{q.stability:.2f} agreement (1 = the same groups)")
    made = f", {res.made_by} cut kept: {kept_because(res)}" if kept_because(res) else ""
    text += f" ({res.settings.algorithm} clusterer{made})."
    n = int(res.unsorted.sum())
    if n:
        text += (f" {n} photos ({n / len(res.unsorted):.0%}) fit no group well: fewer than "
                 f"{res.settings.unsorted_below:.0%} of their most similar photos share their group (unsorted).")
    return text


def result_json(res: ClusterResult, paths: list[str], top: int = 5) -> dict:
    """What `pipelines.cluster` saves in clusters.json (read back by `read_saved`)."""
    c, q = res.clustering, res.quality
    return {
        "k": res.k, "chosen_by": res.chosen_by, "k_by": res.k_by, "algorithm": res.settings.algorithm,
        "made_by": res.made_by,
        "settings": asdict(res.settings), "description": describe(res),
        "quality": {"cohesion": round(q.overall_cohesion, 4),
                    "stability_ari": None if q.stability is None else round(q.stability, 4),
                    "cluster_cohesion": [round(float(v), 4) for v in q.cohesion]},
        "sizes": c.sizes.tolist(),
        "central": [[{"path": paths[r], "score": round(float(c.scores[r]), 4)} for r in rows]
                    for rows in central_rows(c, top)],
        "assignments": {p: int(label) for p, label in zip(paths, c.labels)},
        "scores": {p: round(float(s), 4) for p, s in zip(paths, c.scores)},
        "unsorted": [p for p, u in zip(paths, res.unsorted) if u],
    }


def read_saved(index_dir, d: dict | None = None) -> dict | None:
    """{k, chosen_by, k_by, settings} from INDEX_DIR/clusters.json (or its parsed `d`), or None if
    absent, unreadable or not ours. A file without `k_by` gets it from its sentence."""
    try:
        d = json.loads((Path(index_dir) / CLUSTERS).read_text()) if d is None else d
        k, why = d["k"], d.get("chosen_by", "")
        settings = ClusterSettings(**d.get("settings", {}))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(k, int) or isinstance(k, bool) or k < 1 or not isinstance(why, str):
        return None
    by = d.get("k_by", k_by_of(why))
    if by not in graph_cut.K_BY:
        return None
    return {"k": k, "chosen_by": why, "k_by": by, "settings": settings}


def k_by_of(why: str) -> str:
    """The K_BY rule behind a `chosen_by` sentence, for clusters.json files saved without `k_by`."""
    if why.startswith(graph_cut.FINER_SCALE):
        return "finer scale"
    if why.startswith("too few"):
        return "too few"
    return "modularity" if "neighbour graph supports" in why else "hand"


def saved_result(index_dir, paths: list[str], x: np.ndarray, build: str | None = None) -> ClusterResult | None:
    """The ClusterResult `pipelines.cluster` saved beside the index, rebuilt without clustering again;
    None when absent, malformed, not of exactly these paths, or (given `build`, the loaded index's
    `build_id`) made for another build of the index: clusters of one build never go with another's."""
    try:
        d = json.loads((Path(index_dir) / CLUSTERS).read_text())  # read once: one version of the file
    except (OSError, ValueError):
        return None
    saved = read_saved(index_dir, d) if isinstance(d, dict) else None
    if saved is None or (build is not None and d.get("index_build") != build):
        return None
    try:
        assignments, q = d["assignments"], d["quality"]
        if not isinstance(assignments, dict) or len(assignments) != len(paths):
            return None
        labels = np.array([assignments[p] for p in paths])
        flagged = set(d["unsorted"])  # a file without it predates unsorted images: clustered again
        is_unsorted = np.array([p in flagged for p in paths], bool)
        per_cluster = np.asarray(q["cluster_cohesion"], np.float32)
        overall, stability = float(q["cohesion"]), q["stability_ari"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    k = saved["k"]
    if (labels.dtype.kind != "i" or labels.min() < 0 or labels.max() != k - 1 or per_cluster.shape != (k,)
            or not (stability is None or isinstance(stability, float))):
        return None
    c = clustering_from_labels(x, labels)
    if not np.array_equal(c.labels, labels):  # saved labels are numbered by size, as clustering_from_labels does
        return None
    made_by = d.get("made_by", "")
    return ClusterResult(k, saved["chosen_by"], c, Quality(per_cluster, overall, stability), saved["settings"],
                         made_by if isinstance(made_by, str) else "", is_unsorted, saved["k_by"])
