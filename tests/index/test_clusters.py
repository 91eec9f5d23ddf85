import itertools

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from encoders.evaluation import cluster_scores
from index.cluster_report import read_saved
from index.clusters import ALGORITHMS, ClusterSettings, central_rows, cluster_collection, cohesion, kmeans
from index.graph import knn_graph
from index.graph_cut import FINER_SCALE
from tests.index.conftest import clustered, paired_groups


def test_kmeans_recovers_separated_clusters():
    x, labels = clustered(2000, 32, 6, spread=0.5, seed=4)
    c = kmeans(x, 6, seed=0)
    assert adjusted_rand_score(labels, c.labels) >= 0.95
    assert c.sizes.sum() == 2000
    np.testing.assert_allclose(np.linalg.norm(c.centroids, axis=1), 1.0, atol=1e-5)


def test_kmeans_is_seeded():
    x, _ = clustered(500, 16, 4, seed=5)
    np.testing.assert_array_equal(kmeans(x, 4, seed=3).labels, kmeans(x, 4, seed=3).labels)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_planted_groups_are_recovered_exactly(algorithm):
    x, labels = clustered(800, 32, 6, spread=0.5, seed=6)
    res = cluster_collection(x, 6, ClusterSettings(algorithm=algorithm, stability_runs=1))
    assert adjusted_rand_score(labels, res.clustering.labels) == 1.0
    assert res.quality.stability == pytest.approx(1.0)
    assert res.quality.overall_cohesion == pytest.approx(1.0)
    assert (res.k_by, res.chosen_by) == ("hand", "set by hand")


@pytest.mark.parametrize("groups", [3, 8, 15])
def test_automatic_k_is_the_planted_number(groups):
    x, labels = clustered(150 * groups, 32, groups, spread=0.5, seed=groups)
    res = cluster_collection(x)
    assert res.k == groups and "neighbour graph" in res.chosen_by and res.k_by in ("modularity", "finer scale")
    assert adjusted_rand_score(labels, res.clustering.labels) == 1.0


def test_automatic_k_finds_many_small_groups_that_modularity_merges():
    """48 groups of 20 in 24 close pairs, four draws: modularity merges 6-11 pairs in each (its resolution
    limit: the few links between two small groups outweigh what it expects between them). The reproducible
    scale never does worse, and finds all or nearly all the groups in most draws (not in every one: on
    one draw no finer scale is more reproducible, and it keeps modularity's K)."""
    found_them = 0
    for seed in range(4):
        x, labels = paired_groups(24, 20, seed)
        merged = cluster_collection(x, None, ClusterSettings(algorithm="graph", k_rule="modularity", stability_runs=0))
        found = cluster_collection(x, None, ClusterSettings(algorithm="graph", stability_runs=0))
        assert merged.k <= 42 and "modularity" in merged.chosen_by and merged.k_by == "modularity"
        score = adjusted_rand_score(labels, found.clustering.labels)
        assert found.k >= merged.k and score >= adjusted_rand_score(labels, merged.clustering.labels)
        assert found.chosen_by.startswith(FINER_SCALE) == (found.k_by == "finer scale")
        found_them += found.k >= 46 and score >= 0.95 and found.k_by == "finer scale"
    assert found_them >= 3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_automatic_k_of_a_handful_of_images_is_groups_not_single_images(seed):
    """34 images in 3 loose groups: at a high resolution Leiden returns every image alone, the same in
    every run (the most reproducible partition there is); the automatic K must not take it."""
    x, labels = clustered(34, 32, 3, spread=1.5, seed=seed)
    res = cluster_collection(x)
    assert 2 <= res.k <= 4 and res.clustering.sizes.min() >= 2


def test_graph_clusters_any_k_and_numbers_groups_by_size():
    x, _ = clustered(600, 16, 4, spread=1.0, seed=7)
    for k in (2, 4, 9, 30):
        c = cluster_collection(x, k, ClusterSettings(stability_runs=0)).clustering
        assert len(np.unique(c.labels)) == k == len(c.centroids)
        assert (np.diff(c.sizes) <= 0).all()


