"""Groups of a collection from its nearest-neighbour graph: Leiden communities, merged into a hierarchy.

    knn_graph(x (M, D), k)             -> Neighbours: ids (M, k) and cosine sims (M, k), self excluded
    exact_knn(queries, x, k) / probed_knn(x, k) -> (sims, ids): a full scan / the probed lists beyond EXACT_MAX
    leiden(graph, resolution, seed, runs) -> int64 (M,) community of every row (igraph's Leiden, modularity;
                                         best of `runs` runs; `leiden_runs`: every run and its quality)
    merge_tree(graph, labels)          -> Hierarchy: greedy modularity merges of the communities
    Hierarchy.cut(k)                   -> int64 (M,) labels 0..k-1 with exactly k groups
    Hierarchy.best_k()                 -> the K of highest modularity along the merges
    scales(graph, resolutions, runs)   -> per resolution: how many communities, how alike over perturbed runs
    cohesion(graph, labels)            -> (M,) share of each image's neighbours in its own group
    Neighbours.self_tuning()           -> symmetric (M, M) weights scaled by each image's own neighbourhood
    spectral_embedding(affinity, dims) -> (M, dims) unit rows: the top eigenvectors of the normalised graph
    normalized_cut(affinity, labels)   -> sum over groups of the share of their links that leave them

Why a graph: a self-supervised encoder is trained so that an image's nearest neighbours share
what it shows; K-means instead assumes round groups of equal spread in the whole space, which
whitened embeddings are not (bench/results/cluster_bench.json: K-means vs the graph). Leiden
(Traag et al. 2019) finds communities of the symmetrised k-NN graph; run at a resolution above 1
it over-segments a little, and merging the two communities whose merge raises modularity most
(Clauset-Newman-Moore on the community graph, a few hundred nodes) gives a partition at every K
from one run: the page's K selector answers at once, and "automatic K" is the cut of highest
modularity (the number of groups the graph itself supports). Legend: M images, D dim, k neighbours,
C communities.
"""
from __future__ import annotations

import random
import threading
from dataclasses import dataclass

import faiss
import numpy as np
from scipy import sparse

from index.faiss_index import as_vectors

EXACT_MAX = 20_000  # CPU: exact k-NN up to here (M^2 D multiply-adds), probed lists beyond
#                     (time and recall of both: bench/results/knn_graph_bench.json)
EXACT_MAX_GPU = 200_000  # the same with faiss-gpu
PROBES = 8  # lists each row searches beyond EXACT_MAX
_IGRAPH_RNG = threading.Lock()  # held while leiden() seeds igraph's process-wide random generator


@dataclass(frozen=True)
class Neighbours:
    ids: np.ndarray  # int64 (M, k), nearest first, self excluded
    sims: np.ndarray  # float32 (M, k), cosine similarity
    kept: np.ndarray | None = None  # bool (M, k): the links the graph keeps (None: all)

    def thinned(self, share: float, seed: int) -> Neighbours:
        """The same neighbours with a random `share` of the links left out (for stability reruns)."""
        drop = np.random.default_rng(seed).random(self.ids.shape) < share  # (M, k)
        return Neighbours(self.ids, self.sims, ~drop if self.kept is None else self.kept & ~drop)

    def _edges(self, w: np.ndarray) -> sparse.csr_matrix:
        """(M, M) with w (M, k) on the kept links i -> ids[i, j], made symmetric as A + A^T."""
        m, k = self.ids.shape
        keep = np.ones((m, k), bool) if self.kept is None else self.kept
        rows = np.repeat(np.arange(m), k).reshape(m, k)[keep]
        a = sparse.csr_matrix((w[keep], (rows, self.ids[keep])), shape=(m, m))
        return (a + a.T).tocsr()

    def adjacency(self) -> sparse.csr_matrix:
        """Symmetric (M, M) weights: 1 for an edge in either direction, 2 for a mutual one."""
        return self._edges(np.ones(self.ids.shape, np.float64))

    def self_tuning(self) -> sparse.csr_matrix:
        """Symmetric (M, M) weights exp(-d_ij^2 / (s_i s_j)) on the k-NN edges, d = 1 - cosine and s_i
        image i's distance to its k-th neighbour (Zelnik-Manor & Perona 2004, "self-tuning spectral
        clustering"): an edge counts by how near it is for both ends' own neighbourhoods, so a dense
        group and a loose one weigh alike."""
        scale = np.maximum(1.0 - self.sims[:, -1].astype(np.float64), 1e-6)  # (M,)
        d = 1.0 - self.sims.astype(np.float64)  # (M, k)
        return self._edges(np.exp(-d ** 2 / (scale[:, None] * scale[self.ids]))) / 2


