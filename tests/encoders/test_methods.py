"""SimCLR and MoCo v2 against their definitions; backbones."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from encoders.backbones import build_backbone
from encoders.losses import NTXentLoss
from encoders.methods import METHODS, Method, MethodSettings, MoCo, RunFacts, SimCLR
from encoders.methods.moco import MoCoSettings
from encoders.methods.simclr import SimCLRSettings


def small_moco(queue_size=8, momentum=0.9):
    torch.manual_seed(0)
    return MoCo(build_backbone("smallcnn"), MoCoSettings(proj_dim=4, queue_size=queue_size, momentum=momentum))


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
    loss = m.training_loss([x, x.flip(-1)], torch.arange(4))
    loss.backward()
    assert all(p.grad is None for p in m.key_params())
    assert all(not p.requires_grad for p in m.key_params())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.backbone.parameters())


def test_loss_changes_no_state_and_the_step_enqueues_its_keys():
    m = small_moco(queue_size=16)
    a, b = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    m.eval()  # BN statistics would otherwise move with the forward pass
    m.training_loss([a, b], torch.arange(4))
    assert all(torch.equal(v, before[k]) for k, v in m.state_dict().items())
    keys = m.forward_key(b)
    m.after_optimizer_step(0, 10)
    assert m.queue_ptr.item() == 4
    torch.testing.assert_close(m.queue[:4], keys)
    assert torch.equal(m.queue[4:], before["queue"][4:])


def test_moco_loss_is_infonce_of_query_and_key_against_the_queue():
    m = small_moco(queue_size=8).eval()
    a, b = torch.randn(3, 3, 16, 16), torch.randn(3, 3, 16, 16)
    q = F.normalize(m(a), dim=1)
    k = F.normalize(m.key_head(m.key_backbone(b)), dim=1)
    want = 0.0
    for i in range(3):
        logits = torch.cat([(q[i] * k[i]).sum().view(1), m.queue @ q[i]]) / 0.2  # positive first
        want += -torch.log_softmax(logits, 0)[0] / 3
    torch.testing.assert_close(m.training_loss([a, b], torch.arange(3)), want)


def test_moco_v2_head_is_linear_relu_linear_without_bn():
    m = small_moco()
    kinds = [type(layer) for layer in m.head]
    assert kinds == [nn.Linear, nn.ReLU, nn.Linear]
    assert all(layer.bias is not None for layer in m.head if isinstance(layer, nn.Linear))
    assert not any(isinstance(x, nn.BatchNorm1d) for x in m.head.modules())


def test_moco_refuses_a_checkpoint_with_the_old_bn_head():
    old = {"head.0.weight": torch.zeros(1), "head.1.running_mean": torch.zeros(1)}
    assert "BatchNorm" in MoCo.checkpoint_problem(old)
    assert MoCo.checkpoint_problem(small_moco().state_dict()) is None


def test_simclr_loss_is_ntxent_between_the_two_views_and_uses_both():
    torch.manual_seed(0)
    m = SimCLR(build_backbone("smallcnn"), SimCLRSettings(proj_dim=8, temperature=0.5))
    a = torch.randn(6, 3, 16, 16, requires_grad=True)
    b = torch.randn(6, 3, 16, 16, requires_grad=True)
    loss = m.training_loss([a, b], torch.arange(6))
    z = m(torch.cat([a, b]))  # BN sees both views together, as in the method
    torch.testing.assert_close(loss, NTXentLoss(0.5)(z[:6], z[6:]))
    loss.backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0
    b2 = b.detach().clone()
    b2[0] += 1.0  # another second view of image 0 gives another loss
    assert not torch.isclose(m.training_loss([a.detach(), b2], torch.arange(6)), loss.detach())


def test_simclr_with_local_crops_averages_ntxent_over_all_view_pairs():
    torch.manual_seed(0)
    settings = SimCLRSettings(proj_dim=8, temperature=0.5, local_crops=1, local_size=8)
    m = SimCLR(build_backbone("smallcnn"), settings).eval()
    views = [torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16), torch.randn(4, 3, 8, 8)]
    z = [m(v) for v in views]
    want = (NTXentLoss(0.5)(z[0], z[1]) + NTXentLoss(0.5)(z[0], z[2]) + NTXentLoss(0.5)(z[1], z[2])) / 3
    torch.testing.assert_close(m.training_loss(views, torch.arange(4)), want)


# The settings of a tiny run, per method: 16 px smallcnn, small heads, queues and banks.
TINY = ["--backbone", "smallcnn", "--no-small-stem", "--image-size", "16", "--temperature", "0.2",
        "--dino-out-dim", "16", "--prototypes", "8", "--queue-size", "16", "--negatives", "8", "--clusters", "2",
        "--pca-dim", "4", "--local-crops", "1"]


def test_registry_names_every_method_once():
    """Each name maps to its own class, which states its own settings and builds itself from
    them (neither inherited from the base class), and the defaults build a method."""
    assert {"simclr", "moco", "byol", "dino", "swav", "npid", "deepcluster"} <= set(METHODS)
    assert len(set(METHODS.values())) == len(METHODS)
    for name, cls in METHODS.items():
        assert issubclass(cls, Method) and "build" in vars(cls) and "Settings" in vars(cls), name
        assert issubclass(cls.Settings, MethodSettings) and cls.Settings is not MethodSettings, name
        assert len({c.Settings for c in METHODS.values()}) == len(METHODS)
        torch.manual_seed(0)
        model = cls.build(build_backbone("smallcnn"), cls.Settings(), RunFacts(n_images=40))
        assert isinstance(model, cls) and model.views.n_global >= 1, name


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
