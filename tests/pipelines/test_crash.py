"""Crash safety: each CLI is SIGKILLed at a named point (`encoders.store.crash_point`, set by
SSL_CRASH_AT); what is on disk afterwards must be the previous good state or the new one,
never half of one, and a rerun must finish and clear the leftovers."""
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from encoders.files import CRASH_ENV
from encoders.store import EncoderLoadError, load_encoder
from index.store import load_index
from pipelines import cluster, pretrain
from tests.conftest import make_shape_folder
from tests.pipelines.test_build_index import build, results_by_path
from tests.pipelines.test_pretrain import losses, run_pretrain

REPO = Path(__file__).resolve().parents[2]
START_THREADS = torch.get_num_threads()  # read at collection, before any test ran: what a subprocess gets


@pytest.fixture(autouse=True)
def same_threads_as_a_subprocess():
    """build_index sets torch's thread count in the process that calls it; in-process runs
    are compared with subprocess runs here, and another thread count sums in another order
    (the resumed losses differed in the 4th digit after a build test had run)."""
    torch.set_num_threads(START_THREADS)
    yield
    torch.set_num_threads(START_THREADS)  # also for the module fixtures the next test sets up
QUERIES = ["ellipse_1_000.png", "cross_1_001.jpg", "triangle_1_002.png"]


def run_killed_at(point: str, module: str, *args) -> None:
    """`python -m module args` with SSL_CRASH_AT=point; it must die by SIGKILL there."""
    proc = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO, text=True, timeout=120,
                          env={**os.environ, CRASH_ENV: point}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.returncode == -signal.SIGKILL, f"{module} did not reach {point}:\n{proc.stderr[-3000:]}"


def state(index_dir: Path) -> dict:
    """What a reader of the index sees: items, embeddings, search results, and clusters if any."""
    loaded = load_index(index_dir, use_gpu=False)
    clusters = index_dir / "clusters.json"
    return {"items": [(it.path, it.id, it.sha256) for it in loaded.manifest.items],
            "embeddings": loaded.embeddings.tobytes(), "results": results_by_path(index_dir, QUERIES),
            "clusters": clusters.read_bytes() if clusters.exists() else None}


def leftovers(index_dir: Path) -> list[Path]:
    return list(index_dir.parent.glob(f".{index_dir.name}.tmp-*")) + list(index_dir.glob(".*.tmp"))


@pytest.mark.parametrize("update", [False, True], ids=["build", "update"])
@pytest.mark.parametrize("point, after", [("embed:after_batch", "previous"), ("index:before_swap", "previous"),
                                          ("index:after_swap", "new")])
def test_killed_build_leaves_a_whole_index(tiny_encoder, tmp_path, update, point, after):
    data = make_shape_folder(tmp_path / "data", per_class=8, seed=1)
    out, fresh = tmp_path / "index", tmp_path / "fresh"
    assert build(data, tiny_encoder, out) == 0
    assert cluster.main(["--index", str(out), "-k", "3", "--nredo", "1"]) == 0
    previous = state(out)
    manifest = (out / "manifest.json").read_bytes()
    for p in sorted(data.glob("rectangle_*"))[:3]:
        p.unlink()
    make_shape_folder(data / "new", per_class=1, seed=2)
    extra = ["--update"] if update else []
    shutil.copytree(out, fresh)
    assert build(data, tiny_encoder, fresh, *extra) == 0  # the index the killed command was making
    new = state(fresh)
    assert new["clusters"] is None and new["items"] != previous["items"]  # a new index drops stale clusters

    run_killed_at(point, "pipelines.build_index", "--data", data, "--encoder", tiny_encoder, "--out", out,
                  "--workers", "0", "--batch-size", "8", "--no-progress", *extra)
    assert state(out) == (previous if after == "previous" else new)
    if after == "previous":
        assert (out / "manifest.json").read_bytes() == manifest
    # the rerun finishes and deletes what the killed one left (temp folder, or the swapped-out index)
    assert point == "embed:after_batch" or leftovers(out)
    assert build(data, tiny_encoder, out, *extra) == 0
    assert state(out) == new and not leftovers(out)


