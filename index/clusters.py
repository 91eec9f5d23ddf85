"""Groups of an embedding collection: spectral and graph clusterers, spherical K-means, UMAP + GMM.

    cluster_collection(x (M, D), k=None, settings) -> ClusterResult: K (given, or the graph's own), the
                                                      clustering, how K was chosen, label-free quality
    kmeans(x, k, seed, nredo)                      -> Clustering by spherical K-means (faiss)
    train_kmeans(x, k, **faiss_kwargs)             -> trained faiss.Kmeans, on the GPU when faiss-gpu sees one
    central_rows(clustering, top) / members(c, j)  -> per cluster, the rows closest to its centroid
What a clustering says and saves (its sentence, clusters.json): index/cluster_report.py. The two
graph cuts and the automatic K: index/graph_cut.py.

Algorithms (`ClusterSettings.algorithm`), compared on labelled collections in bench/cluster_bench.py
(results: bench/results/cluster_bench.json). Without K, every algorithm takes the graph's: the number
of groups of highest modularity along the merges of the graph clusterer (`k_rule` "modularity"), or
(`k_rule` "reproducible", the default) the fewest groups whose modularity is within the spread of
Leiden's runs of the highest, or that of a finer scale when Leiden's communities at that scale come back
more alike over perturbed runs than at modularity's own (index/graph.py `scales`): modularity merges
small groups that share a few links (its resolution limit), and a finer scale that is reproducible
shows them.
- "consensus" (default): four cuts of the same k-NN graph, "graph", "spectral", "umap-kmeans" and
  "umap-gmm" (one UMAP for both), and keeps the one that agrees most with the other three (highest mean
  NMI to them): a label-free vote that drops a cut gone astray. Above CONSENSUS_MAX_IMAGES it leaves
  out the UMAP cuts (too slow there) and decides between the other two as "best-cut" does.
- "best-cut": both graph cuts below, "graph" and "spectral", keeping the one of lower normalized cut
  (Shi & Malik) on the self-tuning graph, the quantity spectral clustering approximately minimises.
- "spectral": spectral clustering of the k-NN graph with self-tuning edge weights
  (index/graph.py `Neighbours.self_tuning`, `spectral_embedding`), then K-means on the K eigenvectors.
- "graph": Leiden communities of the k-NN graph merged greedily to K (index/graph.py).
- "kmeans": spherical K-means of the embeddings.
- "umap-gmm": N2D (McConville et al. 2020): UMAP to 10 dimensions (min_dist 0) from the same k-NN
  graph, then a Gaussian mixture; "umap-kmeans": the same with K-means (umap-learn's clustering guide).
  Slowest (UMAP takes most of the time); index/umap_cut.py, which keeps UMAP embeddings for another K.
Every clustering is reported as centroids (normalised mean of the members), labels numbered by
decreasing size, and each image's cosine to its centroid (for "most central" lists and exports).
Images whose group holds less than half of their k nearest neighbours (`unsorted_below`) are marked
unsorted: they keep their nearest group in the labels, and the page lists them apart.
Legend: M images, D embedding dim, K clusters, k neighbours.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace

import faiss
import numpy as np

from index.faiss_index import as_vectors
from index.graph import Neighbours, cohesion, knn_graph, normalized_cut, renumber_by_size
from index.graph_cut import HAND, K_BY, RERUN_DROP, KChoice, graph_labels, spectral_labels
from index.umap_cut import umap_embedding, umap_labels

log = logging.getLogger(__name__)

CONSENSUS_MAX_IMAGES = 20_000  # above, "consensus" leaves out the UMAP cuts (their cost: docs/clustering.md)
ALGORITHMS = ("consensus", "best-cut", "spectral", "graph", "kmeans", "umap-gmm", "umap-kmeans")
K_RULES = ("reproducible", "modularity")  # how the automatic K is chosen (graph_labels; docs/clustering.md)


@dataclass(frozen=True)
class ClusterSettings:
    algorithm: str = "consensus"
    neighbours: int = 15  # k of the k-NN graph (spectral, graph, umap-*, automatic K, cohesion)
    resolution: float = 1.0  # Leiden resolution: 1 = modularity
    leiden_runs: int = 3  # Leiden runs (seeds seed..seed+2); the communities of highest modularity are kept
    k_min: int = 2  # range of the automatic K
    k_max: int = 50
    k_rule: str = "reproducible"  # automatic K: "modularity" (its peak) or "reproducible" (graph_labels; K_RULES)
    seed: int = 0
    nredo: int = 5  # K-means restarts (kmeans)
    stability_runs: int = 2  # reruns (other seeds, RERUN_DROP of the links left out) for the stability score (0: skip)
    unsorted_below: float = 0.5  # an image whose group holds less than this share of its neighbours is unsorted

    def __post_init__(self):
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"clustering algorithm {self.algorithm!r}: choose one of {', '.join(ALGORITHMS)}")
        if self.k_rule not in K_RULES:
            raise ValueError(f"automatic K rule {self.k_rule!r}: choose one of {', '.join(K_RULES)}")
        if (self.neighbours < 1 or self.nredo < 1 or self.leiden_runs < 1 or self.k_min < 1 or self.k_max < self.k_min
                or self.resolution <= 0 or not 0 <= self.unsorted_below <= 1):
            raise ValueError(f"bad cluster settings: {self}")


@dataclass
class Clustering:
    centroids: np.ndarray  # float32 (K, D), unit norm
    labels: np.ndarray  # int64 (M,)
    scores: np.ndarray  # float32 (M,), cosine similarity to the own centroid

    @property
    def sizes(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.centroids))


@dataclass
class Quality:
    """Label-free: how much of each image's neighbourhood shares its group, and how repeatable the groups are."""
    cohesion: np.ndarray  # float32 (K,): per cluster, mean share of members' k nearest neighbours in the cluster
    overall_cohesion: float  # the same over all images
    stability: float | None  # mean adjusted Rand index against the reruns (None: not measured)


