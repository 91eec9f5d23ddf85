"""A full or failing disk in the middle of every write the pipelines make (`tests/faults.py`): each
CLI prints one `error:` line naming the path, the free space and the space needed, exits 1, keeps
what was there (index, checkpoint, snapshot, export) loadable and equal to before, leaves no temp
file, and the same command completes once the space is freed."""
from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest

from encoders.files import WriteFailed
from encoders.store import load_encoder
from index.store import load_index
from pipelines import cluster, demo, duplicates, merge_shards, pretrain
from pipelines.run_dir import save_snapshot
from tests.conftest import make_shape_folder
from tests.faults import failing_writes, fill, small_disk
from tests.pipelines.test_build_index import build
from tests.pipelines.test_crash import leftovers, state
from tests.pipelines.test_demo import PRETRAIN as DEMO_PRETRAIN
from tests.pipelines.test_demo import fake_report

SMALL_RUN = ["--backbone", "smallcnn", "--image-size", "16", "--batch-size", "16", "--workers", "0",
             "--no-progress", "--method", "simclr", "--epochs", "3"]


def disk_error(capsys, path) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]  # the rest: progress bars
    assert len(lines) == 1 and "Traceback" not in err, err
    line = lines[0]
    assert line.startswith(f"error: cannot write {path}"), line
    assert " free there, " in line and " needed" in line, line
    return line


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp" in p.name]


@pytest.fixture
def data(tmp_path) -> Path:
    return make_shape_folder(tmp_path / "data", per_class=6, seed=1)


@pytest.fixture
def index(data, tiny_encoder, tmp_path) -> Path:
    out = tmp_path / "index"
    assert build(data, tiny_encoder, out) == 0
    assert cluster.main(["--index", str(out), "-k", "3", "--nredo", "1", "--stability-runs", "0"]) == 0
    return out


@pytest.mark.parametrize("update", [False, True], ids=["build", "update"])
@pytest.mark.parametrize("where, code", [("index.faiss", errno.ENOSPC), ("embeddings.npy", errno.ENOSPC),
                                         ("manifest.json", errno.EIO)])
def test_build_on_a_full_disk_keeps_the_previous_index(data, index, tiny_encoder, monkeypatch, capsys, where, code,
                                                       update):
    previous = state(index)
    make_shape_folder(data / "new", per_class=1, seed=2)
    extra = ["--update"] if update else []
    plan = failing_writes(monkeypatch, where, code)
    assert build(data, tiny_encoder, index, *extra) == 1
    line = disk_error(capsys, index)
    assert plan.fired and os.strerror(code) in line
    assert state(index) == previous and not leftovers(index)
    plan.free_space()
    assert build(data, tiny_encoder, index, *extra) == 0
    assert len(load_index(index, use_gpu=False).manifest.items) == len(previous["items"]) + 4
    assert not leftovers(index)


def test_merge_on_a_full_disk_keeps_the_previous_index(data, tiny_encoder, tmp_path, monkeypatch, capsys):
    shards, out = tmp_path / "shards", tmp_path / "merged"
    for i in range(2):
        assert build(data, tiny_encoder, shards, "--shard", f"{i}/2") == 0
    merge = ["--shards", str(shards), "--out", str(out), "--index-key", "IVF2,Flat", "--train-size", "24"]
    assert merge_shards.main(merge) == 0
    previous = load_index(out, use_gpu=False).embeddings.tobytes()
    for where, path in (("shard-00001-of-00002.faiss", shards / "work" / "shard-00001-of-00002.faiss"),
                        ("embeddings.npy", out)):
        plan = failing_writes(monkeypatch, where)
        assert merge_shards.main(merge) == 1
        disk_error(capsys, path)
        assert load_index(out, use_gpu=False).embeddings.tobytes() == previous
        assert not leftovers(out) and not temp_files(shards)
        plan.free_space()
        monkeypatch.undo()
    assert merge_shards.main(merge) == 0


