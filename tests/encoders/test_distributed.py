"""2 gloo processes with batch B each == 1 process with batch 2B (lightly PR #1531's check).

The 2 ranks run under DDP with `gather_distributed=True`; the reference runs the same
model, seed and views in this process. Compared after each of 2 SGD steps: the loss of
the global batch, every parameter's gradient (after DDP's averaging), the parameters
after the step, and for MoCo the queue and the momentum key encoder.

BatchNorm: torch's SyncBatchNorm refuses CPU tensors (torch 2.13: "expected input tensor
to be on GPU"), so here the heads' BN layers run in eval mode (per-sample, with their
weights still trained); per-rank BN in train mode would see B, not 2B, images, and the
`bn_train` control shows that the test notices. Without gathering, SimCLR's loss and
MoCo's queue differ (controls `no_gather`): the equality is not trivially true.
"""
from __future__ import annotations

import socket
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from encoders import distributed
from encoders.losses import NTXentLoss
from encoders.methods import DINO, MoCo, SimCLR, SwAV
from encoders.methods.dino import DINOSettings
from encoders.methods.moco import MoCoSettings
from encoders.methods.simclr import SimCLRSettings
from encoders.methods.swav import SwAVSettings

B, WORLD, STEPS, SIZE = 4, 2, 2, 8
VARIANTS = ("equal", "no_gather", "bn_train")
METHODS = ("simclr", "moco", "swav", "dino")
MULTI_CROP = dict(local_crops=1, local_size=SIZE // 2)  # SwAV and DINO also get a local view


class TinyBackbone(nn.Module):
    """BN-free conv -> (N, 8)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feat_dim = 8

    def forward(self, x):
        return self.net(x)  # (N, 8)


def build(method: str, gather: bool) -> nn.Module:
    torch.manual_seed(0)
    if method == "simclr":
        return SimCLR(TinyBackbone(), SimCLRSettings(proj_dim=16, temperature=0.5), gather_distributed=gather)
    if method == "swav":
        return SwAV(TinyBackbone(), SwAVSettings(proj_dim=16, prototypes=8, freeze_head_steps=0, **MULTI_CROP),
                    gather_distributed=gather)
    if method == "dino":
        return DINO(TinyBackbone(), DINOSettings(dino_out_dim=16, momentum=0.9, center_momentum=0.5,
                                                 freeze_head_steps=0, **MULTI_CROP), gather_distributed=gather)
    return MoCo(TinyBackbone(), MoCoSettings(proj_dim=16, temperature=0.2, queue_size=24, momentum=0.9),
                gather_distributed=gather)


def global_views(step: int) -> list[torch.Tensor]:
    """Two global views (2B, 3, S, S) and one local view (2B, 3, S/2, S/2) of the global batch."""
    g = torch.Generator().manual_seed(100 + step)
    return [torch.randn(WORLD * B, 3, SIZE, SIZE, generator=g), torch.randn(WORLD * B, 3, SIZE, SIZE, generator=g),
            torch.randn(WORLD * B, 3, SIZE // 2, SIZE // 2, generator=g)]


def train_steps(method: str, variant: str, rows: slice) -> list[dict]:
    """STEPS SGD steps on rows `rows` of each global batch; what to compare after each."""
    model = build(method, gather=variant != "no_gather")
    loss_fn = distributed.data_parallel(model, torch.device("cpu"))
    model.train()
    if variant != "bn_train":
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5, momentum=0.9)
    out = []
    for step in range(STEPS):
        views = [v[rows] for v in global_views(step)][:2 + model.views.n_local]
        loss = loss_fn(views, torch.arange(views[0].shape[0]))
        opt.zero_grad()
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        opt.step()
        model.after_optimizer_step(step, STEPS)
        out.append({"loss": distributed.mean_over_ranks(loss.detach()), "grads": grads,
                    "state": {k: v.clone() for k, v in model.state_dict().items()}})
    return out


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        rows = slice(rank * B, (rank + 1) * B)
        results = {(m, v): train_steps(m, v, rows) for m in METHODS for v in VARIANTS}
        torch.save(results, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("ddp")
    ctx = mp.start_processes(_worker, args=(free_port(), str(out_dir)), nprocs=WORLD, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + 300
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("2-process run did not finish in 300 s")
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def one_process(method: str, variant: str) -> list[dict]:
    return train_steps(method, variant, slice(None))


def assert_same_step(got: dict, want: dict, tol: float = 1e-5) -> None:
    torch.testing.assert_close(got["loss"], want["loss"], rtol=tol, atol=tol)
    assert got["grads"].keys() == want["grads"].keys()
    for name in want["grads"]:
        torch.testing.assert_close(got["grads"][name], want["grads"][name], rtol=tol, atol=tol, msg=name)
    for name in want["state"]:
        torch.testing.assert_close(got["state"][name], want["state"][name], rtol=tol, atol=tol, msg=name)


@pytest.mark.parametrize("method", METHODS)
def test_two_ranks_of_batch_b_equal_one_process_of_batch_2b(two_ranks, method):
    want = one_process(method, "equal")
    assert len(want[0]["grads"]) > 0
    for rank_results in two_ranks:
        for step in range(STEPS):
            assert_same_step(rank_results[(method, "equal")][step], want[step])


def test_moco_queue_holds_all_ranks_keys_in_rank_order(two_ranks):
    want = one_process("moco", "equal")
    queue = want[-1]["state"]["queue"]
    assert int(want[-1]["state"]["queue_ptr"]) == STEPS * WORLD * B
    for rank_results in two_ranks:
        torch.testing.assert_close(rank_results[("moco", "equal")][-1]["state"]["queue"], queue)
    # control: without gathering each rank enqueues only its own B keys
    local = two_ranks[0][("moco", "no_gather")][-1]["state"]
    assert int(local["queue_ptr"]) == STEPS * B
    assert not torch.allclose(local["queue"], queue)


def test_controls_differ_so_the_equality_is_not_trivial(two_ranks):
    want = one_process("simclr", "equal")
    # SimCLR without gathering: each rank sees 2B - 2 negatives, not 4B - 2
    assert not torch.allclose(two_ranks[0][("simclr", "no_gather")][0]["loss"], want[0]["loss"], atol=1e-4)
    # SwAV without gathering: Sinkhorn balances each rank's B codes, not the global 2B
    assert not torch.allclose(two_ranks[0][("swav", "no_gather")][0]["loss"], one_process("swav", "equal")[0]["loss"],
                              atol=1e-4)
    # DINO without gathering: the centre follows this rank's teacher mean, not the global one
    dino = one_process("dino", "equal")[0]["state"]["center"]
    assert not torch.allclose(two_ranks[0][("dino", "no_gather")][0]["state"]["center"], dino, atol=1e-5)
    # per-rank BN statistics over B images differ from statistics over 2B (MoCo v2's head has no BN)
    for method in ("simclr", "swav", "dino"):
        bn_want = one_process(method, "bn_train")
        got = two_ranks[0][(method, "bn_train")][0]
        assert not all(torch.allclose(got["grads"][n], bn_want[0]["grads"][n], atol=1e-4) for n in got["grads"])


def test_gather_without_process_group_is_identity():
    x = torch.randn(3, 4, requires_grad=True)
    assert distributed.gather(x) is x
    assert distributed.gather_no_grad(x) is x
    assert distributed.world_size() == 1 and distributed.rank() == 0
    z_a, z_b = torch.randn(5, 8), torch.randn(5, 8)
    torch.testing.assert_close(NTXentLoss(gather_distributed=True)(z_a, z_b), NTXentLoss()(z_a, z_b))
