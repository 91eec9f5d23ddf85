"""index/graph.py against references: brute-force neighbours, networkx modularity, a naive merge loop."""
import itertools
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from scipy import sparse

from index.faiss_index import as_vectors, recall_at_k
from index.graph import (
    Hierarchy,
    community_weights,
    knn_graph,
    leiden,
    leiden_runs,
    merge_tree,
    modularity,
    normalized_cut,
    probed_knn,
    renumber_by_size,
    scales,
    spectral_embedding,
)
from tests.index.conftest import clustered


def test_knn_graph_matches_brute_force_and_excludes_self():
    x, _ = clustered(300, 16, 4, spread=1.0, seed=1)
    g = knn_graph(x, 7)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    want = np.argsort(-sims, axis=1, kind="stable")[:, :7]
    assert (g.ids != np.arange(300)[:, None]).all()
    np.testing.assert_allclose(g.sims, np.take_along_axis(sims, want, 1), atol=1e-5)
    assert (np.sort(g.ids, 1) == np.sort(want, 1)).mean() > 0.99  # ties at float precision may swap


def brute_force(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sims = x @ x.T  # (M, M), self included
    ids = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, ids, 1), ids


def test_probed_lists_searching_every_list_are_brute_force():
    x = as_vectors(clustered(900, 16, 6, spread=1.5, seed=3)[0])  # 30 lists
    sims, ids = probed_knn(x, 9, probes=30)
    want_s, want_i = brute_force(x, 9)
    np.testing.assert_allclose(sims, want_s, atol=1e-5)
    assert (np.sort(ids, 1) == np.sort(want_i, 1)).mean() > 0.99  # ties at float precision may swap
    np.testing.assert_allclose(np.einsum("md,mkd->mk", x, x[ids]), sims, atol=1e-5)  # each sim is its pair's


def test_probed_lists_find_most_neighbours_and_every_row_itself():
    x = as_vectors(clustered(2500, 32, 10, spread=1.5, seed=4)[0])  # 50 lists, 8 searched
    sims, ids = probed_knn(x, 11, seed=1)
    want = brute_force(x, 11)[1]
    recall = recall_at_k(ids, want)
    assert recall > 0.9, recall
    assert (ids[:, 0] == np.arange(len(x))).mean() > 0.99 and (ids >= 0).all()
    assert (np.diff(sims, axis=1) <= 1e-6).all()  # nearest first
    np.testing.assert_array_equal(ids, probed_knn(x, 11, seed=1)[1])  # seeded


def test_probed_lists_too_small_for_k_fall_back_to_searching_all():
    x = as_vectors(clustered(400, 8, 20, spread=0.05, seed=5)[0])  # 20 tight groups of 20: lists hold ~20
    sims, ids = probed_knn(x, 60, probes=1)  # one list cannot hold 60
    want_s, _ = brute_force(x, 60)
    np.testing.assert_allclose(sims, want_s, atol=1e-5)


def test_knn_graph_beyond_exact_max_uses_the_probed_lists(monkeypatch):
    import index.graph as graph

    x, _ = clustered(600, 16, 4, spread=1.0, seed=1)
    monkeypatch.setattr(graph, "EXACT_MAX", 100)
    calls = []
    monkeypatch.setattr(graph, "probed_knn", lambda x, *a, **kw: calls.append(len(x)) or probed_knn(x, *a, **kw))
    g = knn_graph(x, 7)
    assert (g.ids != np.arange(600)[:, None]).all() and g.ids.shape == (600, 7)
    assert recall_at_k(g.ids, brute_force(as_vectors(x), 8)[1][:, 1:]) > 0.9
    below = knn_graph(x[:90], 7)  # below the threshold: exact
    np.testing.assert_allclose(below.sims, brute_force(as_vectors(x[:90]), 8)[0][:, 1:], atol=1e-5)
    assert calls == [600]


