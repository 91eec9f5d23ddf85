"""An index rebuilt, updated and re-clustered while readers use it (the page's case): every read
gets one whole build (index, embeddings, manifest and clusters of the same build, never a mix) and
`build_stamp` says when a new one is there."""
from __future__ import annotations

import json
import threading

import numpy as np

from encoders.files import atomic_write_json
from index.cluster_report import CLUSTERS, saved_result
from index.faiss_index import build_index
from index.store import Item, Manifest, build_stamp, load_index, search_vectors, write_index_dir
from tests.index.conftest import clustered

SWAPS = 24


def version(tmp_path, n: int, seed: int) -> dict:
    """One build: n images (their count tells the builds apart), embeddings, clusters by sign of x0."""
    x, _ = clustered(n, 8, 3, seed=seed)
    items = [Item(f"v{seed}/img{i:03d}.png", 10, 1, f"h{i}", i) for i in range(n)]
    m = Manifest(index_key="Flat", dim=8, count=n, data_root=str(tmp_path), encoder={"path": "e", "sha256": "s"},
                 items=items, next_id=n)
    labels = (x[:, 0] > np.quantile(x[:, 0], 0.7)).astype(int)  # sizes 70% / 30%: one way to number them
    return {"x": x, "manifest": m, "labels": labels, "paths": [it.path for it in items]}


def write(out, v: dict) -> None:
    ids = np.arange(len(v["x"]), dtype=np.int64)
    write_index_dir(out, v["manifest"], ids, index=build_index(v["x"], ids), embeddings=v["x"])
    loaded = load_index(out, use_gpu=False)  # what pipelines.cluster does next: clusters.json for this build
    sizes = np.bincount(v["labels"])
    labels = v["labels"] if sizes[0] >= sizes[1] else 1 - v["labels"]  # numbered by size, as saved
    atomic_write_json(out / CLUSTERS, {
        "k": 2, "chosen_by": "test", "settings": {}, "index_build": loaded.build_id,
        "quality": {"cohesion": 1.0, "stability_ari": None, "cluster_cohesion": [1.0, 1.0]},
        "assignments": dict(zip(v["paths"], labels.tolist())), "unsorted": []})


def test_readers_see_one_whole_build_while_it_is_rebuilt(tmp_path):
    old, new = version(tmp_path, 40, 0), version(tmp_path, 56, 1)
    out = tmp_path / "idx"
    write(out, old)
    problems, seen, done = [], set(), threading.Event()

    def reader():
        while not done.is_set():
            try:
                loaded = load_index(out, use_gpu=False)
                v = old if loaded.manifest.count == len(old["x"]) else new
                paths = [it.path for it in loaded.manifest.items]
                if paths != v["paths"] or not np.array_equal(loaded.embeddings, v["x"]):
                    problems.append("manifest and embeddings of different builds")
                hits = search_vectors(loaded, v["x"][:3], 1)
                if [h[0].path for h in hits] != v["paths"][:3]:
                    problems.append("index of another build")
                res = saved_result(out, paths, loaded.embeddings, build=loaded.build_id)
                if res is not None and sorted(np.bincount(res.clustering.labels)) != sorted(np.bincount(v["labels"])):
                    problems.append("clusters of another build")
                seen.add(loaded.manifest.count)
            except Exception as e:  # any error is a failure of the reader's view
                problems.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    stamps = [build_stamp(out)]
    try:
        for i in range(SWAPS):
            write(out, new if i % 2 == 0 else old)
            stamps.append(build_stamp(out))
    finally:
        done.set()
        for t in threads:
            t.join()
    assert problems == []
    assert seen  # the readers read
    assert len(set(stamps)) == len(stamps)  # every rebuild is a new stamp


def test_stamp_changes_with_new_clusters_and_stale_clusters_are_not_used(tmp_path):
    old, new = version(tmp_path, 40, 0), version(tmp_path, 40, 1)
    new["paths"] = old["paths"]  # same files, new contents: only the build tells the clusters apart
    new["manifest"].items = [Item(it.path, it.size, 2, it.sha256 + "-edited", it.id) for it in old["manifest"].items]
    out = tmp_path / "idx"
    write(out, old)
    first = load_index(out, use_gpu=False)
    stamp = build_stamp(out)
    assert first.stamp == stamp
    atomic_write_json(out / CLUSTERS, {**json.loads((out / CLUSTERS).read_text()), "k": 2})
    assert build_stamp(out) != stamp  # a cluster run is picked up on the next request
    stale = (out / CLUSTERS).read_bytes()
    ids = np.arange(40, dtype=np.int64)
    write_index_dir(out, new["manifest"], ids, index=build_index(new["x"], ids), embeddings=new["x"])
    (out / CLUSTERS).write_bytes(stale)  # a cluster run of the old build finishing after the rebuild
    second = load_index(out, use_gpu=False)
    assert second.build_id != first.build_id
    assert saved_result(out, old["paths"], second.embeddings, build=second.build_id) is None
    assert saved_result(out, old["paths"], first.embeddings, build=first.build_id) is not None
