import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from index.clusters import central_rows, choose_k, kmeans, read_saved_k
from tests.index.conftest import clustered


def test_kmeans_recovers_separated_clusters():
    x, labels = clustered(2000, 32, 6, spread=0.5, seed=4)
    c = kmeans(x, 6, seed=0)
    assert adjusted_rand_score(labels, c.labels) >= 0.95
    assert c.sizes.sum() == 2000
    np.testing.assert_allclose(np.linalg.norm(c.centroids, axis=1), 1.0, atol=1e-5)


def test_kmeans_is_seeded():
    x, _ = clustered(500, 16, 4, seed=5)
    np.testing.assert_array_equal(kmeans(x, 4, seed=3).labels, kmeans(x, 4, seed=3).labels)


def test_choose_k_finds_the_true_number():
    x, _ = clustered(1500, 32, 5, spread=0.5, seed=6)
    k, scores = choose_k(x, list(range(2, 10)), sample=1000)
    assert k == 5 and scores[5] == max(scores.values())


def test_central_rows_are_members_sorted_by_score():
    x, _ = clustered(300, 16, 3, seed=7)
    c = kmeans(x, 3)
    for j, rows in enumerate(central_rows(c, top=4)):
        assert (c.labels[rows] == j).all()
        assert list(c.scores[rows]) == sorted(c.scores[c.labels == j], reverse=True)[:4]


@pytest.mark.parametrize("text, expected", [
    ('{"k": 6, "chosen_by": "given with -k"}', (6, "given with -k")),
    ('{"k": "6"}', None), ('{"k": true}', None), ('{"k": 0}', None), ('{"k": 6.5}', None),
    ('{"k": 6, "chosen_by": ["x"]}', None), ('[6]', None), ('{"k": 6', None), ("", None),
])
def test_saved_k_is_read_only_from_a_well_formed_file(tmp_path, text, expected):
    (tmp_path / "clusters.json").write_text(text)
    assert read_saved_k(tmp_path) == expected