def knn_graph(x: np.ndarray, k: int = 15, seed: int = 0) -> Neighbours:
    """The k nearest neighbours of every row by cosine: exact (faiss; on the GPUs when faiss-gpu sees
    any, up to EXACT_MAX_GPU rows), or beyond EXACT_MAX rows on the CPU from the probed lists of
    `probed_knn`. Leiden and the merges always run on the CPU."""
    x = as_vectors(x)
    m = len(x)
    if m < 2:
        raise ValueError(f"a neighbour graph needs at least 2 images, have {m}")
    k = min(k, m - 1)
    if m > (EXACT_MAX_GPU if faiss.get_num_gpus() > 0 else EXACT_MAX):
        sims, ids = probed_knn(x, k + 1, seed)
    else:
        sims, ids = exact_knn(x, x, k + 1)  # (M, k + 1), usually self first
    return Neighbours(*_drop_self(ids, sims, k))


def exact_knn(queries: np.ndarray, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k rows of unit (M, D) x of highest inner product with each of the (Q, D) queries, by a full
    faiss scan (on all GPUs when faiss-gpu sees any) -> sims float32 (Q, k), ids int64 (Q, k)."""
    index = faiss.IndexFlatIP(x.shape[1])
    if faiss.get_num_gpus() > 0:
        index = faiss.index_cpu_to_all_gpus(index)
    index.add(x)
    return index.search(queries, k)


def probed_knn(x: np.ndarray, k: int, seed: int = 0, probes: int = PROBES) -> tuple[np.ndarray, np.ndarray]:
    """Approximate k nearest neighbours of every row of unit float32 (M, D) x among the rows themselves
    (self included) -> sims float32 (M, k), ids int64 (M, k), nearest first. The rows are split into
    ~sqrt(M) lists by spherical K-means (faiss, 10 iterations on 32 rows a list); each row searches
    the lists of its `probes` nearest centroids. faiss's IndexIVFFlat does the same query by query,
    reading every probed list once per query; here each list meets all the rows that probe it in
    one matrix product, at BLAS speed (time and recall against the exact graph:
    bench/results/knn_graph_bench.json)."""
    m, d = x.shape
    nlist = max(1, int(np.sqrt(m)))
    probes = min(probes, nlist)
    km = faiss.Kmeans(d, nlist, niter=10, seed=seed, spherical=True, verbose=False, min_points_per_centroid=1)
    km.train(x[np.random.default_rng(seed).choice(m, min(m, 32 * nlist), replace=False)])
    _, probe = km.index.search(x, probes)  # (M, probes): the lists each row searches, its own list first
    home = probe[:, 0]
    by_list = np.argsort(home, kind="stable")  # rows grouped by their own list
    list_start = np.searchsorted(home[by_list], np.arange(nlist + 1))
    asks = np.argsort(probe.ravel(), kind="stable")  # (row, probe) pairs grouped by the list probed
    ask_start = np.searchsorted(probe.ravel()[asks], np.arange(nlist + 1))
    best_s = np.full((m, probes, k), -np.inf, np.float32)  # per row and probed list, its k best there
    best_i = np.full((m, probes, k), -1, np.int64)
    for j in range(nlist):
        rows = by_list[list_start[j]:list_start[j + 1]]
        ask = asks[ask_start[j]:ask_start[j + 1]]
        if len(rows) == 0 or len(ask) == 0:
            continue
        q, slot = ask // probes, ask % probes
        sims = x[q] @ x[rows].T  # (nq, n_j)
        kk = min(k, len(rows))
        top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk] if kk < len(rows) else \
            np.broadcast_to(np.arange(kk), (len(q), kk))  # (nq, kk)
        best_s[q, slot, :kk] = np.take_along_axis(sims, top, 1)
        best_i[q, slot, :kk] = rows[top]
    best_s, best_i = best_s.reshape(m, -1), best_i.reshape(m, -1)  # (M, probes k)
    top = np.argpartition(-best_s, k - 1, axis=1)[:, :k]  # (M, k)
    sims, ids = np.take_along_axis(best_s, top, 1), np.take_along_axis(best_i, top, 1)
    short = np.flatnonzero(ids.min(1) < 0)  # rows whose probed lists hold fewer than k rows: search all
    if len(short):
        sims[short], ids[short] = exact_knn(x[short], x, k)
    order = np.argsort(-sims, axis=1, kind="stable")
    return np.take_along_axis(sims, order, 1), np.take_along_axis(ids, order, 1)


def _drop_self(ids: np.ndarray, sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's own id (exact copies may rank it second); keep k columns."""
    own = ids == np.arange(len(ids))[:, None]  # (M, k + 1)
    own[~own.any(1), -1] = True  # rows whose self was not returned drop their farthest instead
    keep = ~own
    return ids[keep].reshape(len(ids), k).astype(np.int64), sims[keep].reshape(len(ids), k).astype(np.float32)


def spectral_embedding(affinity: sparse.csr_matrix, dims: int) -> np.ndarray:
    """The `dims` top eigenvectors of D^-1/2 A D^-1/2 (A (M, M) symmetric, D its degrees), each row
    scaled to unit length -> float64 (M, dims) (Ng, Jordan & Weiss 2001). ARPACK (fixed start
    vector) on a connected graph; a graph of C separate parts has eigenvalue 1 C times, which a
    single-vector Krylov solver does not resolve, so there a block solver (LOBPCG, seeded start
    block, ~8x slower); dense `eigh` for small M."""
    import warnings

    from scipy.sparse.csgraph import connected_components
    from scipy.sparse.linalg import eigsh, lobpcg

    m = affinity.shape[0]
    if not 1 <= dims <= m:
        raise ValueError(f"{dims} eigenvectors asked of a graph of {m} images")
    deg = np.asarray(affinity.sum(1)).ravel()
    inv = sparse.diags(1.0 / np.sqrt(np.maximum(deg, 1e-12)))
    s = (inv @ affinity @ inv).tocsr()  # (M, M)
    if m <= 10 * dims + 100:
        vals, vecs = np.linalg.eigh(s.toarray())
    elif connected_components(affinity, directed=False)[0] == 1:
        vals, vecs = eigsh(s, k=dims, which="LA", tol=1e-6, v0=np.ones(m))
    else:
        start = np.random.default_rng(0).standard_normal((m, dims))  # (M, dims)
        with warnings.catch_warnings():  # "not reaching the requested tolerance": the clusters need no more
            warnings.simplefilter("ignore", UserWarning)
            vals, vecs = lobpcg(s, start, largest=True, tol=1e-5, maxiter=500)
    u = vecs[:, np.argsort(-vals)[:dims]]  # (M, dims), largest eigenvalue first
    return u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-12)