@dataclass
class ClusterResult:
    k: int
    chosen_by: str
    clustering: Clustering
    quality: Quality
    settings: ClusterSettings
    made_by: str = ""  # the algorithm whose groups these are (for "best-cut": the cut it kept)
    unsorted: np.ndarray | None = None  # bool (M,): fits no group well (see `unsorted`); None: all fit
    k_by: str = "hand"  # K_BY: given, modularity's (peak or fewest), a finer scale, or too few images to split

    def __post_init__(self):
        if self.unsorted is None:
            self.unsorted = np.zeros(len(self.clustering.labels), bool)
        if self.k_by not in K_BY:
            raise ValueError(f"k_by {self.k_by!r}: one of {', '.join(K_BY)}")

    def sorted_members(self, j: int) -> np.ndarray:
        """Rows of cluster j that are not unsorted, most central first."""
        rows = members(self.clustering, j)
        return rows[~self.unsorted[rows]]

    @property
    def sorted_sizes(self) -> np.ndarray:
        """(K,) members of each cluster that are not unsorted."""
        return np.bincount(self.clustering.labels[~self.unsorted], minlength=self.k)


def train_kmeans(x: np.ndarray, k: int, **kwargs) -> faiss.Kmeans:
    """faiss.Kmeans trained on float32 (M, D) `x`: on all GPUs when faiss-gpu sees one, else
    (or if the GPU run fails to start) on the CPU. Same algorithm and seed either way; the
    GPU's float arithmetic differs, so centroids agree within FAISS's tolerance, not bit for bit."""
    if faiss.get_num_gpus() > 0:
        try:
            km = faiss.Kmeans(x.shape[1], k, gpu=True, verbose=False, **kwargs)
            km.train(x)
            return km
        except (RuntimeError, AttributeError) as e:
            log.info("K-means on CPU (%s)", (str(e).splitlines() or [type(e).__name__])[0])
    km = faiss.Kmeans(x.shape[1], k, verbose=False, **kwargs)
    km.train(x)
    return km


