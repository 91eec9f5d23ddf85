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


@pytest.mark.parametrize("floor", [-1.0, 0.3])
def test_find_duplicates_with_phashes_equals_brute_force(floor):
    import itertools

    from index.phash import HASH_KINDS, min_hamming

    rng = np.random.default_rng(3)
    x, _ = clustered(200, 16, 30, spread=0.6, seed=4)
    h = rng.integers(0, 2 ** 63, (200, 4), dtype=np.uint64)
    h[10:20] = h[0] ^ rng.integers(0, 2 ** 6, (10, 4), dtype=np.uint64)  # hash near-twins, whatever their cosine
    hashes = [f"h{i}" for i in range(200)]
    hashes[5] = hashes[6]
    hashed = np.ones(200, bool)
    hashed[15] = False  # unreadable: no hash
    found = find_duplicates(hashes, x, 0.97, phashes=h, hamming=8, hash_kinds=HASH_KINDS, hashed=hashed,
                            hash_floor=floor)
    edges = []
    for i, j in itertools.combinations(range(200), 2):  # the rule, pair by pair
        cos = float(x[i] @ x[j])
        ham = int(min_hamming(h[[i]], h[[j]], HASH_KINDS)[0])
        hashed_pair = hashed[i] and hashed[j] and ham <= 8 and cos >= floor
        if hashes[i] != hashes[j] and (cos >= 0.97 or hashed_pair):
            edges.append((i, j))
    got = sorted((i, j) for g in found["near"] for i, j, _ in g["pairs"])
    assert got == edges
    assert found["near"] and found["exact"] == [[5, 6]]
    assert [g["rows"] for g in found["near"]] == group_pairs(200, *map(np.array, zip(*edges)))


def test_keeper_most_pixels_then_size_then_newest():
    from index.duplicates import keeper

    pixels, sizes, mtimes = np.array([4, 9, 9, 9, 9]), np.array([5, 1, 7, 7, 3]), np.array([0, 0, 1, 2, 9])
    assert keeper([0, 1], pixels, sizes, mtimes) == 1  # more pixels beats a larger file
    assert keeper([1, 2, 4], pixels, sizes, mtimes) == 2  # same pixels: the larger file
    assert keeper([2, 3], pixels, sizes, mtimes) == 3  # same pixels and size: the newer
    assert keeper([0, 4], pixels, sizes, mtimes) == 4
