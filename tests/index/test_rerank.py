"""Compressed indexes with exact re-ranking: against exact search on the candidates, brute-force recall,
the auto choice under a small budget, near duplicates through a compressed index, memory-mapped loading."""
import functools

import numpy as np
import pytest

from index.duplicates import find_duplicates
from index.factory import RERANK_DEFAULT, default_search_params, is_compressed
from index.faiss_index import build_index, choose_index_key, exact_search, recall_at_k, search
from index.rerank import RowMap, rerank, search_reranked
from index.store import Item, Manifest, load_index, search_vectors, write_index_dir
from tests.index.conftest import clustered

KEYS = ["IVF64,PQ16", "OPQ16,IVF64,PQ16", "IVF64_HNSW32,PQ16", "IVF64,SQ8"]


@pytest.fixture(scope="module")
def data():
    xb, _ = clustered(12000, 64, 40, spread=0.8, seed=3)
    xq, _ = clustered(150, 64, 40, spread=0.8, seed=4)
    ids = np.random.default_rng(0).permutation(50_000)[:12000].astype(np.int64)  # gappy, unsorted ids
    return xb, xq, ids


@pytest.fixture(scope="module")
def built(data):
    """key -> that index built on `data`, once per module, trained on a third of it (OPQ's rotation
    trained on all 12,000 takes most of a minute on 2 cores)."""
    xb, _, ids = data
    return functools.cache(lambda key: build_index(xb, ids, key, train_size=4000))


def test_row_map_inverts_ids():
    ids = np.array([40, 7, 19, 3], np.int64)
    assert RowMap(ids).rows(np.array([[3, 40], [-1, 8]])).tolist() == [[3, 0], [-1, -1]]


def test_reranked_results_equal_exact_search_on_the_candidates(data):
    xb, xq, ids = data
    index = build_index(xb, ids, "IVF64,PQ8")
    _, cand = search(index, xq, 50)  # (N, 50) approximate candidates
    D, I = rerank(xq, cand, xb, RowMap(ids), 10)
    row_of = {int(i): r for r, i in enumerate(ids)}
    for n in range(len(xq)):  # naive reference: score every candidate exactly, one by one, and sort
        c = cand[n][cand[n] >= 0]
        scores = np.array([float(xb[row_of[int(j)]] @ xq[n]) for j in c])
        top = np.argsort(-scores, kind="stable")[:10]
        assert I[n].tolist() == c[top].tolist()
        np.testing.assert_allclose(D[n], scores[top], atol=1e-5)


@pytest.mark.parametrize("key", KEYS)
def test_each_compressed_key_with_reranking_reaches_recall_095(data, built, key):
    xb, xq, ids = data
    assert is_compressed(key) and default_search_params(key)["rerank"] == RERANK_DEFAULT
    index = built(key)
    _, rows = exact_search(xb, xq, 10)
    _, I0 = search(index, xq, 10)
    D, I = search_reranked(index, xq, 10, xb, RowMap(ids), RERANK_DEFAULT)
    assert recall_at_k(I, ids[rows]) >= 0.95
    assert recall_at_k(I, ids[rows]) > recall_at_k(I0, ids[rows]) or "SQ8" in key  # the re-ranking is what helps
    np.testing.assert_allclose(D, np.einsum("nd,nkd->nk", xq, xb[RowMap(ids).rows(I)]), atol=1e-5)  # exact


def test_auto_choice_under_a_small_budget_is_compressed_and_meets_recall():
    xb, _ = clustered(60_000, 64, 60, spread=0.8, seed=7)
    xq, _ = clustered(100, 64, 60, spread=0.8, seed=8)
    key = choose_index_key(len(xb), 64, memory_budget=4e6)  # raw vectors: 15 MB; half the budget: 2 MB
    assert is_compressed(key) and key == "IVF256,PQ16", key
    ids = np.arange(len(xb), dtype=np.int64)
    index = build_index(xb, ids, key)
    _, rows = exact_search(xb, xq, 10)
    _, I = search_reranked(index, xq, 10, xb, RowMap(ids), default_search_params(key)["rerank"])
    assert recall_at_k(I, rows) >= 0.95


def test_planted_near_duplicates_are_found_through_a_compressed_index():
    rng = np.random.default_rng(0)
    x, _ = clustered(6000, 64, 30, spread=1.0, seed=2)
    planted = {(3, 6000), (40, 6001), (40, 6002), (777, 6003)}
    copies = x[[3, 40, 40, 777]] + 0.02 * rng.standard_normal((4, 64)).astype(np.float32)
    x = np.vstack([x, copies / np.linalg.norm(copies, axis=1, keepdims=True)]).astype(np.float32)
    hashes = [f"h{i}" for i in range(len(x))]
    ids = np.arange(len(x), dtype=np.int64) * 2 + 5
    index = build_index(x, ids, "IVF32,PQ16")
    exact = find_duplicates(hashes, x, 0.95)
    through_index = find_duplicates(hashes, x, 0.95, index=index, ids=ids)
    assert planted <= {(a, b) for g in through_index["near"] for a, b, _ in g["pairs"]}
    assert through_index["exact"] == exact["exact"]  # same groups, same pairs, same (exact) scores
    assert [g["rows"] for g in through_index["near"]] == [g["rows"] for g in exact["near"]]
    for g, h in zip(through_index["near"], exact["near"]):
        assert [p[:2] for p in g["pairs"]] == [p[:2] for p in h["pairs"]]
        np.testing.assert_allclose([p[2] for p in g["pairs"]], [p[2] for p in h["pairs"]], atol=1e-5)


def test_compressed_index_folder_loads_embeddings_memory_mapped_and_answers_exactly(tmp_path, data, built):
    xb, xq, ids = data
    key = "OPQ16,IVF64,PQ16"
    items = [Item(f"img{i:05d}.png", 1, 0, f"h{i}", int(i)) for i in ids]
    m = Manifest(index_key=key, dim=64, count=len(xb), data_root=str(tmp_path), encoder={"path": "e", "sha256": "s"},
                 items=items, search_params=default_search_params(key))
    write_index_dir(tmp_path / "idx", m, ids, index=built(key), embeddings=xb)
    loaded = load_index(tmp_path / "idx")
    assert isinstance(loaded.embeddings, np.memmap) or not loaded.embeddings.flags.owndata
    D_ref, rows = exact_search(xb, xq[:20], 5)
    hits = search_vectors(loaded, xq[:20], 5)
    found = sum(len({h.row for h in hs} & set(r.tolist())) for hs, r in zip(hits, rows))
    assert found / rows.size >= 0.95
    for n, hs in enumerate(hits):  # exact cosine scores, as a Flat index would give
        np.testing.assert_allclose([h.score for h in hs], [float(xb[h.row] @ xq[n]) for h in hs], atol=1e-5)