def kmeans(x: np.ndarray, k: int, seed: int = 0, nredo: int = 5, niter: int = 25) -> Clustering:
    """Spherical K-means (best of `nredo` seeded restarts); each row to its nearest centroid."""
    x = as_vectors(x)
    _check_k(k, len(x))
    km = train_kmeans(x, k, niter=niter, nredo=nredo, seed=seed, spherical=True,
                      min_points_per_centroid=1, max_points_per_centroid=100_000)
    centroids = as_vectors(km.centroids)  # (K, D)
    sims = x @ centroids.T  # (M, K)
    labels = sims.argmax(1).astype(np.int64)
    return Clustering(centroids, labels, sims[np.arange(len(x)), labels].astype(np.float32))


def _check_k(k: int, m: int) -> None:
    if not 1 <= k <= m:
        raise ValueError(f"{k} clusters asked of {m} images: need 1 <= k <= number of images")


def clustering_from_labels(x: np.ndarray, labels: np.ndarray) -> Clustering:
    """Centroids (normalised member means), labels renumbered by decreasing size, cosine to the own centroid."""
    x = as_vectors(x)
    labels = renumber_by_size(labels)
    k = int(labels.max()) + 1
    order = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[order], np.arange(k))  # every label 0..k-1 has members
    sums = np.add.reduceat(x[order], starts, axis=0, dtype=np.float64)  # (K, D)
    centroids = as_vectors(sums)  # (K, D)
    scores = np.einsum("md,md->m", x, centroids[labels])  # (M,)
    return Clustering(centroids, labels, scores.astype(np.float32))


def votes(s: ClusterSettings, m: int) -> bool:
    """Whether the settings' clusterer votes among four cuts on m images ("consensus" up to
    CONSENSUS_MAX_IMAGES; above, it decides between the two graph cuts as "best-cut" does)."""
    return s.algorithm == "consensus" and m <= CONSENSUS_MAX_IMAGES


def most_agreed(cuts: dict[str, np.ndarray]) -> str:
    """The name of the cut with the highest mean NMI to the other cuts (the first such on ties)."""
    from sklearn.metrics import normalized_mutual_info_score as nmi

    agreement = {a: np.mean([nmi(la, lb) for b, lb in cuts.items() if b != a]) for a, la in cuts.items()}
    return max(cuts, key=agreement.get)