def test_knn_graph_keeps_exact_copies_as_neighbours():
    x, _ = clustered(50, 8, 2, seed=2)
    x = np.concatenate([x, x[:5]])  # rows 50..54 are copies of 0..4
    g = knn_graph(x, 3)
    for i in range(5):
        assert 50 + i in g.ids[i] and i in g.ids[50 + i]
        assert i not in g.ids[i]


def test_adjacency_is_symmetric_and_counts_mutual_edges_twice():
    x, _ = clustered(100, 8, 3, seed=3)
    g = knn_graph(x, 4)
    a = g.adjacency().toarray()
    np.testing.assert_array_equal(a, a.T)
    for i, j in itertools.product(range(100), range(100)):
        assert a[i, j] == (j in g.ids[i]) + (i in g.ids[j])


def networkx_modularity(a: sparse.csr_matrix, labels: np.ndarray) -> float:
    graph = nx.from_scipy_sparse_array(a)
    groups = [set(np.flatnonzero(labels == c).tolist()) for c in np.unique(labels)]
    return nx.community.modularity(graph, groups, weight="weight")


def test_modularity_matches_networkx():
    x, _ = clustered(200, 8, 4, spread=0.8, seed=4)
    a = knn_graph(x, 5).adjacency()
    labels = np.random.default_rng(0).integers(0, 5, 200)
    assert modularity(community_weights(a, labels)) == pytest.approx(networkx_modularity(a, labels), abs=1e-9)


def naive_merges(a: sparse.csr_matrix, communities: np.ndarray) -> list[float]:
    """Greedy: at each step try every pair of groups and keep the merge of highest modularity."""
    labels = communities.copy()
    qs = [networkx_modularity(a, labels)]
    while len(np.unique(labels)) > 1:
        best = max(itertools.combinations(np.unique(labels), 2),
                   key=lambda p: networkx_modularity(a, np.where(labels == p[1], p[0], labels)))
        labels = np.where(labels == best[1], best[0], labels)
        qs.append(networkx_modularity(a, labels))
    return qs


def test_merge_tree_follows_the_naive_greedy_merges():
    x, _ = clustered(150, 8, 3, spread=1.2, seed=5)
    a = knn_graph(x, 5).adjacency()
    communities = np.random.default_rng(1).integers(0, 7, 150)
    tree = merge_tree(a, communities)
    np.testing.assert_allclose(tree.modularity, naive_merges(a, communities), atol=1e-9)
    for k in range(1, 8):
        cut = tree.cut(k)
        assert len(np.unique(cut)) == k
        assert networkx_modularity(a, cut) == pytest.approx(tree.modularity[7 - k], abs=1e-9)
        # each cut only merges whole communities
        assert all(len(np.unique(cut[communities == c])) == 1 for c in range(7))


def test_best_k_is_the_cut_of_highest_modularity_in_range():
    tree = Hierarchy(np.arange(5), np.array([[0, 4], [0, 3], [1, 2], [0, 1]]), np.array([0.1, 0.3, 0.5, 0.2, 0.0]))
    assert tree.best_k() == 3
    assert tree.best_k(k_min=4) == 4
    assert tree.best_k(k_max=2) == 2
    with pytest.raises(ValueError, match="6 groups"):
        tree.cut(6)


def test_renumber_by_size_against_a_naive_loop():
    labels = np.random.default_rng(2).integers(0, 9, 500) * 3
    got = renumber_by_size(labels)
    groups = sorted(np.unique(labels), key=lambda c: (-(labels == c).sum(), np.flatnonzero(labels == c)[0]))
    want = np.array([groups.index(c) for c in labels])
    np.testing.assert_array_equal(got, want)


def test_leiden_recovers_planted_groups_and_is_seeded():
    x, labels = clustered(600, 32, 6, spread=0.5, seed=6)
    a = knn_graph(x, 10).adjacency()
    found = leiden(a, 1.0, seed=3)
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(labels, found) == 1.0
    np.testing.assert_array_equal(found, leiden(a, 1.0, seed=3))


