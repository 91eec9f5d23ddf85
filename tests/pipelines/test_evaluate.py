import json

from pipelines import evaluate, pretrain
from tests.conftest import make_shape_folder


def test_evaluate_labelled_folders_end_to_end(shape_folder, tmp_path, capsys):
    run = tmp_path / "run"
    assert pretrain.main(["--data", str(shape_folder), "--out", str(run), "--backbone", "smallcnn",
                          "--image-size", "16", "--batch-size", "32", "--epochs", "1", "--workers", "0",
                          "--no-progress"]) == 0
    train = make_shape_folder(tmp_path / "train", per_class=20, labelled=True, seed=5, size=24)
    test = make_shape_folder(tmp_path / "test", per_class=10, labelled=True, seed=6, size=24)
    assert evaluate.main(["--encoder", str(run), "--train", str(train), "--test", str(test),
                          "--k", "10", "--probe-iters", "50", "--baselines"]) == 0
    res = json.loads((run / "eval_test.json").read_text())
    assert res["train_size"] == 80 and res["test_size"] == 40
    for key in ("pretrained", "random_init", "raw_pixels"):
        assert 0 <= res[key]["knn_top1"] <= 100 and 0 <= res[key]["linear_top1"] <= 100
    assert "kNN top-1" in capsys.readouterr().out


def test_evaluate_missing_encoder_is_a_clear_error(tmp_path, capsys):
    assert evaluate.main(["--encoder", str(tmp_path), "--dataset", "fashion-mnist"]) == 2
    assert "no encoder.safetensors" in capsys.readouterr().err
