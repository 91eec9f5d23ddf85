import numpy as np
import pytest

from index.duplicates import exact_groups, group_pairs, near_pairs
from tests.index.conftest import clustered


def brute_force_pairs(x, t):
    sims = x @ x.T  # (M, M)
    a, b = np.nonzero(np.triu(sims >= t, k=1))
    return a, b, sims[a, b]


@pytest.mark.parametrize("threshold", [0.5, 0.9, 0.99])
def test_near_pairs_equal_brute_force(threshold):
    x, _ = clustered(700, 16, 20, spread=0.5, seed=1)
    a, b, s = near_pairs(x, threshold, batch=128)
    ra, rb, rs = brute_force_pairs(x, threshold)
    np.testing.assert_array_equal(a, ra)
    np.testing.assert_array_equal(b, rb)
    np.testing.assert_allclose(s, rs, atol=1e-5)


def test_planted_near_copies_are_grouped():
    rng = np.random.default_rng(0)
    x, _ = clustered(500, 64, 50, spread=3.0, seed=2)
    planted = {(3, 500), (40, 501), (40, 502)}
    copies = x[[3, 40, 40]] + 0.01 * rng.standard_normal((3, 64)).astype(np.float32)
    x = np.vstack([x, copies / np.linalg.norm(copies, axis=1, keepdims=True)])
    a, b, _ = near_pairs(x, 0.98)
    assert planted <= set(zip(a.tolist(), b.tolist()))
    groups = group_pairs(len(x), a, b)
    assert [3, 500] in groups and [40, 501, 502] in groups


def test_exact_groups_by_hash():
    assert exact_groups(["a", "b", "a", "c", "b", "a"]) == [[0, 2, 5], [1, 4]]
    assert exact_groups(["a", "b"]) == []