def test_leiden_best_of_runs_keeps_the_highest_modularity_of_single_runs():
    """On a graph without clear groups single runs differ; `runs` keeps the one networkx scores highest."""
    x, _ = clustered(800, 16, 12, spread=3.0, seed=9)
    a = knn_graph(x, 10).adjacency()
    g = nx.from_scipy_sparse_array(a)

    def q(labels):
        return nx.community.modularity(g, [set(np.flatnonzero(labels == c)) for c in np.unique(labels)])

    singles = [leiden(a, 1.0, seed=5 + r) for r in range(4)]
    assert len({tuple(s) for s in singles}) > 1  # the case the runs are for
    best = leiden(a, 1.0, seed=5, runs=4)
    assert q(best) == pytest.approx(max(q(s) for s in singles))
    np.testing.assert_array_equal(best, singles[int(np.argmax([q(s) for s in singles]))])


def test_leiden_seeds_hold_across_threads_and_leave_pythons_random_alone():
    """igraph draws from one process-wide generator: runs in two threads at once give what they give
    alone, and the caller's `random` stream is not consumed."""
    import random
    from concurrent.futures import ThreadPoolExecutor

    x, _ = clustered(800, 16, 12, spread=3.0, seed=9)
    a = knn_graph(x, 10).adjacency()
    alone = [leiden(a, 1.0, seed=s) for s in range(6)]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lambda s: leiden(a, 1.0, seed=s), range(6)))
    for want, got in zip(alone, together):
        np.testing.assert_array_equal(want, got)
    random.seed(4)
    want = random.random()
    random.seed(4)
    leiden(a, 1.0, seed=0, runs=2)
    assert random.random() == want


def test_self_tuning_weights_and_thinning_against_a_loop():
    x, _ = clustered(120, 8, 3, spread=1.0, seed=12)
    g = knn_graph(x, 5)
    scale = 1 - g.sims[:, -1]
    want = np.zeros((120, 120))
    for i in range(120):
        for j, s in zip(g.ids[i], g.sims[i]):
            w = np.exp(-(1 - s) ** 2 / (scale[i] * scale[j]))
            want[i, j] += w / 2
            want[j, i] += w / 2
    np.testing.assert_allclose(g.self_tuning().toarray(), want, rtol=1e-5, atol=1e-7)
    thin = g.thinned(0.3, seed=1)
    assert 0.6 < thin.kept.mean() < 0.8
    a = np.zeros((120, 120))
    for i, j in zip(*np.nonzero(thin.kept)):
        a[i, g.ids[i, j]] += 1
    np.testing.assert_array_equal(thin.adjacency().toarray(), a + a.T)


def test_spectral_embedding_spans_the_top_eigenvectors_also_of_separate_parts():
    x, labels = clustered(900, 16, 6, spread=0.5, seed=13)  # 6 separate parts: eigenvalue 1, six times
    a = knn_graph(x, 10).self_tuning()
    u = spectral_embedding(a, 6)  # LOBPCG path (M large)
    deg = np.asarray(a.sum(1)).ravel()
    s = a.toarray() / np.sqrt(np.outer(deg, deg))
    vals, vecs = np.linalg.eigh(s)
    top = vecs[:, -6:]  # (M, 6) reference subspace
    rows = top / np.linalg.norm(top, axis=1, keepdims=True)
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0, atol=1e-6)
    # the same row directions up to a rotation: the Gram matrices agree
    np.testing.assert_allclose(u @ u.T, rows @ rows.T, atol=1e-3)
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score
    assert adjusted_rand_score(labels, KMeans(6, n_init=10, random_state=0).fit_predict(u)) == 1.0


