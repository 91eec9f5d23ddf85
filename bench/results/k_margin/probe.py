"""How far above modularity's scale the finer-scale rule's agreement is, against the noise of that
agreement: for each feature set, Leiden at the rule's resolutions (5 runs each on the graph with a
tenth of its links left out, as `index.graph.scales`), the mean pairwise AMI between the runs and its
standard error (standard deviation of the 10 pairs / sqrt(10)). One JSON line per feature set.

    python bench/results/k_margin/probe.py OUT.jsonl NAME=COLLECTION:RUN [NAME=COLLECTION:raw ...]

COLLECTION: "fmnist" (the 10k test images) or a folder of bench/datasets.py; RUN a run folder, or "raw"
for the raw pixels (32 px); COLLECTION:RUN:refit embeds with the run's whitening refitted on a seeded
sample of its training folder (as bench/results/tta/shift_probe.py does without shifts).
"""
import sys
from itertools import combinations
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import datasets  # noqa: E402
from index import graph_cut as C  # noqa: E402
from index.clusters import ClusterSettings  # noqa: E402
from index.faiss_index import as_vectors  # noqa: E402
from index.graph import cohesion, knn_graph, leiden  # noqa: E402
from index.graph_cut import graph_labels  # noqa: E402


def refitted(name: str, run: str) -> tuple[np.ndarray, np.ndarray]:
    import torch

    from encoders.embed import Encoder, embed_tensor
    from encoders.imagefolder import decode_images, scan_images
    from encoders.store import load_encoder
    from pipelines.pretrain import WHITEN_SAMPLE

    trained = load_encoder(Path(run), torch.device("cpu"))
    files = scan_images(ROOT / trained.cfg.training["data"])
    pick = np.sort(np.random.default_rng(0).permutation(len(files))[:WHITEN_SAMPLE])
    encoder = Encoder(trained.backbone, trained.cfg).with_whitening(
        decode_images([files[i] for i in pick], trained.cfg.image_size))
    images, y = datasets.labelled_images(name, trained.cfg.image_size)
    return embed_tensor(encoder, images), y


def features(spec: str) -> tuple[np.ndarray, np.ndarray]:
    if spec.endswith(":refit"):
        return refitted(*spec.split(":")[:2])
    name, run = spec.split(":", 1)
    if run == "raw":
        from encoders.evaluation import raw_pixel_features

        images, y = datasets.labelled_images(name, 32)
        return raw_pixel_features(images), y
    x, _, y = datasets.learned_and_raw(name, run)
    return x, y


def scan(graph, s: ClusterSettings) -> list[dict]:
    """index.graph.scales with each scale's pairwise AMIs kept."""
    from sklearn.metrics import adjusted_mutual_info_score as ami

    found = []
    for r in s.resolution * 2 ** (np.arange(C.SCALE_STEPS) / 2):
        parts = [leiden(graph.thinned(C.RERUN_DROP, s.seed + i).adjacency(), r, s.seed + i)
                 for i in range(C.SCALE_RUNS)]
        k = int(np.median([p.max() + 1 for p in parts]))
        held = np.mean([np.median(cohesion(graph, p)) for p in parts])
        if k > s.k_max or held < 0.5:
            break
        pairs = [ami(a, b) for a, b in combinations(parts, 2)]
        found.append({"resolution": round(float(r), 4), "k": k, "agreement": round(float(np.mean(pairs)), 4),
                      "se": round(float(np.std(pairs, ddof=1) / np.sqrt(len(pairs))), 4)})
    return found


out = Path(sys.argv[1])
for arg in sys.argv[2:]:
    tag, spec = arg.split("=", 1)
    x, y = features(spec)
    s = ClusterSettings(stability_runs=0)
    graph = knn_graph(as_vectors(x), s.neighbours, s.seed)
    labels, why, _ = graph_labels(graph, None, s, s.seed)
    row = {"tag": tag, "spec": spec, "true_k": int(len(np.unique(y))), "default_k": int(labels.max()) + 1,
           "k_by": why.by, "scales": scan(graph, s)}
    datasets.append_json_line(out, row)
