from pathlib import Path

import pytest

from pipelines import pretrain
from tests.conftest import make_shape_folder


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    """A smallcnn run at image size 16, one epoch (trained once per session)."""
    data = make_shape_folder(tmp_path_factory.mktemp("pretrain_data"), per_class=16, seed=11)
    out = tmp_path_factory.mktemp("run") / "run"
    assert pretrain.main(["--data", str(data), "--out", str(out), "--backbone", "smallcnn", "--image-size", "16",
                          "--epochs", "1", "--batch-size", "32", "--workers", "0", "--no-progress"]) == 0
    return out
