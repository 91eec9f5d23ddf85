import math

import pytest
import torch
import torch.nn.functional as F

from encoders.losses import MoCoInfoNCELoss, NTXentLoss


def ntxent_naive(z_a, z_b, t):
    """The NT-Xent definition, one anchor at a time."""
    z = F.normalize(torch.cat([z_a, z_b]).double(), dim=1)
    n2 = z.shape[0]
    n = n2 // 2
    total = 0.0
    for i in range(n2):
        pos = (i + n) % n2
        num = math.exp(float(z[i] @ z[pos]) / t)
        den = sum(math.exp(float(z[i] @ z[j]) / t) for j in range(n2) if j != i)
        total += -math.log(num / den)
    return total / n2


@pytest.mark.parametrize("n", [1, 2, 7])
@pytest.mark.parametrize("d", [3, 16])
@pytest.mark.parametrize("t", [0.1, 0.5, 1.0])
def test_ntxent_matches_naive_loop(n, d, t):
    g = torch.Generator().manual_seed(n * 100 + d)
    z_a, z_b = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    got = NTXentLoss(t)(z_a, z_b)
    assert got.item() == pytest.approx(ntxent_naive(z_a, z_b, t), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("n", [2, 5, 64])
def test_ntxent_equal_embeddings_is_log_2n_minus_1(n):
    z = torch.ones(n, 8)
    assert NTXentLoss(0.3)(z, z).item() == pytest.approx(math.log(2 * n - 1), rel=1e-6)


def test_ntxent_gradient_flows_and_scale_invariant():
    z_a, z_b = torch.randn(4, 5, requires_grad=True), torch.randn(4, 5)
    loss = NTXentLoss(0.5)(z_a, z_b)
    loss.backward()
    assert z_a.grad is not None and torch.isfinite(z_a.grad).all()
    assert NTXentLoss(0.5)(3 * z_a.detach(), z_b).item() == pytest.approx(loss.item(), rel=1e-6)


def test_losses_reject_bad_arguments():
    with pytest.raises(ValueError):
        NTXentLoss(0.0)
    with pytest.raises(ValueError):
        MoCoInfoNCELoss(-1)
    with pytest.raises(ValueError):
        NTXentLoss()(torch.randn(3, 4), torch.randn(2, 4))


@pytest.mark.parametrize("t", [0.07, 0.2])
def test_moco_infonce_matches_naive_loop(t):
    g = torch.Generator().manual_seed(1)
    q, k, queue = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g), torch.randn(11, 8, generator=g)
    qn, kn, negn = (F.normalize(x.double(), dim=1) for x in (q, k, queue))
    expect = 0.0
    for i in range(5):
        logits = [float(qn[i] @ kn[i]) / t] + [float(qn[i] @ negn[j]) / t for j in range(11)]
        expect += -logits[0] + math.log(sum(math.exp(v) for v in logits))
    expect /= 5
    assert MoCoInfoNCELoss(t)(q, k, queue).item() == pytest.approx(expect, rel=1e-5)


def test_moco_infonce_equal_embeddings_is_log_k_plus_1():
    z = torch.ones(4, 6)
    assert MoCoInfoNCELoss(0.2)(z, z, torch.ones(9, 6)).item() == pytest.approx(math.log(10), rel=1e-6)
