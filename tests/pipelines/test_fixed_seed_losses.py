"""The losses of 20 fixed-seed steps of every method, through the real pretraining path with
its defaults, equal the recorded ones (tests/pipelines/fixed_seed_losses.json): a refactor of
the configuration, the methods or the loop that changes a default or a step shows up here.

The losses are recorded per CPU vendor: oneDNN's kernels (and the automatic precision, bf16 on
CPUs with AMX) round differently on Intel and AMD, by up to a few percent after 20 steps.
Record them on another kind of CPU with `python -m tests.pipelines.test_fixed_seed_losses`."""
import json
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from pipelines import pretrain
from tests.conftest import make_shape_folder

RECORDS = Path(__file__).parent / "fixed_seed_losses.json"
METHODS = ("byol", "deepcluster", "dino", "moco", "npid", "simclr", "swav")


def cpu_vendor() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return "unknown"
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("vendor_id")), "unknown")


RECORDED = json.loads(RECORDS.read_text()).get(cpu_vendor())


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


def twenty_steps(folder: Path, out: Path, method: str) -> list[float]:
    assert pretrain.main(["--data", str(folder), "--out", str(out), "--method", method, "--backbone", "smallcnn",
                          "--image-size", "16", "--batch-size", "8", "--epochs", "3", "--max-steps", "20",
                          "--seed", "7", "--workers", "0", "--no-progress", "--log-every", "1"]) == 0
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in recs if "loss" in r]


@pytest.mark.skipif(RECORDED is None, reason=f"no losses recorded for this CPU ({cpu_vendor()}): record them "
                                             f"with python -m tests.pipelines.test_fixed_seed_losses")
@pytest.mark.parametrize("method", METHODS)
def test_twenty_steps_give_the_recorded_losses(folder, tmp_path, method, one_thread):
    assert twenty_steps(folder, tmp_path / method, method) == pytest.approx(RECORDED[method], rel=1e-4, abs=1e-6)


if __name__ == "__main__":  # record this CPU's losses (after checking that no behaviour was meant to change)
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp())
    shapes = make_shape_folder(tmp / "shapes", per_class=16, seed=5)
    records = json.loads(RECORDS.read_text())
    records[cpu_vendor()] = {m: twenty_steps(shapes, tmp / m, m) for m in METHODS}
    RECORDS.write_text(json.dumps(records, indent=1))
    sys.exit(0)