def leiden_runs(adjacency: sparse.csr_matrix, resolution: float = 1.0, seed: int = 0,
                runs: int = 1) -> list[tuple[float, np.ndarray]]:
    """(quality, int64 (M,) communities) of `runs` Leiden runs maximising modularity at `resolution`
    (1 = Newman's modularity; igraph's C implementation, 2 iterations), seeds seed, seed + 1, ...:
    Leiden is randomised, and the number of communities one run finds varies by a few
    (docs/clustering.md, "Automatic K")."""
    import igraph as ig

    upper = sparse.triu(adjacency, k=1).tocoo()
    g = ig.Graph(n=adjacency.shape[0], edges=np.column_stack([upper.row, upper.col]), directed=False)
    g.es["weight"] = upper.data
    parts = []
    with _IGRAPH_RNG:  # igraph draws from one process-wide generator: seed it for exactly these runs
        try:
            for r in range(runs):
                ig.set_random_number_generator(random.Random(seed + r))
                parts.append(g.community_leiden(objective_function="modularity", weights="weight",
                                                resolution=resolution, n_iterations=2))
        finally:
            ig.set_random_number_generator(random)
    return [(part.quality, np.asarray(part.membership, dtype=np.int64)) for part in parts]


def best_run(runs: list[tuple[float, np.ndarray]]) -> np.ndarray:
    """The communities of the run of highest quality among `leiden_runs` (first of equals: the lowest seed)."""
    return max(runs, key=lambda run: run[0])[1]


def leiden(adjacency: sparse.csr_matrix, resolution: float = 1.0, seed: int = 0, runs: int = 1) -> np.ndarray:
    """The communities of the best of `runs` Leiden runs (`leiden_runs`, `best_run`)."""
    return best_run(leiden_runs(adjacency, resolution, seed, runs))


def cohesion(graph: Neighbours, labels: np.ndarray) -> np.ndarray:
    """(M,) share of each image's k nearest neighbours that are in its own group."""
    return (labels[graph.ids] == labels[:, None]).mean(1)


@dataclass(frozen=True)
class Scale:
    resolution: float
    k: int  # median number of communities over the runs
    agreement: float  # mean adjusted mutual information between the runs' communities, pair by pair


def scales(graph: Neighbours, resolutions, runs: int, seed: int, k_max: int, drop: float,
           min_cohesion: float = 0.5) -> list[Scale]:
    """Leiden at each resolution (ascending) `runs` times, each run with its own seed on the graph with
    a random `drop` share of its links left out: how many communities, and how alike the runs' communities
    are. Groups the data really has come back from run to run; a scale that cuts through a group does
    not. Stops before the first resolution whose median number of communities exceeds k_max, or whose
    communities hold less than `min_cohesion` of the typical image's neighbours (median over the images,
    mean over the runs): groups too small to hold what their images resemble, down to single images,
    which come back the same every time without being groups."""
    from itertools import combinations

    from sklearn.metrics import adjusted_mutual_info_score as ami

    found = []
    for r in resolutions:
        parts = [leiden(graph.thinned(drop, seed + i).adjacency(), r, seed + i) for i in range(runs)]
        k = int(np.median([p.max() + 1 for p in parts]))
        held = np.mean([np.median(cohesion(graph, p)) for p in parts])
        if k > k_max or held < min_cohesion:
            break
        found.append(Scale(float(r), k, float(np.mean([ami(a, b) for a, b in combinations(parts, 2)]))))
    return found