def test_normalized_cut_against_a_loop():
    rng = np.random.default_rng(3)
    w = sparse.random(60, 60, density=0.2, random_state=3)
    w = sparse.csr_matrix(w + w.T)
    labels = rng.integers(0, 4, 60)
    d = w.toarray()
    want = sum(d[labels == c][:, labels != c].sum() / d[labels == c].sum() for c in np.unique(labels))
    assert normalized_cut(w, labels) == pytest.approx(want)


def test_best_cut_keeps_the_cut_of_lower_normalized_cut():
    from index.clusters import ClusterSettings, graph_labels, labels_for, spectral_labels

    x, _ = clustered(600, 16, 5, spread=1.5, seed=14)
    g = knn_graph(x, 15)
    s = ClusterSettings(algorithm="best-cut")
    cuts = [graph_labels(g, 5, s, 0)[0], spectral_labels(g.self_tuning(), 5, 0)]
    best = min(cuts, key=lambda lab: normalized_cut(g.self_tuning(), lab))
    labels, _, kept = labels_for(x, g, 5, s, 0)
    np.testing.assert_array_equal(labels, best)
    assert kept.algorithm == ("graph", "spectral")[min((0, 1), key=lambda i: normalized_cut(g.self_tuning(), cuts[i]))]


def test_most_agreed_is_the_cut_of_highest_mean_nmi_to_the_others():
    from sklearn.metrics import normalized_mutual_info_score

    from index.clusters import most_agreed

    rng = np.random.default_rng(3)
    truth = rng.integers(0, 4, 300)
    cuts = {name: np.where(rng.random(300) < noise, rng.integers(0, 4, 300), truth)  # truth, relabelled at random
            for name, noise in [("a", 0.6), ("b", 0.1), ("c", 0.3), ("d", 0.9)]}
    mean_nmi = {}
    for a in cuts:  # a plain loop
        total = 0.0
        for b in cuts:
            if b != a:
                total += normalized_mutual_info_score(cuts[a], cuts[b])
        mean_nmi[a] = total / 3
    assert most_agreed(cuts) == max(mean_nmi, key=mean_nmi.get) == "b"
    assert most_agreed({"x": truth, "y": truth.copy()}) == "x"  # ties: the first


def test_consensus_keeps_the_cut_that_agrees_most_with_the_other_three():
    from index.clusters import ClusterSettings, graph_labels, labels_for, most_agreed, spectral_labels, umap_labels

    x, _ = clustered(600, 16, 5, spread=1.5, seed=14)
    g = knn_graph(x, 15)
    s = ClusterSettings(algorithm="consensus")
    cuts = {"graph": graph_labels(g, 5, s, 0)[0], "spectral": spectral_labels(g.self_tuning(), 5, 0),
            "umap-kmeans": umap_labels(x, g, 5, 0, "kmeans"), "umap-gmm": umap_labels(x, g, 5, 0, "gmm")}
    labels, _, kept = labels_for(x, g, 5, s, 0)
    assert kept.algorithm == most_agreed(cuts)
    np.testing.assert_array_equal(labels, cuts[kept.algorithm])


def test_consensus_above_its_size_limit_is_best_cut(monkeypatch):
    import index.clusters as clusters

    x, _ = clustered(600, 16, 5, spread=1.5, seed=14)
    g = knn_graph(x, 15)
    monkeypatch.setattr(clusters, "CONSENSUS_MAX_IMAGES", 599)
    monkeypatch.setattr(clusters, "umap_embedding", None)  # never called
    labels, _, kept = clusters.labels_for(x, g, 5, clusters.ClusterSettings(algorithm="consensus"), 0)
    best, _, best_kept = clusters.labels_for(x, g, 5, clusters.ClusterSettings(algorithm="best-cut"), 0)
    np.testing.assert_array_equal(labels, best)
    assert kept.algorithm == best_kept.algorithm


