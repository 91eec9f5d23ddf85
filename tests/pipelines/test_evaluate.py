"""pipelines.evaluate end to end: its numbers equal the definitions computed here by hand
on the same features, and separable classes are separated."""
import json
import math

import numpy as np
import pytest
from PIL import Image

from encoders.embed import embed_tensor
from encoders.store import load_encoder
from pipelines import evaluate
from tests.conftest import make_shape_folder

COLOURS = {"blue": (20, 40, 220), "green": (30, 200, 40), "red": (220, 30, 30)}


def colour_folder(root, per_class, seed):
    """One class per colour: each image its class colour plus noise (raw pixels separate them)."""
    rng = np.random.default_rng(seed)
    for name, rgb in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            arr = np.clip(np.array(rgb) + rng.normal(0, 25, (20, 20, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / name / f"{i}.png")
    return root


def knn_naive(ftr, ytr, fte, k, t):
    """Weighted kNN (InstDisc), one query at a time: the k most similar vote exp(sim / t)."""
    preds = []
    for q in fte:
        sims = [float(np.dot(q, f)) for f in ftr]
        top = sorted(range(len(sims)), key=lambda j: -sims[j])[:k]
        votes = {}
        for j in top:
            votes[int(ytr[j])] = votes.get(int(ytr[j]), 0.0) + math.exp(sims[j] / t)
        preds.append(max(votes, key=votes.get))
    return np.array(preds)


def test_evaluate_equals_knn_by_hand_and_separates_separable_classes(tiny_encoder, tmp_path, capsys):
    train = make_shape_folder(tmp_path / "train", per_class=12, labelled=True, seed=5, size=24)
    test = make_shape_folder(tmp_path / "test", per_class=6, labelled=True, seed=6, size=24)
    assert evaluate.main(["--encoder", str(tiny_encoder), "--train", str(train), "--test", str(test),
                          "--k", "10", "--probe-iters", "50", "--out", str(tmp_path / "res.json")]) == 0
    res = json.loads((tmp_path / "res.json").read_text())
    assert res["train_size"] == 48 and res["test_size"] == 24
    assert "kNN top-1" in capsys.readouterr().out

    encoder = load_encoder(tiny_encoder)
    xtr, ytr, _ = evaluate.decode_labelled(str(train), encoder.cfg.image_size)
    xte, yte, _ = evaluate.decode_labelled(str(test), encoder.cfg.image_size)
    assert list(ytr) == sorted(ytr) and set(ytr) == {0, 1, 2, 3}  # one label per class folder
    pred = knn_naive(embed_tensor(encoder, xtr), ytr, embed_tensor(encoder, xte), k=10, t=0.1)
    assert res["pretrained"]["knn_top1"] == pytest.approx(100 * float((pred == yte).mean()))

    ctrain, ctest = colour_folder(tmp_path / "ctrain", 10, 1), colour_folder(tmp_path / "ctest", 5, 2)
    assert evaluate.main(["--encoder", str(tiny_encoder), "--train", str(ctrain), "--test", str(ctest),
                          "--k", "5", "--probe-iters", "50", "--baselines", "--out", str(tmp_path / "c.json")]) == 0
    raw = json.loads((tmp_path / "c.json").read_text())["raw_pixels"]
    assert raw["knn_top1"] == 100.0 and raw["linear_top1"] == 100.0


def test_evaluate_missing_encoder_is_a_clear_error(tmp_path, capsys):
    assert evaluate.main(["--encoder", str(tmp_path), "--dataset", "fashion-mnist"]) == 2
    assert "no encoder.safetensors" in capsys.readouterr().err
