"""SwAV (Sinkhorn, swapped prediction, queue, frozen prototypes) and NPID (memory bank)
against their definitions, written plainly here."""
import math

import pytest
import torch
import torch.nn.functional as F

from encoders.backbones import build_backbone
from encoders.methods import NPID, SwAV
from encoders.methods.npid import NPIDLoss, NPIDSettings
from encoders.methods.swav import SwAVLoss, SwAVSettings, sinkhorn


def sinkhorn_naive(scores, iters, eps):
    """Sinkhorn-Knopp on P = exp(S / eps), element by element: alternately make every
    prototype's (column) mass 1/K and every sample's (row) mass 1/B; rows scaled to sum 1."""
    b, k = scores.shape
    p = [[math.exp(float(scores[i, j]) / eps) for j in range(k)] for i in range(b)]
    total = sum(map(sum, p))
    p = [[v / total for v in row] for row in p]
    for _ in range(iters):
        for j in range(k):
            col = sum(p[i][j] for i in range(b))
            for i in range(b):
                p[i][j] /= col * k
        for i in range(b):
            row = sum(p[i])
            p[i] = [v / (row * b) for v in p[i]]
    return torch.tensor([[v * b for v in row] for row in p], dtype=torch.float64)


@pytest.mark.parametrize("b,k", [(6, 4), (5, 9)])
def test_sinkhorn_equals_naive_and_has_the_required_sums(b, k):
    scores = F.normalize(torch.randn(b, k, generator=torch.Generator().manual_seed(b)), dim=1)
    q = sinkhorn(scores, iterations=3, epsilon=0.05)
    torch.testing.assert_close(q.double(), sinkhorn_naive(scores, 3, 0.05), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(q.sum(1), torch.ones(b))  # each sample's code is a distribution
    q_conv = sinkhorn(scores, iterations=200, epsilon=0.5)  # converged: every prototype gets B/K samples
    torch.testing.assert_close(q_conv.sum(0), torch.full((k,), b / k), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(q_conv.sum(1), torch.ones(b))


def test_swav_loss_equals_a_naive_loop():
    g = torch.Generator().manual_seed(0)
    scores = [torch.randn(4, 5, generator=g) for _ in range(3)]
    codes = [torch.softmax(torch.randn(4, 5, generator=g), 1) for _ in range(2)]
    want = 0.0
    for gi in range(2):
        sub = 0.0
        for v in range(3):
            if v != gi:
                for i in range(4):
                    logp = torch.log_softmax(scores[v][i] / 0.1, 0)
                    sub += float(-(codes[gi][i] * logp).sum()) / 4
        want += sub / 2
    assert SwAVLoss(0.1)(scores, codes).item() == pytest.approx(want / 2, rel=1e-5)


def small_swav(**kw):
    torch.manual_seed(0)
    settings = SwAVSettings(**{"proj_dim": 8, "prototypes": 6, "local_crops": 1, "local_size": 8,
                               "freeze_head_steps": 0, **kw})
    return SwAV(build_backbone("smallcnn"), settings)


def test_swav_method_codes_from_global_views_and_prototypes_normalised_after_each_step():
    m = small_swav().eval()
    views = [torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16), torch.randn(4, 3, 8, 8)]
    loss = m.training_loss(views, torch.arange(4))
    with torch.no_grad():
        scores = [m(v) @ m.prototypes.weight.T for v in views]
    codes = [sinkhorn(s, 3, 0.05) for s in scores[:2]]
    torch.testing.assert_close(loss, SwAVLoss(0.1)(scores, codes))
    with torch.no_grad():
        m.prototypes.weight.mul_(3.0)
    m.after_optimizer_step(0, 10)
    torch.testing.assert_close(m.prototypes.weight.norm(dim=1), torch.ones(6))


def test_swav_prototypes_frozen_first_steps_then_trained():
    m = small_swav(freeze_head_steps=1)
    views = [torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16), torch.randn(4, 3, 8, 8)]
    m.training_loss(views, torch.arange(4)).backward()
    assert float(m.prototypes.weight.grad.abs().sum()) == 0.0
    m.zero_grad()
    m.after_optimizer_step(0, 10)
    m.training_loss(views, torch.arange(4)).backward()
    assert m.prototypes.weight.grad.abs().sum() > 0


def test_swav_queue_fills_newest_first_then_joins_sinkhorn():
    m = small_swav(swav_queue=8).eval()
    views = [torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16), torch.randn(4, 3, 8, 8)]
    m.training_loss(views, torch.arange(4))
    z0 = m(views[0]).detach()
    m.after_optimizer_step(0, 10)
    torch.testing.assert_close(m.queue[0, :4], z0)
    assert int(m.queue_filled) == 4
    m.training_loss(views, torch.arange(4))
    m.after_optimizer_step(1, 10)
    assert int(m.queue_filled) == 8  # full: from now on the queue joins the codes
    loss = m.training_loss(views, torch.arange(4))
    with torch.no_grad():
        scores = [m(v) @ m.prototypes.weight.T for v in views]
        codes = [sinkhorn(torch.cat([scores[g], m.queue[g] @ m.prototypes.weight.T]), 3, 0.05)[:4] for g in range(2)]
    torch.testing.assert_close(loss, SwAVLoss(0.1)(scores, codes))


def test_npid_loss_equals_a_naive_softmax_over_the_sampled_bank_entries():
    g = torch.Generator().manual_seed(0)
    v = F.normalize(torch.randn(3, 4, generator=g), dim=1)
    pos = F.normalize(torch.randn(3, 4, generator=g), dim=1)
    neg = F.normalize(torch.randn(3, 5, 4, generator=g), dim=2)
    want = 0.0
    for i in range(3):
        logits = [float(v[i] @ pos[i]) / 0.07] + [float(v[i] @ neg[i, j]) / 0.07 for j in range(5)]
        want += (math.log(sum(math.exp(x) for x in logits)) - logits[0]) / 3
    assert NPIDLoss(0.07)(v, pos, neg).item() == pytest.approx(want, rel=1e-5)


def test_npid_method_uses_the_bank_and_updates_it_by_its_formula():
    torch.manual_seed(0)
    settings = NPIDSettings(proj_dim=8, negatives=5, bank_momentum=0.5)
    m = NPID(build_backbone("smallcnn"), n_images=20, settings=settings).eval()
    x, idx = torch.randn(3, 3, 16, 16), torch.tensor([4, 11, 7])
    neg_idx = m.sample_negatives(3)
    loss = m.training_loss([x], idx)
    v = m(x).detach()
    torch.testing.assert_close(loss, NPIDLoss(0.07)(v, m.bank[idx], m.bank[neg_idx]))
    bank0 = m.bank.clone()
    m.after_optimizer_step(0, 10)
    for j, i in enumerate(idx.tolist()):
        want = 0.5 * bank0[i] + 0.5 * v[j]
        torch.testing.assert_close(m.bank[i], want / want.norm())
    untouched = [i for i in range(20) if i not in idx.tolist()]
    torch.testing.assert_close(m.bank[untouched], bank0[untouched])
    assert not torch.equal(m.sample_negatives(3), neg_idx)  # the next step draws other negatives
    assert {"bank", "steps_done"} <= set(m.state_dict())
