"""The main job's pipeline part, end to end, on a small subset of the sample collection."""
import json

import pytest

from encoders.fashion_mnist import FASHION_MNIST_DIR
from index.store import load_index
from pipelines import demo


@pytest.mark.skipif(not (FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
                    reason="Debian package dataset-fashion-mnist not installed (make test installs it)")
def test_demo_pipeline_on_a_subset(tmp_path):
    data, run, index = tmp_path / "sample", tmp_path / "run", tmp_path / "index"
    args = ["--data", str(data), "--run", str(run), "--index", str(index), "--fmnist-limit", "300",
            "--minutes", "0.25", "--batch-size", "64", "--no-eval", "--no-serve"]
    assert demo.main(args) == 0
    assert len(list((data / "fashion-mnist").glob("*.png"))) == 300
    photos = list((data / "photos").iterdir())
    assert photos, "scikit-image / scikit-learn ship sample photos"
    loaded = load_index(index)
    assert loaded.manifest.count == 300 + len(photos)
    clusters = json.loads((index / "clusters.json").read_text())
    assert clusters
    # running it again reuses the encoder and updates the index in place
    mtime = (run / "encoder.safetensors").stat().st_mtime_ns
    assert demo.main(args) == 0
    assert (run / "encoder.safetensors").stat().st_mtime_ns == mtime
    assert load_index(index).manifest.count == loaded.manifest.count