def test_umap_embedding_is_reused_for_the_same_collection_graph_and_seed_only():
    from index.umap_cut import umap_embedding

    x, _ = clustered(300, 16, 4, seed=15)
    g = knn_graph(x, 15)
    first = umap_embedding(x, g, 0)
    assert umap_embedding(x, g, 0) is first  # another K of the same collection: not computed again
    assert first.shape == (300, 10)
    y, _ = clustered(300, 16, 4, seed=16)
    for other in (umap_embedding(x, g, 1), umap_embedding(x, knn_graph(x, 10), 0),
                  umap_embedding(y, knn_graph(y, 15), 0)):
        assert other is not first and not np.array_equal(other, first)


def test_umap_kernels_compiled_in_one_process_are_loaded_from_numba_cache_by_the_next():
    """Two fresh processes run the same UMAP: the second loads umap's kernels from numba's cache
    (cache hits, no compile) and gets the same embedding to the bit."""
    import subprocess
    import sys

    script = (
        "import hashlib, sys, numpy as np\n"
        "from index.graph import knn_graph\n"
        "from index.umap_cut import import_umap, umap_embedding\n"
        "x = np.random.default_rng(0).standard_normal((120, 8)).astype(np.float32)\n"
        "x /= np.linalg.norm(x, axis=1, keepdims=True)\n"
        "u = umap_embedding(x, knn_graph(x, 15), 0)\n"
        "m = import_umap()\n"
        "kernels = (m.umap_.smooth_knn_dist, m.umap_.compute_membership_strengths,\n"
        "           m.layouts._nb_optimize_layout_euclidean_single_epoch)\n"
        "print(hashlib.sha256(u.tobytes()).hexdigest(), min(sum(k.stats.cache_hits.values()) for k in kernels))\n")
    root = Path(__file__).resolve().parents[2]
    runs = [subprocess.run([sys.executable, "-c", script], cwd=root, check=True, capture_output=True,
                           text=True).stdout.split() for _ in range(2)]  # numba's cache where umap is installed
    assert runs[0][0] == runs[1][0]  # the same embedding
    assert runs[1][1] != "0"  # every kernel loaded from the cache (written by the first run, or earlier)


def test_umap_embedding_kept_in_an_index_folder_is_read_back_instead_of_made_again(tmp_path, monkeypatch):
    import umap

    import index.umap_cut as umap_cut

    x, _ = clustered(200, 16, 4, seed=17)
    g = knn_graph(x, 15)
    monkeypatch.setattr(umap_cut, "_UMAP_MEMO", {})
    made = umap_cut.umap_embedding(x, g, 0, tmp_path)
    [saved] = tmp_path.glob("umap_*.npy")
    np.testing.assert_array_equal(np.load(saved, allow_pickle=False), made)
    monkeypatch.setattr(umap_cut, "_UMAP_MEMO", {})  # another process: the page after pipelines.cluster

    def refuse(*a, **kw):
        raise AssertionError("UMAP run again")

    monkeypatch.setattr(umap, "UMAP", refuse)
    np.testing.assert_array_equal(umap_cut.umap_embedding(x, g, 0, tmp_path), made)
    saved.write_bytes(b"not an array")  # a damaged file is made again, not trusted
    monkeypatch.setattr(umap_cut, "_UMAP_MEMO", {})
    with pytest.raises(AssertionError, match="UMAP run again"):
        umap_cut.umap_embedding(x, g, 0, tmp_path)


def test_after_one_clustering_kept_in_a_folder_any_other_k_needs_no_umap_run(tmp_path, monkeypatch):
    import umap

    import index.clusters as clusters
    import index.umap_cut as umap_cut

    x, _ = clustered(240, 16, 4, spread=1.0, seed=18)
    monkeypatch.setattr(umap_cut, "_UMAP_MEMO", {})
    clusters.cluster_collection(x, 4, clusters.ClusterSettings(), store=tmp_path)  # what pipelines.cluster does
    assert len(list(tmp_path.glob("umap_*.npy"))) == 3  # the cut's and its two reruns' seeds
    monkeypatch.setattr(umap_cut, "_UMAP_MEMO", {})  # the page, another process

    def refuse(*a, **kw):
        raise AssertionError("UMAP run again")

    monkeypatch.setattr(umap, "UMAP", refuse)
    for k in (2, 3, 6):
        res = clusters.cluster_collection(x, k, clusters.ClusterSettings(), store=tmp_path)
        assert res.k == k and res.quality.stability is not None


