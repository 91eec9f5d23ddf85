import math

import numpy as np
import pytest
import torch

from encoders.evaluation import knn_accuracy, knn_predict, linear_probe_accuracy


def knn_naive(train, labels, test, c, k, t):
    preds = []
    for q in test:
        sims = [(float(q @ x), int(y)) for x, y in zip(train, labels)]
        sims.sort(key=lambda s: -s[0])
        votes = [0.0] * c
        for s, y in sims[:k]:
            votes[y] += math.exp(s / t)
        preds.append(int(np.argmax(votes)))
    return preds


@pytest.mark.parametrize("k", [1, 5, 200])
def test_knn_matches_naive_loop(k):
    g = torch.Generator().manual_seed(k)
    train = torch.nn.functional.normalize(torch.randn(60, 8, generator=g), dim=1)
    labels = torch.randint(0, 4, (60,), generator=g)
    test = torch.nn.functional.normalize(torch.randn(25, 8, generator=g), dim=1)
    got = knn_predict(train, labels, test, 4, k=k, temperature=0.1, chunk=7).tolist()
    assert got == knn_naive(train, labels, test, 4, min(k, 60), 0.1)


def test_knn_and_probe_on_separable_clusters():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 16))
    y = rng.integers(0, 3, 600)
    x = centers[y] + 0.1 * rng.normal(size=(600, 16))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    assert knn_accuracy(x[:500], y[:500], x[500:], y[500:], k=20) == 100.0
    assert linear_probe_accuracy(x[:500], y[:500], x[500:], y[500:]) == 100.0
    # random labels cannot be predicted: chance level, far below 100
    y_rand = rng.integers(0, 3, 600)
    assert knn_accuracy(x[:500], y_rand[:500], x[500:], y_rand[500:], k=20) < 60
