import faiss
import numpy as np
import pytest

from index.faiss_index import (
    as_vectors,
    build_index,
    choose_index_key,
    exact_search,
    neighbours,
    recall_at_k,
    search,
    update_index,
)
from tests.index.conftest import clustered


def test_exact_index_equals_brute_force_numpy():
    xb, _ = clustered(3000, 64, 20, spread=1.0, seed=1)
    xq, _ = clustered(50, 64, 20, spread=1.0, seed=2)
    ids = np.arange(3000, dtype=np.int64) * 7 + 3  # non-contiguous stable ids
    index = build_index(xb, ids, "Flat")
    D, I = search(index, xq, 10)
    D_ref, rows = exact_search(xb, xq, 10)
    np.testing.assert_array_equal(I, ids[rows])
    np.testing.assert_allclose(D, D_ref, rtol=0, atol=1e-5)
    # and the numpy reference agrees with IndexFlatIP itself
    flat = faiss.IndexFlatIP(64)
    flat.add(xb)
    np.testing.assert_array_equal(flat.search(xq, 10)[1], rows)


@pytest.mark.parametrize("key", ["IVF64,Flat", "HNSW32"])
def test_approximate_index_recall_at_10(key):
    xb, _ = clustered(20000, 64, 50, spread=0.8, seed=3)
    xq, _ = clustered(200, 64, 50, spread=0.8, seed=3 + 1)
    index = build_index(xb, np.arange(len(xb)), key)
    _, I = search(index, xq, 10)
    _, I_true = exact_search(xb, xq, 10)
    assert recall_at_k(I, I_true) >= 0.95


def test_search_normalises_queries_and_clips_k():
    xb, _ = clustered(5, 8, 2)
    index = build_index(xb, np.arange(5), "Flat")
    D, I = search(index, 3 * xb[:2], 10)
    assert I.shape == (2, 5)
    np.testing.assert_allclose(D[:, 0], 1.0, atol=1e-5)


def test_neighbours_drops_missing_ids():
    xb, _ = clustered(400, 16, 8, spread=0.3)
    index = build_index(xb, np.arange(400), "IVF8,Flat", params={"nprobe": 1})
    D, I = search(index, xb[:20], 200)  # one list of ~50 cannot fill 200 slots
    assert (I == -1).any()
    for (d, i), row in zip(neighbours(D, I), I):
        assert len(i) == (row >= 0).sum() and (i >= 0).all() and len(d) == len(i)


def test_per_call_params_leave_the_index_unchanged():
    xb, _ = clustered(2000, 16, 8)
    index = build_index(xb, np.arange(2000), "IVF32,Flat", params={"nprobe": 4})
    before = search(index, xb[:10], 5)
    search(index, xb[:10], 5, params=faiss.SearchParametersIVF(nprobe=32))
    assert faiss.extract_index_ivf(index).nprobe == 4
    np.testing.assert_array_equal(search(index, xb[:10], 5)[1], before[1])


@pytest.mark.parametrize("key", ["Flat", "IVF8,Flat"])
def test_update_in_place_equals_fresh_build(key):
    xb, _ = clustered(1000, 32, 10, spread=1.0)
    ids = np.arange(1000, dtype=np.int64) * 3
    params = {"nprobe": 8} if "IVF" in key else None  # all lists: exact, so comparable
    index = build_index(xb[:800], ids[:800], key, params=params)
    gone = ids[0:800:5]
    update_index(index, gone, xb[800:], ids[800:])
    keep = np.setdiff1d(np.arange(1000), np.arange(0, 800, 5))
    fresh = build_index(xb[keep], ids[keep], key, params=params)
    xq, _ = clustered(30, 32, 10, spread=1.0, seed=9)
    np.testing.assert_array_equal(search(index, xq, 10)[1], search(fresh, xq, 10)[1])


def test_choose_index_key_follows_size_and_budget():
    assert choose_index_key(10_000, 256) == "Flat"
    assert choose_index_key(1_000_000, 256, memory_budget=4e9) == "IVF1024,Flat"
    key = choose_index_key(100_000_000, 512, memory_budget=16e9)
    assert key.startswith("IVF") and ",PQ" in key
    with pytest.raises(ValueError):
        choose_index_key(0, 256)


def test_bad_inputs_raise_value_errors():
    with pytest.raises(ValueError, match="dimension"):
        as_vectors(np.zeros((2, 3)), d=4)
    with pytest.raises(ValueError, match="unique"):
        build_index(np.ones((2, 4), np.float32), np.array([1, 1]))
    with pytest.raises(ValueError, match="index factory"):
        build_index(np.ones((2, 4), np.float32), np.array([1, 2]), "NotAnIndex")
