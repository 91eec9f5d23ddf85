
import pytest
import torch
import torch.nn.functional as F

from encoders.backbones import build_backbone
from encoders.methods import MoCo, SimCLR


def small_moco(queue_size=8, momentum=0.9):
    torch.manual_seed(0)
    return MoCo(build_backbone("smallcnn"), proj_dim=4, queue_size=queue_size, momentum=momentum)


def test_queue_is_fifo_with_wraparound():
    m = small_moco(queue_size=5)
    keys = [F.normalize(torch.randn(3, 4), dim=1) for _ in range(3)]
    m.enqueue(keys[0])
    assert m.queue_ptr.item() == 3
    assert torch.equal(m.queue[:3], keys[0])
    m.enqueue(keys[1])  # rows 3, 4, then wraps to row 0
    assert m.queue_ptr.item() == 1
    assert torch.equal(m.queue[3:5], keys[1][:2])
    assert torch.equal(m.queue[0], keys[1][2])
    assert torch.equal(m.queue[1:3], keys[0][1:3])  # the oldest survivors are untouched
    m.enqueue(keys[2])
    assert m.queue_ptr.item() == 4
    assert torch.equal(m.queue[1:4], keys[2])
    # the queue now holds exactly the 5 most recent keys
    recent = torch.cat(keys)[-5:]
    assert {tuple(r.tolist()) for r in m.queue} == {tuple(r.tolist()) for r in recent}


def test_enqueue_more_keys_than_queue_keeps_newest():
    m = small_moco(queue_size=4)
    keys = torch.arange(6 * 4, dtype=torch.float32).view(6, 4)
    m.enqueue(keys)
    assert {tuple(r.tolist()) for r in m.queue} == {tuple(r.tolist()) for r in keys[-4:]}


def test_momentum_update_equals_ema_formula():
    m = small_moco(momentum=0.9)
    with torch.no_grad():
        for p in m.query_params():
            p.add_(torch.randn_like(p))
    before_k = [p.clone() for p in m.key_params()]
    q = [p.clone() for p in m.query_params()]
    m.momentum_update()
    for pk, bk, pq in zip(m.key_params(), before_k, q):
        torch.testing.assert_close(pk, 0.9 * bk + 0.1 * pq)


def test_key_encoder_receives_no_gradient_and_query_does():
    m = small_moco()
    m.train()
    x = torch.randn(4, 3, 16, 16)
    loss = m.training_loss(x, x.flip(-1))
    loss.backward()
    assert all(p.grad is None for p in m.key_params())
    assert all(not p.requires_grad for p in m.key_params())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.backbone.parameters())


def test_training_loss_enqueues_keys():
    m = small_moco(queue_size=16)
    before = m.queue.clone()
    m.training_loss(torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16))
    assert m.queue_ptr.item() == 4
    assert not torch.equal(m.queue[:4], before[:4]) and torch.equal(m.queue[4:], before[4:])


def test_queue_and_key_encoder_are_in_state_dict():
    sd = small_moco().state_dict()
    assert "queue" in sd and "queue_ptr" in sd
    assert any(k.startswith("key_backbone.") for k in sd)


def test_simclr_loss_uses_both_views():
    torch.manual_seed(0)
    m = SimCLR(build_backbone("smallcnn"), proj_dim=8)
    x = torch.randn(6, 3, 16, 16)
    loss = m.training_loss(x, x + 0.1 * torch.randn_like(x))
    assert torch.isfinite(loss) and loss.item() > 0


@pytest.mark.parametrize("name,small_stem,dim", [("resnet18", True, 512), ("resnet18", False, 512),
                                                 ("resnet50", True, 2048), ("smallcnn", False, 256)])
def test_backbones_report_feature_dim(name, small_stem, dim):
    bb = build_backbone(name, small_stem).eval()
    assert bb.feat_dim == dim
    with torch.no_grad():
        assert bb(torch.randn(2, 3, 32, 32)).shape == (2, dim)


def test_small_stem_keeps_resolution():
    bb = build_backbone("resnet18", small_stem=True)
    assert bb.net.conv1.kernel_size == (3, 3) and bb.net.conv1.stride == (1, 1)
    assert isinstance(bb.net.maxpool, torch.nn.Identity)


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("vgg")