def test_same_seed_same_groups_and_scores_are_cosines_to_member_means():
    x, _ = clustered(700, 16, 5, spread=1.2, seed=8)
    a, b = (cluster_collection(x, None, ClusterSettings(seed=4, stability_runs=0)).clustering for _ in range(2))
    np.testing.assert_array_equal(a.labels, b.labels)
    for j in range(len(a.centroids)):
        mean = x[a.labels == j].mean(0)
        np.testing.assert_allclose(a.centroids[j], mean / np.linalg.norm(mean), atol=1e-5)
    np.testing.assert_allclose(a.scores, (x * a.centroids[a.labels]).sum(1), atol=1e-5)


def test_cohesion_against_a_naive_loop():
    x, _ = clustered(200, 8, 3, spread=1.5, seed=9)
    g = knn_graph(x, 6)
    labels = np.random.default_rng(0).integers(0, 3, 200)
    want = [sum(labels[j] == labels[i] for j in g.ids[i]) / 6 for i in range(200)]
    np.testing.assert_allclose(cohesion(g, labels), want)


def test_cluster_scores_against_sklearn_and_a_brute_force_matching():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 300)
    p = np.where(rng.random(300) < 0.7, (y + 1) % 4, rng.integers(0, 5, 300)) * 7  # 5 clusters, 4 classes
    s = cluster_scores(y, p)
    assert s["nmi"] == pytest.approx(normalized_mutual_info_score(y, p))
    assert s["ari"] == pytest.approx(adjusted_rand_score(y, p))
    clusters = np.unique(p)
    best = max(sum(((p == c) & (y == k)).sum() for c, k in zip(perm, range(4)))
               for perm in itertools.permutations(clusters, 4))
    assert s["acc"] == pytest.approx(best / 300)


def test_tiny_collections_and_bad_requests():
    x, _ = clustered(2, 8, 1, seed=0)
    assert (cluster_collection(x).k, cluster_collection(x).k_by) == (1, "too few")
    with pytest.raises(ValueError, match="5 clusters asked of 2 images"):
        cluster_collection(x, 5)
    with pytest.raises(ValueError, match="choose one of"):
        ClusterSettings(algorithm="dbscan")
    with pytest.raises(ValueError, match="bad cluster settings"):
        ClusterSettings(leiden_runs=0)
    with pytest.raises(ValueError, match="automatic K rule 'elbow': choose one of reproducible, modularity"):
        ClusterSettings(k_rule="elbow")


def test_central_rows_are_members_sorted_by_score():
    x, _ = clustered(300, 16, 3, seed=7)
    c = kmeans(x, 3)
    for j, rows in enumerate(central_rows(c, top=4)):
        assert (c.labels[rows] == j).all()
        assert list(c.scores[rows]) == sorted(c.scores[c.labels == j], reverse=True)[:4]


@pytest.mark.parametrize("text, ok", [
    ('{"k": 6, "chosen_by": "given"}', True), ('{"k": 6, "chosen_by": "given", "settings": {"neighbours": 9}}', True),
    ('{"k": "6"}', False), ('{"k": true}', False), ('{"k": 0}', False), ('{"k": 6.5}', False),
    ('{"k": 6, "chosen_by": ["x"]}', False), ('[6]', False), ('{"k": 6', False), ("", False),
    ('{"k": 6, "settings": {"algorithm": "other"}}', False), ('{"k": 6, "settings": {"unknown": 1}}', False),
    ('{"k": 6, "settings": {"neighbours": "9"}}', False), ('{"k": 6, "k_by": "guess"}', False),
    ('{"k": 6, "k_by": "finer scale"}', True),
])
def test_saved_clusters_are_read_only_from_a_well_formed_file(tmp_path, text, ok):
    (tmp_path / "clusters.json").write_text(text)
    saved = read_saved(tmp_path)
    assert (saved is not None) == ok
    if ok:
        assert saved["k"] == 6 and isinstance(saved["settings"], ClusterSettings)


