import json

import numpy as np
import pytest

from index.crowding import Crowding, kth_neighbour
from index.duplicates import TooManyPairs, exact_groups, find_duplicates, group_pairs, near_pairs, suggest_threshold
from index.phash import HASH_KINDS, min_hamming
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


def crowded_rule_pairs(hashes, x, h, hashed, threshold, hamming, floor, crowding, kinds=HASH_KINDS):
    """The rule with `Crowding` written out pair by pair over all pairs (the reference)."""
    m = len(x)
    cos = x @ x.T  # (M, M)
    dist = np.full((m, m), 99)
    for i in range(m):
        dist[i] = min_hamming(np.repeat(h[[i]], m, 0), h, kinds)
    dist[~hashed] = dist[:, ~hashed] = 99  # no hash: never a neighbour, never a match
    np.fill_diagonal(dist, 99)
    kth_hash = np.sort(dist, axis=1)[:, crowding.k - 1]  # (M,) 99 > 64: fewer than k others with a hash
    kth_hash[kth_hash == 99] = 65
    others = cos - 3 * np.eye(m)
    kth_cos = -np.sort(-others, axis=1)[:, crowding.k - 1]
    edges = []
    for i in range(m):
        for j in range(i + 1, m):
            if hashes[i] == hashes[j]:
                continue
            by_hash = dist[i, j] <= hamming and cos[i, j] >= floor \
                and dist[i, j] + crowding.hash_margin < min(kth_hash[i], kth_hash[j])
            by_cos = cos[i, j] >= threshold and (crowding.cos_hamming == 64 or dist[i, j] <= crowding.cos_hamming) \
                and 1 - cos[i, j] <= crowding.cos_ratio * (1 - max(kth_cos[i], kth_cos[j])) + 1e-6
            if by_hash or by_cos:
                edges.append((i, j))
    return edges


def test_kth_neighbour_equals_brute_force():
    x, _ = clustered(300, 8, 5, spread=0.8, seed=5)
    rows = np.arange(0, 300, 3)
    ref = np.sort(x[rows] @ x.T, axis=1)[:, -11]  # 11th largest: itself first
    np.testing.assert_allclose(kth_neighbour(x, rows), ref, atol=1e-5)
    assert kth_neighbour(x[:10], np.arange(10)).size == 0  # no 10th other image


@pytest.mark.parametrize("crowding", [Crowding(), Crowding(k=3, hash_margin=4, cos_ratio=0.5, cos_hamming=20)])
def test_find_duplicates_with_crowding_equals_brute_force(crowding):
    rng = np.random.default_rng(7)
    x, _ = clustered(240, 16, 12, spread=0.5, seed=8)
    x[200:220] = x[:20] + 0.05 * rng.standard_normal((20, 16)).astype(np.float32)  # near copies
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    h = rng.integers(0, 2 ** 63, (240, 4), dtype=np.uint64)
    h[100:160] = h[100] ^ rng.integers(0, 2 ** 10, (60, 4), dtype=np.uint64)  # a crowd of look-alike hashes
    h[200:220] = h[:20] ^ rng.integers(0, 2 ** 4, (20, 4), dtype=np.uint64)  # the copies' hashes
    h[220:230] = h[:10] ^ (rng.integers(0, 2 ** 20, (10, 4), dtype=np.uint64) << np.uint64(40))  # 6-20 bits off
    hashes = [f"h{i}" for i in range(240)]
    hashes[7] = hashes[8]
    hashed = np.ones(240, bool)
    hashed[[150, 205]] = False
    found = find_duplicates(hashes, x, 0.9, phashes=h, hamming=10, hash_kinds=HASH_KINDS, hashed=hashed,
                            hash_floor=-1.0, crowding=crowding)
    got = sorted((i, j) for g in found["near"] for i, j, _ in g["pairs"])
    assert got == crowded_rule_pairs(hashes, x, h, hashed, 0.9, 10, -1.0, crowding)
    assert found["crowded"]["phash"] > 0


def test_crowded_hash_collisions_are_not_reported_while_planted_copies_are():
    """300 look-alikes whose pHashes all lie within a few bits of one another (tiny silhouettes,
    product shots) and 20 photos with 3 copies each (pHash within 4 bits, cosine 0.9 and up): the
    look-alikes collide by the thousand, the copies stand apart."""
    rng = np.random.default_rng(0)
    m_alike, photos, copies = 300, 20, 3
    centre = rng.integers(0, 2 ** 63, dtype=np.uint64)
    alike_h = centre ^ (rng.integers(0, 2 ** 12, (m_alike, 4), dtype=np.uint64))  # within 12 bits of one hash
    alike_x, _ = clustered(m_alike, 32, 3, spread=1.0, seed=1)  # the encoder sees them alike too
    photo_h = rng.integers(0, 2 ** 63, (photos, 4), dtype=np.uint64)
    photo_x = rng.standard_normal((photos, 32)).astype(np.float32)
    photo_x /= np.linalg.norm(photo_x, axis=1, keepdims=True)
    copy_h = np.repeat(photo_h, copies, 0) ^ rng.integers(0, 2 ** 4, (photos * copies, 4), dtype=np.uint64)
    copy_x = np.repeat(photo_x, copies, 0) + 0.1 * rng.standard_normal((photos * copies, 32)).astype(np.float32)
    copy_x /= np.linalg.norm(copy_x, axis=1, keepdims=True)
    h = np.concatenate([alike_h, photo_h, copy_h])
    x = np.concatenate([alike_x, photo_x, copy_x]).astype(np.float32)
    hashes = [f"h{i}" for i in range(len(x))]
    plain = find_duplicates(hashes, x, None, phashes=h, hamming=10, hash_kinds=HASH_KINDS)
    crowded = find_duplicates(hashes, x, 0.8, phashes=h, hamming=10, hash_kinds=HASH_KINDS, crowding=Crowding())
    pairs = {(i, j) for g in crowded["near"] for i, j, _ in g["pairs"]}
    photo_of = np.r_[np.full(m_alike, -1), np.arange(photos), np.repeat(np.arange(photos), copies)]
    planted = {(i, j) for i in range(m_alike, len(x)) for j in range(i + 1, len(x)) if photo_of[i] == photo_of[j]}
    assert sum(len(g["pairs"]) for g in plain["near"]) > 1000  # the hash alone: thousands of look-alike pairs
    assert pairs == planted  # every copy, no look-alike
    assert crowded["crowded"]["phash"] > 1000 and max(len(g["rows"]) for g in crowded["near"]) == copies + 1


def test_saved_rule_reads_its_crowding_and_refuses_a_malformed_one(tmp_path):
    from index.duplicates import DUPLICATES_FILE, saved_rule

    rule = {"index_created": "t0", "threshold": 0.9, "hamming": 10, "hash_floor": 0.5, "reason": "why",
            "crowding": Crowding(hash_margin=6, cos_hamming=18).to_json()}
    (tmp_path / DUPLICATES_FILE).write_text(json.dumps(rule))
    assert saved_rule(tmp_path, "t0")["crowding"] == Crowding(hash_margin=6, cos_hamming=18)
    assert saved_rule(tmp_path, "another build") is None
    for bad in ({"hash_margin": 99}, {"no such field": 1}):
        (tmp_path / DUPLICATES_FILE).write_text(json.dumps({**rule, "crowding": bad}))
        assert saved_rule(tmp_path, "t0") is None