def community_weights(adjacency: sparse.csr_matrix, labels: np.ndarray) -> np.ndarray:
    """(C, C) total edge weight between communities (diagonal: twice the weight inside)."""
    c = int(labels.max()) + 1
    member = sparse.csr_matrix((np.ones(len(labels)), (np.arange(len(labels)), labels)), shape=(len(labels), c))
    return (member.T @ adjacency @ member).toarray()  # (C, M) @ (M, M) @ (M, C)


def normalized_cut(affinity: sparse.csr_matrix, labels: np.ndarray) -> float:
    """Shi & Malik's normalized cut of a partition: sum over groups of cut(group) / volume(group)."""
    w = community_weights(affinity, renumber_by_size(labels))  # (C, C)
    volume = w.sum(1)
    return float(((volume - np.diag(w)) / np.maximum(volume, 1e-12)).sum())


def modularity(w: np.ndarray) -> float:
    """Newman's modularity of a partition from its (C, C) community weight matrix."""
    total = w.sum()
    deg = w.sum(1)
    return float((np.trace(w) - (deg ** 2).sum() / total) / total)


@dataclass(frozen=True)
class Hierarchy:
    """Communities (M,) and the order in which they merge; `cut(k)` replays the first C - k merges."""
    communities: np.ndarray  # int64 (M,), 0..C-1
    merges: np.ndarray  # int64 (C - 1, 2): at step t, group merges[t, 1] joins group merges[t, 0]
    modularity: np.ndarray  # float64 (C,): modularity with C - t groups, t = 0..C-1

    @property
    def max_k(self) -> int:
        return int(self.communities.max()) + 1

    def cut(self, k: int) -> np.ndarray:
        """Labels with exactly k groups (1 <= k <= max_k), numbered by decreasing size (ties: first row)."""
        if not 1 <= k <= self.max_k:
            raise ValueError(f"{k} groups asked of a hierarchy of {self.max_k}: need 1 <= k <= {self.max_k}")
        parent = np.arange(self.max_k)
        for a, b in self.merges[: self.max_k - k]:
            parent[parent == b] = a
        return renumber_by_size(parent[self.communities])

    def best_k(self, k_min: int = 2, k_max: int | None = None, tolerance: float = 0.0) -> int:
        """The number of groups with the highest modularity, within [k_min, k_max]; with a `tolerance`,
        the fewest groups whose modularity is within it of the highest."""
        ks = np.arange(self.max_k, 0, -1)  # groups after t merges
        ok = (ks >= min(k_min, self.max_k)) & (ks <= (k_max or self.max_k))
        q = self.modularity[ok]
        if tolerance > 0:
            return int(ks[ok][q >= q.max() - tolerance].min())
        return int(ks[ok][np.argmax(q)])


def merge_tree(adjacency: sparse.csr_matrix, communities: np.ndarray) -> Hierarchy:
    """Greedy modularity merging of the communities until one is left (CNM on the small community graph)."""
    communities = renumber_by_size(communities)
    w = community_weights(adjacency, communities)
    total = w.sum()
    alive = np.ones(len(w), bool)
    merges, q = [], [modularity(w)]
    for _ in range(len(w) - 1):
        deg = w.sum(1) / total  # (C,) share of edge ends
        gain = 2 * (w / total - np.outer(deg, deg))  # (C, C) modularity change of merging i and j
        gain[~alive] = -np.inf
        gain[:, ~alive] = -np.inf
        np.fill_diagonal(gain, -np.inf)
        a, b = np.unravel_index(np.argmax(gain), gain.shape)
        a, b = min(a, b), max(a, b)  # the larger group (lower number) keeps its number
        w[a] += w[b]
        w[:, a] += w[:, b]
        w[b] = 0
        w[:, b] = 0
        alive[b] = False
        merges.append((a, b))
        q.append(q[-1] + float(gain[a, b]))
    return Hierarchy(communities, np.asarray(merges, np.int64).reshape(-1, 2), np.asarray(q))


def renumber_by_size(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 0, 1, ... by decreasing group size (ties: the group of the earlier row first)."""
    _, first, inverse, counts = np.unique(labels, return_index=True, return_inverse=True, return_counts=True)
    order = np.lexsort((first, -counts))  # new number -> old group
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse].astype(np.int64)