def test_scales_against_a_loop_over_perturbed_runs():
    """Each scale: the median number of communities and the mean pairwise AMI of Leiden's runs on the
    thinned graphs, as a plain loop computes them; planted groups come back in every run (agreement 1),
    a resolution that cuts through them does not; no scale beyond k_max communities, nor one whose
    communities are too small to hold half of an image's neighbours (single images come back the same
    every time: agreement 1, and no groups)."""
    from sklearn.metrics import adjusted_mutual_info_score

    x, labels = clustered(600, 32, 6, spread=0.5, seed=3)
    g = knn_graph(x, 15)
    found = scales(g, [1.0, 4.0, 64.0], runs=3, seed=5, k_max=40, drop=0.1)
    assert [sc.resolution for sc in found] == [1.0, 4.0]  # 64: more than 40 communities, and the scan stops
    for sc in found:
        parts = [leiden(g.thinned(0.1, 5 + i).adjacency(), sc.resolution, 5 + i) for i in range(3)]
        assert sc.k == int(np.median([p.max() + 1 for p in parts]))
        assert sc.agreement == pytest.approx(np.mean([adjusted_mutual_info_score(a, b)
                                                      for a, b in itertools.combinations(parts, 2)]))
    assert found[0].k == 6 and found[0].agreement == pytest.approx(1.0)
    assert found[1].k > 6 and found[1].agreement < 0.95
    singles = leiden(g.adjacency(), 1e4, 0)
    assert singles.max() + 1 == 600 and adjusted_mutual_info_score(singles, singles) == 1.0
    assert [sc.resolution for sc in scales(g, [1.0, 4.0, 1e4], runs=3, seed=5, k_max=600, drop=0.1)] == [1.0, 4.0]


def test_best_k_with_a_tolerance_takes_the_fewest_groups_within_it():
    """Modularity along the merges of 6 communities (K = 6 .. 1), against the K a plain reading of the
    curve gives: the highest, or the fewest groups within the tolerance of the highest, in [k_min, k_max]."""
    q = np.array([0.50, 0.62, 0.61, 0.60, 0.40, 0.0])  # K = 6, 5, 4, 3, 2, 1
    tree = Hierarchy(np.arange(6), np.array([[0, 5], [0, 4], [0, 3], [0, 2], [0, 1]]), q)
    assert tree.best_k(2) == 5
    assert tree.best_k(2, None, 0.015) == 4 and tree.best_k(2, None, 0.03) == 3 and tree.best_k(2, None, 0.5) == 2
    assert tree.best_k(4, None, 0.03) == 4 and tree.best_k(2, 4, 0.0) == 4


def test_leiden_runs_report_each_runs_modularity_and_leiden_keeps_the_best():
    x, _ = clustered(1500, 16, 8, spread=1.2, seed=2)
    a = knn_graph(x, 15).adjacency()
    runs = leiden_runs(a, 1.0, 7, 4)
    assert len(runs) == 4
    for quality, labels in runs:  # igraph's quality is Newman's modularity (checked against networkx above)
        assert quality == pytest.approx(modularity(community_weights(a, labels)))
    best = max(range(4), key=lambda i: runs[i][0])
    np.testing.assert_array_equal(leiden(a, 1.0, 7, 4), runs[best][1])
    np.testing.assert_array_equal(leiden(a, 1.0, 7 + best, 1), runs[best][1])  # run i is the run of seed + i
