import numpy as np
import pytest

from index.duplicates import TooManyPairs, exact_groups, find_duplicates, group_pairs, near_pairs, suggest_threshold
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


def test_find_duplicates_splits_exact_from_near_and_refuses_too_many_pairs():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 8)).astype(np.float32)
    x[1] = x[0]  # same bytes (same hash): exact only
    x[3] = x[2] + 0.01  # near copy, another hash
    hashes = [f"h{i}" for i in range(40)]
    hashes[1] = hashes[0]
    found = find_duplicates(hashes, x, 0.99)
    assert found["exact"] == [[0, 1]]
    assert [g["rows"] for g in found["near"]] == [[2, 3]] and found["near"][0]["pairs"][0][:2] == (2, 3)
    with pytest.raises(TooManyPairs, match="raise the threshold"):
        find_duplicates(hashes, x, -1.0, max_pairs=100)


def test_suggest_threshold_flags_about_the_asked_fraction():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((500, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    t = suggest_threshold(x, flagged=0.1)
    nn = np.sort(x @ x.T, axis=1)[:, -2]  # (M,) nearest other image, brute force
    assert 0.05 <= (nn > t).mean() <= 0.15