def test_saved_result_is_the_clustering_that_was_saved_and_only_for_the_same_paths(tmp_path):
    import json

    from index.cluster_report import result_json, saved_result

    x, _ = clustered(400, 16, 5, spread=1.0, seed=11)
    paths = [f"img_{i:03d}.png" for i in range(400)]
    res = cluster_collection(x)
    (tmp_path / "clusters.json").write_text(json.dumps(result_json(res, paths)))
    back = saved_result(tmp_path, paths, x)
    np.testing.assert_array_equal(back.clustering.labels, res.clustering.labels)
    np.testing.assert_allclose(back.clustering.scores, res.clustering.scores, atol=1e-4)
    np.testing.assert_allclose(back.quality.cohesion, res.quality.cohesion, atol=1e-4)
    assert (back.k, back.chosen_by, back.k_by, back.settings) == (res.k, res.chosen_by, res.k_by, res.settings)
    older = {key: v for key, v in result_json(res, paths).items() if key != "k_by"}
    (tmp_path / "clusters.json").write_text(json.dumps(older))
    assert saved_result(tmp_path, paths, x).k_by == res.k_by  # saved without it: read from the sentence
    (tmp_path / "clusters.json").write_text(json.dumps(result_json(res, paths)))
    np.testing.assert_array_equal(back.unsorted, res.unsorted)
    assert res.unsorted.any()  # overlapping groups: the saved list was not empty
    assert saved_result(tmp_path, paths[:-1], x[:-1]) is None  # the index changed since
    assert saved_result(tmp_path, paths[:-1] + ["other.png"], x) is None
    older = {key: v for key, v in result_json(res, paths).items() if key != "unsorted"}
    (tmp_path / "clusters.json").write_text(json.dumps(older))
    assert saved_result(tmp_path, paths, x) is None  # saved before unsorted images: clustered again


def test_unsorted_images_are_those_whose_group_holds_less_than_half_of_their_neighbours():
    x, _ = clustered(700, 16, 5, spread=1.2, seed=8)  # overlapping groups: some images between them
    res = cluster_collection(x, 5, ClusterSettings(stability_runs=0))
    ids, labels = knn_graph(x, 15, 0).ids, res.clustering.labels
    want = np.zeros(len(x), bool)
    for i in range(len(x)):  # a plain loop
        want[i] = sum(labels[j] == labels[i] for j in ids[i]) / len(ids[i]) < 0.5
    np.testing.assert_array_equal(res.unsorted, want)
    assert 0 < want.sum() < len(x) / 4
    for j in range(res.k):
        rows = res.sorted_members(j)
        assert set(rows) == set(np.flatnonzero((labels == j) & ~want)) and len(rows) == res.sorted_sizes[j]
    assert not cluster_collection(x, 5, ClusterSettings(stability_runs=0, unsorted_below=0)).unsorted.any()


def test_images_midway_between_five_groups_are_unsorted_and_no_group_member_is():
    rng = np.random.default_rng(9)
    labels = rng.permutation(np.arange(900) % 15)  # 15 groups of 60 around orthonormal centres
    x = np.eye(32, dtype=np.float32)[labels] + 0.3 * rng.standard_normal((900, 32)).astype(np.float32) / np.sqrt(32)
    midway = np.stack([np.eye(32)[5 * t: 5 * t + 5].sum(0) for t in range(3)])  # (3, D): each as near 5 centres
    x = np.concatenate([x, midway]).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    res = cluster_collection(x, 15, ClusterSettings(stability_runs=0))
    assert adjusted_rand_score(labels, res.clustering.labels[:900]) == 1.0
    np.testing.assert_array_equal(np.flatnonzero(res.unsorted), [900, 901, 902])


def test_the_sentence_says_which_cut_was_kept_and_why(monkeypatch):
    import index.clusters as clusters
    from index.cluster_report import describe

    x, _ = clustered(400, 16, 4, spread=0.5, seed=12)
    voted = cluster_collection(x, 4, ClusterSettings(stability_runs=0))
    assert voted.made_by in ("graph", "spectral", "umap-kmeans", "umap-gmm")
    assert f"consensus clusterer, {voted.made_by} cut kept: it agrees most with the other three cuts" in describe(voted)
    monkeypatch.setattr(clusters, "CONSENSUS_MAX_IMAGES", 399)
    large = cluster_collection(x, 4, ClusterSettings(stability_runs=0))
    assert large.made_by in ("graph", "spectral")
    assert "lower normalized cut (the UMAP cuts are left out above 399 images)" in describe(large)
    assert "cut kept" not in describe(cluster_collection(x, 4, ClusterSettings(algorithm="graph", stability_runs=0)))
