"""Sharded IVF-PQ builds (in RAM and on-disk lists) against the single-process build; the GPU fallback."""
import faiss
import numpy as np
import pytest

from index import clusters, faiss_index
from index.faiss_index import build_index, has_ondisk_lists, update_index
from index.shards import concat_npy, fill_shard, merge_shards, read_ondisk, sample_rows, train_ivf
from index.store import IVFDATA, Item, Manifest, ShardMerge, load_index, search_vectors, write_index_dir
from tests.index.conftest import clustered

KEY = "IVF32,PQ8x4"  # 4-bit codes: 16 centroids per sub-quantizer train on a few thousand vectors


@pytest.fixture(scope="module")
def data():
    """3000 clustered unit vectors (D=32) under shuffled, gappy int64 ids, cut into 3 unequal shards."""
    x, _ = clustered(3000, 32, 24, seed=5)
    ids = np.random.default_rng(1).permutation(10_000)[:3000].astype(np.int64) * 3 + 7
    cuts = [0, 700, 1900, 3000]
    return x, ids, [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:])]


def manifest_for(x, ids, layout):
    items = [Item(f"img{i:05d}.png", 1, 0, f"h{i}", int(i)) for i in ids]
    return Manifest(index_key=KEY, dim=x.shape[1], count=len(x), data_root="/data",
                    encoder={"path": "e", "sha256": "s"}, items=items, layout=layout)


@pytest.mark.parametrize("on_disk", [False, True], ids=["ram", "ondisk"])
def test_sharded_ivfpq_matches_single_process_build(tmp_path, data, on_disk):
    x, ids, shards = data
    q = x[::50]  # (60, D) queries: database points, their own nearest neighbours
    rows = sample_rows([s.stop - s.start for s in shards], 2000, seed=0)
    sample = np.concatenate([x[s][r] for s, r in zip(shards, rows)])
    train_ivf(sample, KEY, tmp_path / "trained.faiss")

    single = faiss.read_index(str(tmp_path / "trained.faiss"))  # the same quantizer + PQ, one process adds all
    single.add_with_ids(x, ids)
    D0, I0 = faiss_index.search(single, q, 10)

    np.save(tmp_path / "x.npy", x)
    paths = []
    for n, s in enumerate(shards):  # one "rank" each, each writing its own file
        paths.append(tmp_path / f"shard{n}.faiss")
        assert fill_shard(tmp_path / "trained.faiss", x[s], ids[s], paths[-1], chunk=500) == s.stop - s.start

    out = tmp_path / "index"
    for _ in range(2):  # the second write swaps over the first (RENAME_EXCHANGE), then deletes it
        write_index_dir(out, manifest_for(x, ids, {"invlists": "ondisk" if on_disk else "ram", "shards": 3}), ids,
                        shards=ShardMerge(tmp_path / "trained.faiss", paths, [tmp_path / "x.npy"], ondisk=on_disk))
    assert (out / IVFDATA).is_file() == on_disk
    assert not list(tmp_path.glob(".index.tmp-*"))

    loaded = load_index(out)
    assert has_ondisk_lists(loaded.index) == on_disk
    assert loaded.index.ntotal == len(x)
    D1, I1 = faiss_index.search(loaded.index, q, 10)
    np.testing.assert_array_equal(I1, I0)
    np.testing.assert_allclose(D1, D0, rtol=1e-6, atol=1e-6)
    assert set(I1.ravel().tolist()) <= set(ids.tolist())  # ids preserved, not renumbered per shard
    if on_disk:
        assert not loaded.embeddings.flags.owndata  # memory-mapped, not read into RAM
    ivf = faiss.extract_index_ivf(loaded.index)
    stored = np.concatenate([faiss.rev_swig_ptr(ivf.invlists.get_ids(lst), ivf.invlists.list_size(lst)).copy()
                             for lst in range(ivf.nlist)])
    np.testing.assert_array_equal(np.sort(stored), np.sort(ids))

    hits = search_vectors(loaded, q[:2], 3)
    assert [h.id for h in hits[0]] == I0[0, :3].tolist()


def test_ondisk_index_refuses_updates_instead_of_aborting(tmp_path, data):
    x, ids, shards = data
    train_ivf(x, KEY, tmp_path / "trained.faiss")
    fill_shard(tmp_path / "trained.faiss", x, ids, tmp_path / "all.faiss")
    (tmp_path / "d").mkdir()
    index = merge_shards(tmp_path / "trained.faiss", [tmp_path / "all.faiss"], tmp_path / "d" / IVFDATA)
    faiss.write_index(index, str(tmp_path / "d" / "index.faiss"))
    mapped = read_ondisk(tmp_path / "d" / "index.faiss")
    with pytest.raises(ValueError, match="on disk"):
        update_index(mapped, np.array([], np.int64), x[:2], np.array([-5, -6]))
    with pytest.raises(ValueError, match="exists"):
        merge_shards(tmp_path / "trained.faiss", [tmp_path / "all.faiss"], tmp_path / "d" / IVFDATA)
    with pytest.raises(ValueError, match="already holds"):
        fill_shard(tmp_path / "all.faiss", x, ids, tmp_path / "again.faiss")
    with pytest.raises(ValueError, match="IVF"):
        train_ivf(x, "Flat")


def test_concat_npy_streams_shards(tmp_path):
    parts = [np.arange(i * 12, dtype=np.float32).reshape(-1, 4) + i for i in (1, 0, 3)]
    for n, a in enumerate(parts):
        np.save(tmp_path / f"{n}.npy", a)
    assert concat_npy([tmp_path / f"{n}.npy" for n in range(3)], tmp_path / "all.npy", chunk=2) == (12, 4)
    np.testing.assert_array_equal(np.load(tmp_path / "all.npy"), np.concatenate(parts))


def test_gpu_path_falls_back_to_cpu(monkeypatch, data):
    """faiss reports a GPU but cannot use it (CPU wheel, unsupported type): same results on CPU."""
    x, ids, _ = data
    ref_index = build_index(x, ids, "IVF16,Flat")
    ref_km = clusters.kmeans(x[:500], 5, nredo=1)

    def no_gpu(*args, **kwargs):
        raise RuntimeError("no GPU implementation")

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", no_gpu)
    index = build_index(x, ids, "IVF16,Flat")
    for a, b in zip(faiss_index.search(index, x[:20], 5), faiss_index.search(ref_index, x[:20], 5)):
        np.testing.assert_array_equal(a, b)
    km = clusters.kmeans(x[:500], 5, nredo=1)
    np.testing.assert_array_equal(km.labels, ref_km.labels)
    np.testing.assert_allclose(km.centroids, ref_km.centroids, atol=1e-6)
    assert train_ivf(x, "IVF16,Flat").is_trained
