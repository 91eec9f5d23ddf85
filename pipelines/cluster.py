"""Group the indexed images and save the groups beside the index.

    python -m pipelines.cluster --index INDEX_DIR [-k K] [--algorithm ALGORITHM]  (index.clusters.ALGORITHMS)
    python -m pipelines.cluster --index INDEX_DIR --export clusters.csv [--folders OUT_DIR [--copy]]

The default algorithm links every image to its nearest neighbours and cuts that graph in four ways,
merged Leiden communities, spectral clustering (index/graph.py), and UMAP to 10 dimensions followed
by K-means or a Gaussian mixture, keeping the cut that agrees most with the other three; without -k it
keeps the number of groups the graph supports best (highest modularity along the merges of its
communities).
It prints and saves label-free quality: how many of an image's neighbours share its group
(cohesion, per group and overall) and how far reruns agree (other seeds, a tenth of the links left out;
adjusted Rand index). Images whose group holds less than half of their neighbours are listed as
unsorted: they fit no group well (each keeps its nearest group in the assignments and exports).
Writes INDEX_DIR/clusters.json: K and how it was chosen, the algorithm and its settings, the
quality, the group of every image and its cosine to the group's centroid, group sizes, the most
central images of each group and the unsorted images. `--export` also writes a CSV (path, cluster, score);
`--folders` one folder per cluster of symlinks to the originals (`--copy`: copies). Nothing is
ever written inside the indexed data folder.
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from encoders.files import atomic_write_json
from index.cluster_report import CLUSTERS, describe, result_json
from index.clusters import ALGORITHMS, K_RULES, ClusterSettings, cluster_collection
from index.exports import clusters_csv, refuse_inside, save_csv, write_cluster_folders
from index.graph_cut import SCALE_MAX_IMAGES
from index.store import IndexLoadError, build_stamp, load_index
from pipelines.cli import run_cli

log = logging.getLogger(__name__)


class IndexChanged(IndexLoadError):
    """The index folder was replaced by a new build while it was being clustered."""


@dataclass
class ClusterConfig:
    index: str = ""
    k: int | None = None
    settings: ClusterSettings = field(default_factory=ClusterSettings)
    top: int = 5
    export: str | None = None  # CSV path
    folders: str | None = None  # one folder per cluster
    copy: bool = False  # copies instead of symlinks in `folders`


def run(cfg: ClusterConfig) -> dict:
    loaded = load_index(cfg.index, use_gpu=False)
    refuse_inside(cfg.export, loaded.manifest.data_root, "--export")
    refuse_inside(cfg.folders, loaded.manifest.data_root, "--folders")
    if cfg.folders and Path(cfg.folders).exists():
        raise ValueError(f"--folders {cfg.folders} already exists; give a new folder")
    res = cluster_collection(loaded.embeddings, cfg.k, cfg.settings, store=cfg.index)  # UMAPs kept for the page
    c = res.clustering
    log.info("%s", describe(res))
    paths = [it.path for it in loaded.manifest.items]
    result = {**result_json(res, paths, cfg.top), "config": asdict(cfg), "index_build": loaded.build_id}
    if build_stamp(cfg.index) != loaded.stamp and load_index(cfg.index, use_gpu=False).build_id != loaded.build_id:
        raise IndexChanged(f"{cfg.index} was rebuilt while it was clustered; run pipelines.cluster again")
    atomic_write_json(Path(cfg.index) / CLUSTERS, result)
    if cfg.export:
        save_csv(cfg.export, clusters_csv(paths, c.labels, c.scores))
        log.info("wrote %s (%d images)", cfg.export, len(paths))
    if cfg.folders:
        n = write_cluster_folders(cfg.folders, loaded.manifest.data_root, paths, c.labels, cfg.copy)
        log.info("wrote %s: %d %s in %d cluster folders", cfg.folders, n, "copies" if cfg.copy else "symlinks", res.k)
    for j, (size, central) in enumerate(zip(result["sizes"], result["central"])):
        log.info("cluster %d: %d images, cohesion %.2f, most central: %s", j, size,
                 res.quality.cohesion[j], ", ".join(e["path"] for e in central[:3]))
    log.info("wrote %s", Path(cfg.index) / CLUSTERS)
    return result


SETTING_HELP = {
    "algorithm": "consensus: of four cuts (graph, spectral, umap-kmeans, umap-gmm), the one most like the others "
                 "(default; above 20,000 images as best-cut); "
                 "best-cut: of the two cuts of the k-NN graph below, the one of lower normalized cut; "
                 "spectral: spectral clustering of the k-NN graph; graph: its Leiden communities, merged; "
                 "kmeans: spherical K-means; umap-gmm / umap-kmeans: UMAP to 10-d, then a Gaussian mixture / K-means",
    "neighbours": "neighbours per image in the k-NN graph",
    "resolution": "Leiden resolution (1 = modularity; higher: more, smaller communities before merging)",
    "leiden_runs": "Leiden runs with successive seeds; the communities of highest modularity are kept",
    "k_min": "smallest K the automatic choice may pick", "k_max": "largest K the automatic choice may pick",
    "k_rule": "automatic K: modularity: the K of highest modularity; reproducible: the fewest groups whose modularity "
              "is within Leiden's run-to-run spread of the highest, or a finer scale's K when Leiden's groups there "
              f"come back more alike over runs with a tenth of the links left out (up to {SCALE_MAX_IMAGES:,} images)",
    "seed": "random seed", "nredo": "K-means restarts, best kept (kmeans)",
    "stability_runs": "reruns (other seeds, a tenth of the graph's links left out) for the stability score (0: skip)",
    "unsorted_below": "an image whose group holds less than this share of its neighbours is listed as unsorted "
                      "(it keeps its nearest group in the assignments and exports; 0: none)",
}
CHOICES = {"algorithm": ALGORITHMS, "k_rule": K_RULES}


def parse_args(argv=None) -> ClusterConfig:
    p = argparse.ArgumentParser(prog="python -m pipelines.cluster", description=__doc__.split("\n\n")[0])
    d = ClusterConfig()
    p.add_argument("--index", required=True)
    p.add_argument("-k", type=int, default=None, help="number of clusters (default: the number the graph supports)")
    for f in fields(ClusterSettings):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(getattr(d.settings, f.name)),
                       default=getattr(d.settings, f.name), help=SETTING_HELP[f.name],
                       **({"choices": CHOICES[f.name]} if f.name in CHOICES else {}))
    p.add_argument("--top", type=int, default=d.top, help="central images listed per cluster")
    p.add_argument("--export", default=None, metavar="CSV", help="also write path,cluster,score to this CSV file")
    p.add_argument("--folders", default=None, metavar="OUT_DIR",
                   help="also write OUT_DIR/cluster_NN/ folders of symlinks to the originals (OUT_DIR must be new)")
    p.add_argument("--copy", action="store_true", help="--folders holds copies instead of symlinks")
    a = vars(p.parse_args(argv))
    settings = ClusterSettings(**{f.name: a.pop(f.name) for f in fields(ClusterSettings)})
    return ClusterConfig(settings=settings, **a)


def main(argv=None) -> int:
    cfg = parse_args(argv)
    return run_cli(lambda: run(cfg))


if __name__ == "__main__":
    sys.exit(main())
