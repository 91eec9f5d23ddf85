"""The losses of 20 fixed-seed steps of every method, through the real pretraining path with
its defaults, equal the recorded ones (tests/pipelines/fixed_seed_losses.json): a refactor of
the configuration, the methods or the loop that changes a default or a step shows up here."""
import json
from pathlib import Path

import pytest
import torch

from pipelines import pretrain
from tests.conftest import make_shape_folder

RECORDED = json.loads((Path(__file__).parent / "fixed_seed_losses.json").read_text())


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_shape_folder(tmp_path_factory.mktemp("fixed_seed"), per_class=16, seed=5)  # 64 images


@pytest.fixture()
def one_thread():
    """Recorded with one torch thread: reductions split over threads round differently."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("method", sorted(RECORDED))
def test_twenty_steps_give_the_recorded_losses(folder, tmp_path, method, one_thread):
    out = tmp_path / method
    assert pretrain.main(["--data", str(folder), "--out", str(out), "--method", method, "--backbone", "smallcnn",
                          "--image-size", "16", "--batch-size", "8", "--epochs", "3", "--max-steps", "20",
                          "--seed", "7", "--workers", "0", "--no-progress", "--log-every", "1"]) == 0
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in recs if "loss" in r]
    assert losses == pytest.approx(RECORDED[method], rel=1e-4, abs=1e-6)
