"""End to end: build / update / search / cluster / duplicates on a generated folder."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from encoders.imagefolder import open_rgb, resize_center_crop
from encoders.store import load_encoder
from index.faiss_index import exact_search
from index.store import load_index, search_vectors
from pipelines import build_index, cluster, duplicates, merge_shards, search
from tests.conftest import make_shape_folder


@pytest.fixture
def folder(tmp_path) -> Path:
    """48 shape images, one exact copy, one re-encoded near copy, and one broken file."""
    root = make_shape_folder(tmp_path / "data", per_class=12, seed=3)
    shutil.copy(root / "cross_3_000.png", root / "copy_of_cross.png")
    Image.open(root / "ellipse_3_000.png").save(root / "ellipse_again.jpg", quality=97)
    (root / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "notes.txt").write_text("not an image")
    return root


def build(data, encoder, out, *extra):
    return build_index.main(["--data", str(data), "--encoder", str(encoder), "--out", str(out),
                             "--workers", "0", "--batch-size", "16", "--no-progress", *extra])


def reference_embeddings(encoder, paths):
    """Independent path -> vector: open_rgb + resize_center_crop + the Encoder, one batch."""
    encoder = load_encoder(encoder)
    tf = resize_center_crop(encoder.cfg.image_size)
    x = torch.stack([tf(open_rgb(p, encoder.cfg.image_size)).as_subclass(torch.Tensor) for p in paths])
    return encoder(x).numpy()


def test_build_then_search_equals_brute_force(folder, tiny_encoder, tmp_path, capsys):
    out = tmp_path / "index"
    assert build(folder, tiny_encoder, out) == 0
    loaded = load_index(out)
    m = loaded.manifest
    dim = load_encoder(tiny_encoder).cfg.dim  # what the encoder gives (its read-out, whitened)
    assert m.index_key == "Flat" and m.metric == "inner_product" and m.count == 50 and m.dim == dim
    assert m.skipped["total"] == 2 and "broken.jpg" in json.dumps(m.skipped)
    assert m.encoder["path"] == str(tiny_encoder.resolve())
    paths = [it.path for it in m.items]
    assert paths == sorted(paths) and "copy_of_cross.png" in paths
    np.testing.assert_allclose(loaded.embeddings, reference_embeddings(tiny_encoder, [folder / p for p in paths]),
                               atol=1e-5)

    queries = make_shape_folder(tmp_path / "queries", per_class=2, seed=99)
    capsys.readouterr()
    assert search.main(["--index", str(out), "--query", str(queries), "-k", "5", "--json", "--device", "cpu"]) == 0
    results = json.loads(capsys.readouterr().out)
    q_paths = sorted(queries.iterdir())
    assert [r["query"] for r in results] == [str(p) for p in q_paths]
    D_ref, rows = exact_search(loaded.embeddings, reference_embeddings(tiny_encoder, q_paths), 5)
    for r, d, i in zip(results, D_ref, rows):
        assert [h["path"] for h in r["neighbours"]] == [paths[j] for j in i]
        np.testing.assert_allclose([h["score"] for h in r["neighbours"]], d, atol=1e-5)

    # search by an indexed image: its stored vector, itself left out
    hits = search.search_indexed(loaded, "ellipse_3_000.png", k=3)
    assert len(hits) == 3 and "ellipse_3_000.png" not in [h.path for h in hits]
    assert hits[0].path == "ellipse_again.jpg" and hits[0].score > 0.95
    # an indexed file given as a query finds itself with cosine 1
    encoder = search.load_query_encoder(loaded.manifest)
    self_hit = search.search_images(loaded, encoder, [folder / "rectangle_3_004.png"], k=1)[0][0]
    assert self_hit.path == "rectangle_3_004.png" and self_hit.score == pytest.approx(1.0, abs=1e-5)


def results_by_path(index_dir, queries):
    loaded = load_index(index_dir)
    q = loaded.embeddings[[loaded.row_of(p) for p in queries]]
    return [[(h.path, round(h.score, 5)) for h in hits] for hits in search_vectors(loaded, q, 8)]


@pytest.mark.parametrize("key, how", [("Flat", "updated Flat in place"), ("IVF4,Flat", "updated IVF4,Flat in place"),
                                      ("HNSW32", "built HNSW32")])  # HNSW cannot remove: rebuilt from embeddings
def test_update_equals_fresh_build(folder, tiny_encoder, tmp_path, caplog, key, how):
    out, fresh = tmp_path / "index", tmp_path / "fresh"
    assert build(folder, tiny_encoder, out, "--index-key", key) == 0
    before = load_index(out)
    old_ids = {it.path: it.id for it in before.manifest.items}
    make_shape_folder(folder / "new", per_class=2, seed=5)  # 8 added
    (folder / "triangle_3_001.jpg").unlink()  # 2 removed
    (folder / "copy_of_cross.png").unlink()
    Image.open(folder / "cross_3_003.jpg").rotate(90).save(folder / "rectangle_3_002.png")  # 1 changed
    os.utime(folder / "ellipse_3_005.jpg")  # touched, same bytes: not re-embedded
    caplog.set_level("INFO")
    caplog.clear()
    assert build(folder, tiny_encoder, out, "--update", "--index-key", key) == 0
    log = caplog.text
    assert "embedded 9, added 8, changed 1, removed 2, unchanged 47" in log and how in log
    assert build(folder, tiny_encoder, fresh, "--index-key", key) == 0

    up, fr = load_index(out), load_index(fresh)
    strip = [(it.path, it.size, it.mtime_ns, it.sha256) for it in up.manifest.items]
    assert strip == [(it.path, it.size, it.mtime_ns, it.sha256) for it in fr.manifest.items]
    np.testing.assert_allclose(up.embeddings, fr.embeddings, atol=1e-5)
    for it in up.manifest.items:  # stable ids for files that stayed
        if it.path in old_ids:
            assert it.id == old_ids[it.path]
    queries = ["ellipse_3_000.png", "rectangle_3_002.png", "new/cross_5_001.jpg"]
    assert results_by_path(out, queries) == results_by_path(fresh, queries)


def error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0]
    return err[0]


def test_refusals_are_one_line_errors(folder, tiny_encoder, tmp_path, capsys):
    out = tmp_path / "index"
    assert build(folder, tiny_encoder, out) == 0
    other = tmp_path / "other_run"
    shutil.copytree(tiny_encoder, other)
    weights = other / "encoder.safetensors"
    from safetensors.torch import load_file, save_file
    state = load_file(weights)
    state = {k: v + 0.01 if v.is_floating_point() else v for k, v in state.items()}
    save_file(state, weights, metadata={"format": "pt"})
    capsys.readouterr()

    assert build(folder, other, out, "--update") == 2
    line = error_line(capsys)  # the library's fact, then the CLI's flag
    assert "is not the encoder this index was built with" in line and "pass the --encoder" in line
    assert search.main(["--index", str(out), "--query", str(folder / "cross_3_000.png"), "--encoder", str(other)]) == 2
    assert "not the encoder this index was built with" in error_line(capsys)
    assert build(folder, tiny_encoder, tmp_path / "none", "--update") == 2
    assert "run without --update" in error_line(capsys)

    m = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**m, "dim": 128}))
    assert search.main(["--index", str(out), "--indexed", "cross_3_000.png"]) == 2
    assert "rebuild" in error_line(capsys)
    (out / "manifest.json").write_text("{truncated")
    assert cluster.main(["--index", str(out), "-k", "2"]) == 2
    assert "corrupt" in error_line(capsys)
    (out / "manifest.json").unlink()
    assert duplicates.main(["--index", str(out)]) == 2
    assert "missing" in error_line(capsys)


def test_duplicates_and_clusters_cli(folder, tiny_encoder, tmp_path):
    out = tmp_path / "index"
    assert build(folder, tiny_encoder, out) == 0
    assert duplicates.main(["--index", str(out), "--threshold", "0.95", "--detector", "encoder"]) == 0
    found = json.loads((out / "duplicates.json").read_text())
    assert found["exact"] == [{"sha256": found["exact"][0]["sha256"],
                               "paths": ["copy_of_cross.png", "cross_3_000.png"],
                               "keeper": "copy_of_cross.png"}]  # same pixels and size: the newer file
    near = [g for g in found["near"] if "ellipse_again.jpg" in g["paths"]]
    assert near and "ellipse_3_000.png" in near[0]["paths"] and all(p["score"] >= 0.95 for p in near[0]["pairs"])

    assert cluster.main(["--index", str(out), "--k-max", "5", "--nredo", "2"]) == 0
    result = json.loads((out / "clusters.json").read_text())
    assert 2 <= result["k"] <= 5 and "neighbour graph" in result["chosen_by"]
    assert sum(result["sizes"]) == 50 and len(result["assignments"]) == 50
    assert len(result["central"]) == result["k"] == len(result["quality"]["cluster_cohesion"])
    assert result["algorithm"] == "consensus" == result["settings"]["algorithm"]
    assert result["settings"]["nredo"] == 2 and result["settings"]["k_max"] == 5
    assert 0 <= result["quality"]["cohesion"] <= 1 and -1 <= result["quality"]["stability_ari"] <= 1
    load_index(out)  # files beside the index do not disturb it


@pytest.mark.parametrize("on_disk", [False, True], ids=["ram", "ondisk"])
def test_three_shards_merged_equal_single_build(folder, tiny_encoder, tmp_path, on_disk, capsys):
    """build_index --shard i/3 three times, merge_shards: same paths, vectors and neighbours as one build."""
    assert build(folder, tiny_encoder, tmp_path / "single", "--index-key", "Flat") == 0
    for i in (2, 0, 1):  # any order, as ranks finish
        assert build(folder, tiny_encoder, tmp_path / "shards", "--shard", f"{i}/3") == 0
    # IVF4,Flat with nprobe 4 scans every list: exact, so comparable with the Flat build
    extra = ["--on-disk"] if on_disk else []
    assert merge_shards.main(["--shards", str(tmp_path / "shards"), "--out", str(tmp_path / "merged"),
                              "--index-key", "IVF4,Flat", *extra]) == 0
    single, merged = load_index(tmp_path / "single"), load_index(tmp_path / "merged")
    assert [it.path for it in merged.manifest.items] == [it.path for it in single.manifest.items]
    np.testing.assert_allclose(merged.embeddings, single.embeddings, atol=1e-6)
    assert merged.manifest.layout == ({"invlists": "ondisk", "ivfdata": "index.ivfdata", "shards": 3} if on_disk
                                      else {"invlists": "ram", "shards": 3})
    assert merged.manifest.skipped["total"] == single.manifest.skipped["total"]
    assert (tmp_path / "merged" / "index.ivfdata").is_file() == on_disk
    q = single.embeddings[:6]
    a, b = search_vectors(single, q, 5), search_vectors(merged, q, 5)
    assert [[h.path for h in r] for r in a] == [[h.path for h in r] for r in b]

    # a missing shard, and --update of an on-disk index, are one-line refusals
    shutil.rmtree(next((tmp_path / "shards").glob("shard-00001-*")))
    assert merge_shards.main(["--shards", str(tmp_path / "shards"), "--out", str(tmp_path / "m2")]) == 2
    assert "complete set" in capsys.readouterr().err
    if on_disk:
        assert build(folder, tiny_encoder, tmp_path / "merged", "--update") == 2
        assert "on disk" in capsys.readouterr().err