def test_killed_cluster_keeps_previous_clusters(tiny_encoder, tmp_path):
    data = make_shape_folder(tmp_path / "data", per_class=8, seed=1)
    out = tmp_path / "index"
    assert build(data, tiny_encoder, out) == 0
    assert cluster.main(["--index", str(out), "-k", "2", "--nredo", "1"]) == 0
    previous = state(out)
    run_killed_at("replace:clusters.json", "pipelines.cluster", "--index", out, "-k", "4", "--nredo", "1")
    assert state(out) == previous
    assert len(list(out.glob(".clusters.json.*.tmp"))) == 1  # the new result was written, never swapped in
    assert cluster.main(["--index", str(out), "-k", "4", "--nredo", "1"]) == 0
    assert json.loads((out / "clusters.json").read_text())["k"] == 4 and not leftovers(out)
    assert state(out)["results"] == previous["results"]


PRETRAIN = ["--method", "moco", "--epochs", "2", "--batch-size", "16", "--queue-size", "64", "--seed", "3"]  # 8 steps


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return make_shape_folder(tmp_path_factory.mktemp("images"), per_class=16)  # 64 images


@pytest.fixture(scope="module")
def uninterrupted(images, tmp_path_factory) -> tuple[dict, dict]:
    out = tmp_path_factory.mktemp("full") / "run"
    return losses(run_pretrain(images, out, *PRETRAIN)), load_file(out / "encoder.safetensors")


@pytest.mark.parametrize("point, step_on_disk", [("pretrain:after_step:5", 5), ("replace:checkpoint.pt", 2),
                                                 ("replace:encoder.safetensors", 8)])
def test_killed_pretrain_resumes_to_the_uninterrupted_result(images, tmp_path, uninterrupted, point, step_on_disk):
    full_losses, full_weights = uninterrupted
    out = tmp_path / "run"
    run_pretrain(images, out, *PRETRAIN, "--max-steps", "2")  # a clean stop: checkpoint of step 2
    run_killed_at(point, "pipelines.pretrain", "--data", images, "--out", out, "--backbone", "smallcnn",
                  "--image-size", "16", "--workers", "0", "--no-progress", "--log-every", "1",
                  *PRETRAIN, "--resume", "--checkpoint-minutes", "0")  # checkpoint after every step
    assert pretrain.load_checkpoint(out, "cpu")["step"] == step_on_disk
    load_encoder(out)  # the encoder of the clean stop, or of the end: whole either way
    with open(out / "metrics.jsonl", "a") as f:  # a kill during a metrics write leaves a torn line
        f.write('{"step": 99, "lo')
    resumed = losses(run_pretrain(images, out, *PRETRAIN, "--resume"))
    assert sorted(resumed) == sorted(full_losses) == list(range(1, 9))
    for step in range(1, 9):
        assert resumed[step] == pytest.approx(full_losses[step], rel=1e-5, abs=1e-6), step
    weights = load_file(out / "encoder.safetensors")
    for name, w in full_weights.items():
        np.testing.assert_allclose(weights[name].numpy(), w.numpy(), rtol=1e-4, atol=1e-6, err_msg=name)
    assert not list(out.glob(".*.tmp"))


def test_new_run_killed_in_an_old_folder_leaves_no_mismatched_encoder(images, tmp_path):
    out = tmp_path / "run"
    run_pretrain(images, out, *PRETRAIN, "--max-steps", "1")  # an encoder at image size 16
    run_killed_at("pretrain:after_step:1", "pipelines.pretrain", "--data", images, "--out", out, "--backbone",
                  "smallcnn", "--image-size", "24", "--workers", "0", "--no-progress", *PRETRAIN)
    with pytest.raises(EncoderLoadError, match="has no encoder.safetensors"):  # not 16-px weights as a 24-px encoder
        load_encoder(out)