def test_checkpoint_on_a_full_disk_keeps_the_previous_one_and_resumes(data, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    assert pretrain.main(["--data", str(data), "--out", str(run), *SMALL_RUN, "--max-steps", "1"]) == 0
    before = (run / "checkpoint.pt").read_bytes()
    plan = failing_writes(monkeypatch, "checkpoint.pt")
    assert pretrain.main(["--data", str(data), "--out", str(run), *SMALL_RUN, "--resume"]) == 1
    disk_error(capsys, run / "checkpoint.pt")
    assert (run / "checkpoint.pt").read_bytes() == before and not temp_files(run)
    assert pretrain.load_checkpoint(run, "cpu")["step"] == 1
    plan.free_space()
    assert pretrain.main(["--data", str(data), "--out", str(run), *SMALL_RUN, "--resume"]) == 0
    assert pretrain.load_checkpoint(run, "cpu")["step"] > 1


@pytest.mark.parametrize("where", ["encoder.safetensors", "summary.json"])
def test_snapshot_on_a_full_disk_leaves_no_half_snapshot(tiny_encoder, tmp_path, monkeypatch, where):
    encoder = load_encoder(tiny_encoder)
    save_snapshot(tmp_path, encoder, 1, 1.0)
    failing_writes(monkeypatch, where)
    with pytest.raises(WriteFailed, match="free there"):
        save_snapshot(tmp_path, encoder, 2, 2.0)
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == ["step0000001"]
    load_encoder(tmp_path / "snapshots" / "step0000001")
    monkeypatch.undo()
    load_encoder(save_snapshot(tmp_path, encoder, 2, 2.0))


def test_cluster_and_duplicate_exports_on_a_full_disk(index, tmp_path, monkeypatch, capsys):
    csv_path = tmp_path / "out" / "clusters.csv"
    assert cluster.main(["--index", str(index), "-k", "2", "--nredo", "1", "--export", str(csv_path)]) == 0
    clusters_json, csv_text = (index / "clusters.json").read_bytes(), csv_path.read_bytes()
    cases = [("clusters.json", index / "clusters.json", ["--export", str(csv_path)]),
             ("clusters.csv", csv_path, ["--export", str(csv_path)]),
             ("cluster_00/", tmp_path / "folders", ["--folders", str(tmp_path / "folders"), "--copy"])]
    for where, path, extra in cases:
        plan = failing_writes(monkeypatch, where)
        assert cluster.main(["--index", str(index), "-k", "4", "--nredo", "1", *extra]) == 1
        disk_error(capsys, path)
        if where != "clusters.json":  # the CSV and the folders are written after clusters.json
            clusters_json = (index / "clusters.json").read_bytes()
        assert (index / "clusters.json").read_bytes() == clusters_json and csv_path.read_bytes() == csv_text
        assert not (tmp_path / "folders").exists() and not temp_files(tmp_path)
        plan.free_space()
        monkeypatch.undo()
        assert cluster.main(["--index", str(index), "-k", "4", "--nredo", "1", *extra]) == 0
        clusters_json, csv_text = (index / "clusters.json").read_bytes(), csv_path.read_bytes()
        shutil.rmtree(tmp_path / "folders", ignore_errors=True)
    dup_csv = tmp_path / "dups.csv"
    failing_writes(monkeypatch, "dups.csv")
    assert duplicates.main(["--index", str(index), "--export", str(dup_csv), "--detector", "encoder"]) == 1
    disk_error(capsys, dup_csv)
    assert not dup_csv.exists() and not temp_files(tmp_path)
    monkeypatch.undo()
    assert duplicates.main(["--index", str(index), "--export", str(dup_csv), "--detector", "encoder"]) == 0


def test_demo_on_a_full_disk_keeps_its_index(data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    fake_report(monkeypatch, [])
    args = ["--data", str(data), "--minutes", "0.2", "--pretrain-args", DEMO_PRETRAIN, "--no-serve",
            "--index", str(tmp_path / "idx"), "--run", str(tmp_path / "run")]
    assert demo.main(args) == 0
    previous = state(tmp_path / "idx")
    make_shape_folder(data / "new", per_class=1, seed=2)
    capsys.readouterr()
    plan = failing_writes(monkeypatch, "index.faiss")
    assert demo.main(args) == 1
    disk_error(capsys, tmp_path / "idx")
    assert state(tmp_path / "idx") == previous and not leftovers(tmp_path / "idx")
    plan.free_space()
    assert demo.main(args) == 0
    assert len(state(tmp_path / "idx")["items"]) == len(previous["items"]) + 4


@pytest.fixture
def disk(tmp_path):
    yield from small_disk(tmp_path / "disk", 8192)


def test_a_real_full_disk(data, tiny_encoder, disk, tmp_path, capsys):
    """The same on a real 8 MB tmpfs, with faiss, numpy and the CSV writer failing for real."""
    out = disk / "index"
    assert build(data, tiny_encoder, out) == 0
    previous = state(out)
    filler = fill(disk, leave_kb=16)
    make_shape_folder(data / "new", per_class=1, seed=2)
    assert build(data, tiny_encoder, out, "--update") == 1
    line = disk_error(capsys, out)
    assert "not enough space" in line or "No space left" in line
    assert state(out) == previous and not leftovers(out)
    csv_path = disk / "clusters.csv"
    fill(disk, leave_kb=0, name="filler2.bin")
    assert cluster.main(["--index", str(out), "-k", "2", "--nredo", "1", "--export", str(csv_path)]) == 1
    capsys.readouterr()
    assert not csv_path.exists() and not temp_files(disk)
    filler.unlink()
    (disk / "filler2.bin").unlink()
    assert build(data, tiny_encoder, out, "--update") == 0
    assert cluster.main(["--index", str(out), "-k", "2", "--nredo", "1", "--export", str(csv_path)]) == 0
    assert json.loads((out / "clusters.json").read_text())["k"] == 2 and csv_path.is_file()
