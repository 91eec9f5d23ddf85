"""BYOL and DINO against their definitions, written plainly here."""
import math

import pytest
import torch

from encoders.backbones import build_backbone
from encoders.methods import BYOL, DINO
from encoders.methods.base import cosine_momentum
from encoders.methods.byol import BYOLSettings
from encoders.methods.dino import DINOLoss, DINOSettings


def byol():
    torch.manual_seed(0)
    return BYOL(build_backbone("smallcnn"), BYOLSettings(proj_dim=8, momentum=0.9))


def test_byol_loss_is_two_minus_two_cos_and_the_target_gets_no_gradient():
    m = byol().eval()
    a, b = torch.randn(3, 3, 16, 16), torch.randn(3, 3, 16, 16)
    loss = m.training_loss([a, b], torch.arange(3))
    p_a, p_b = m.predictor(m(a)), m.predictor(m(b))
    z_a = m.target_projector(m.target_backbone(a))
    z_b = m.target_projector(m.target_backbone(b))
    want = 0.0
    for p, z in ((p_a, z_b), (p_b, z_a)):
        for i in range(3):
            cos = float(p[i].detach() @ z[i]) / (float(p[i].detach().norm()) * float(z[i].norm()))
            want += (2 - 2 * cos) / 6
    assert loss.item() == pytest.approx(want, rel=1e-5)
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in m.target_backbone.parameters())
    assert all(p.grad is None for p in m.target_projector.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.backbone.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.predictor.parameters())


def test_byol_ema_follows_the_cosine_schedule_to_one():
    assert cosine_momentum(0, 100, 0.99) == pytest.approx(0.99)
    assert cosine_momentum(50, 100, 0.99) == pytest.approx(0.995)
    assert cosine_momentum(100, 100, 0.99) == pytest.approx(1.0)
    m = byol()
    with torch.no_grad():
        for p in m.backbone.parameters():
            p.add_(torch.randn_like(p))
    target = [p.clone() for p in m.target_backbone.parameters()]
    online = [p.clone() for p in m.backbone.parameters()]
    m.after_optimizer_step(25, 100)
    mom = 1 - 0.1 * (math.cos(math.pi * 0.25) + 1) / 2
    assert m.last_momentum == pytest.approx(mom)
    for pt, t0, o in zip(m.target_backbone.parameters(), target, online):
        torch.testing.assert_close(pt, mom * t0 + (1 - mom) * o)


def dino_naive(teacher, student, center, tt, ts):
    """The DINO loss one view pair and one image at a time."""
    total, terms = 0.0, 0
    for g in range(teacher.shape[0]):
        for v in range(student.shape[0]):
            if v == g:
                continue
            for i in range(teacher.shape[1]):
                p_t = torch.softmax((teacher[g, i].double() - center.double()) / tt, 0)
                log_p_s = torch.log_softmax(student[v, i].double() / ts, 0)
                total += float(-(p_t * log_p_s).sum())
            terms += 1
    return total / (terms * teacher.shape[1])


@pytest.mark.parametrize("n_views", [2, 4])
def test_dino_loss_equals_a_naive_loop_over_view_pairs(n_views):
    g = torch.Generator().manual_seed(n_views)
    teacher, student = torch.randn(2, 5, 7, generator=g), torch.randn(n_views, 5, 7, generator=g)
    center = torch.randn(7, generator=g) * 0.1
    got = DINOLoss(0.1)(teacher, student, center, 0.04)
    assert got.item() == pytest.approx(dino_naive(teacher, student, center, 0.04, 0.1), rel=1e-5)


def small_dino(**kw):
    torch.manual_seed(0)
    settings = DINOSettings(**{"dino_out_dim": 16, "momentum": 0.9, "local_crops": 2, "local_size": 8,
                               "freeze_head_steps": 0, **kw})
    return DINO(build_backbone("smallcnn"), settings)


def test_dino_method_loss_centre_ema_and_teacher_temperature_warmup():
    m = small_dino(center_momentum=0.8, teacher_temp_start=0.04, teacher_temp=0.07, teacher_temp_warmup=0.5).eval()
    views = [torch.randn(3, 3, 16, 16), torch.randn(3, 3, 16, 16), torch.randn(3, 3, 8, 8), torch.randn(3, 3, 8, 8)]
    m.center.fill_(0.05)
    loss = m.training_loss(views, torch.arange(3))
    with torch.no_grad():
        teacher = torch.stack([m.teacher_head(m.teacher_backbone(v)) for v in views[:2]])  # (2, N, K)
        student = torch.stack([m(v) for v in views])  # (4, N, K)
    assert loss.item() == pytest.approx(dino_naive(teacher, student, m.center, 0.04, 0.1), rel=1e-4)
    center0 = m.center.clone()
    m.after_optimizer_step(0, 10)
    torch.testing.assert_close(m.center, 0.8 * center0 + 0.2 * teacher.mean(dim=(0, 1)))
    assert float(m.teacher_temp) == pytest.approx(0.04 + 0.03 * 1 / 5)  # warm-up over 5 of 10 steps
    for step in range(1, 10):
        m.after_optimizer_step(step, 10)
    assert float(m.teacher_temp) == pytest.approx(0.07)
    assert {"center", "teacher_temp", "steps_done"} <= set(m.state_dict())


def test_dino_last_layer_frozen_for_the_first_steps():
    m = small_dino(freeze_head_steps=1)
    views = [torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16), torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)]
    m.training_loss(views, torch.arange(4)).backward()
    assert float(m.head.last.grad.abs().sum()) == 0.0 and m.head.mlp[0].weight.grad.abs().sum() > 0
    m.zero_grad()
    m.after_optimizer_step(0, 10)
    m.training_loss(views, torch.arange(4)).backward()
    assert m.head.last.grad.abs().sum() > 0
    assert all(p.grad is None for p in m.teacher_head.parameters())