def vote_cuts(x: np.ndarray, graph: Neighbours, graph_cut: np.ndarray, k: int, seed: int,
              store: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """The four cuts the vote chooses among: the graph cut made already, and spectral, K-means and a
    Gaussian mixture on one UMAP embedding of x (M, D), each into k groups."""
    u = umap_embedding(x, graph, seed, store)  # (M, 10), shared by both UMAP cuts
    return {"graph": graph_cut, "spectral": spectral_labels(graph.self_tuning(), k, seed),
            "umap-kmeans": umap_labels(x, graph, k, seed, "kmeans", u),
            "umap-gmm": umap_labels(x, graph, k, seed, "gmm", u)}


def labels_for(x: np.ndarray, graph: Neighbours, k: int | None, s: ClusterSettings, seed: int,
               exact_k: bool = True, store: str | os.PathLike | None = None
               ) -> tuple[np.ndarray, KChoice, ClusterSettings]:
    """One clustering of x by the settings' algorithm, how K was chosen (from the graph when not given),
    and the settings that make these groups at this K (for "best-cut": those of the cut it kept; for
    "graph": with the resolution that reached K), which the stability reruns use. `exact_k` False
    (reruns): the graph clusterer may return fewer than k groups rather than run Leiden again. `store`:
    where UMAP embeddings are kept (umap_embedding)."""
    choice, graph_cut = HAND, None
    if k is None:
        graph_cut, choice, resolution = graph_labels(graph, None, s, seed)
        k = int(graph_cut.max()) + 1
    if s.algorithm in ("graph", "best-cut", "consensus") and graph_cut is None:
        graph_cut, _, resolution = graph_labels(graph, k, s, seed, exact_k)
    if s.algorithm == "graph":
        return graph_cut, choice, replace(s, resolution=resolution)
    if s.algorithm == "spectral":
        return spectral_labels(graph.self_tuning(), k, seed), choice, s
    if s.algorithm in ("best-cut", "consensus") and not votes(s, len(x)):
        affinity = graph.self_tuning()  # (M, M): the spectral cut's graph, and the one both cuts are scored on
        spectral = spectral_labels(affinity, k, seed)
        if normalized_cut(affinity, graph_cut) <= normalized_cut(affinity, spectral):
            return graph_cut, choice, replace(s, algorithm="graph", resolution=resolution)
        return spectral, choice, replace(s, algorithm="spectral")
    if votes(s, len(x)):
        cuts = vote_cuts(x, graph, graph_cut, k, seed, store)
        keep = most_agreed(cuts)
        return cuts[keep], choice, replace(s, algorithm=keep, resolution=resolution)
    if s.algorithm == "kmeans":
        return kmeans(x, k, seed=seed, nredo=s.nredo).labels, choice, s
    return umap_labels(x, graph, k, seed, s.algorithm.removeprefix("umap-"), store=store), choice, s


def unsorted(share: np.ndarray, below: float) -> np.ndarray:
    """(M,) bool: images whose own group holds less than `below` of their nearest neighbours (0.5: most
    of their neighbours are in other groups). They keep their nearest group in the labels (exports keep
    their format) and the page lists them apart, as fitting no group well."""
    return share < below


def cluster_collection(x: np.ndarray, k: int | None = None, settings: ClusterSettings = ClusterSettings(),
                       graph: Neighbours | None = None, store: str | os.PathLike | None = None) -> ClusterResult:
    """Cluster (M, D) embeddings into k groups (or as many as the neighbour graph supports), with quality.
    `graph`: the k-NN graph of x with `settings.neighbours` neighbours, if already built (the page keeps one);
    `store`: the index folder, where UMAP embeddings are kept for the next K (umap_embedding)."""
    from sklearn.metrics import adjusted_rand_score

    x = as_vectors(x)
    if k is not None:
        _check_k(k, len(x))
    if len(x) < 3:
        labels, choice = np.zeros(len(x), np.int64), KChoice("too few images to split", "too few")
        graph = None
    else:
        if graph is None or graph.ids.shape != (len(x), min(settings.neighbours, len(x) - 1)):
            graph = knn_graph(x, settings.neighbours, settings.seed)
        labels, choice, made = labels_for(x, graph, k, settings, settings.seed, store=store)
    c = clustering_from_labels(x, labels)
    k = len(c.centroids)
    if graph is None:
        return ClusterResult(k, choice.why, c, Quality(np.ones(k, np.float32), 1.0, None), settings, "",
                             k_by=choice.by)
    share = cohesion(graph, c.labels).astype(np.float32)  # (M,)
    per_cluster = (np.bincount(c.labels, share, k) / c.sizes).astype(np.float32)
    once = replace(made, leiden_runs=1)  # a rerun is one Leiden run: a lower bound on the kept groups' stability
    if store is not None and votes(settings, len(x)):
        for i in range(settings.stability_runs):  # kept for the reruns of a UMAP cut at another K (the page's)
            umap_embedding(x, graph, settings.seed + 1 + i, store)
    reruns = [labels_for(x, graph.thinned(RERUN_DROP, settings.seed + 1 + i), k, once, settings.seed + 1 + i,
                         exact_k=False, store=store)[0] for i in range(settings.stability_runs)]  # ARI allows another K
    stability = float(np.mean([adjusted_rand_score(c.labels, r) for r in reruns])) if reruns and k > 1 else None
    return ClusterResult(k, choice.why, c, Quality(per_cluster, float(share.mean()), stability), settings,
                         made.algorithm, unsorted(share, settings.unsorted_below), choice.by)


def central_rows(c: Clustering, top: int = 5) -> list[np.ndarray]:
    """For each cluster, up to `top` member rows, most central (highest cosine) first."""
    return [members(c, j)[:top] for j in range(len(c.centroids))]


def members(c: Clustering, j: int) -> np.ndarray:
    """Rows of cluster j, most central (highest score) first; ties in row order."""
    rows = np.flatnonzero(c.labels == j)
    return rows[np.argsort(-c.scores[rows], kind="stable")]
