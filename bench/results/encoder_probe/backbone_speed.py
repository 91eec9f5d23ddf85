"""Training throughput of wider / deeper small backbones than the default SmallCNN (width 32):
one SimCLR step (two 32-px views, batch 256, channels-last, fp32) on pre-made tensors, median of
6 steps after 2 warm-up ones.

    python bench/results/encoder_probe/backbone_speed.py > bench/results/encoder_probe/backbone_speed.txt
"""
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from encoders.backbones import SmallCNN  # noqa: E402
from encoders.methods import SimCLR  # noqa: E402


def conv_bn_relu(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
    return [conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class Stacked(nn.Module):
    """SmallCNN's four stages with `per_stage` conv-BN-ReLU blocks each."""

    def __init__(self, width: int, per_stage: int):
        super().__init__()
        layers, c = [], 3
        for i, o in enumerate([width, 2 * width, 4 * width, 8 * width]):
            layers += conv_bn_relu(c, o, 1 if i == 0 else 2)
            layers += [m for _ in range(per_stage - 1) for m in conv_bn_relu(o, o, 1)]
            c = o
        self.features, self.feat_dim = nn.Sequential(*layers), c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean((2, 3))  # (N, D)


class Residual(nn.Module):
    """A conv stem, then one torchvision BasicBlock per stage (stride 2 from the second)."""

    def __init__(self, width: int):
        super().__init__()
        layers, c = conv_bn_relu(3, width, 1), width
        for i, o in enumerate([width, 2 * width, 4 * width, 8 * width]):
            s = 1 if i == 0 else 2
            down = None
            if s != 1 or c != o:
                down = nn.Sequential(nn.Conv2d(c, o, 1, stride=s, bias=False), nn.BatchNorm2d(o))
            layers.append(BasicBlock(c, o, s, down))
            c = o
        self.features, self.feat_dim = nn.Sequential(*layers), c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean((2, 3))  # (N, D)


NETS = {
    "smallcnn (default, width 32)": lambda: SmallCNN(32),
    "smallcnn width 48": lambda: SmallCNN(48),
    "smallcnn width 64": lambda: SmallCNN(64),
    "two convs per stage, width 32": lambda: Stacked(32, 2),
    "residual, width 32": lambda: Residual(32),
    "residual, width 48": lambda: Residual(48),
}

torch.set_num_threads(2)
print(f"# {time.strftime('%Y-%m-%d')}, torch {torch.__version__}, {torch.get_num_threads()} threads")
for name, build in NETS.items():
    torch.manual_seed(0)
    model = SimCLR(build()).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    a = torch.randn(256, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    b = torch.randn(256, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    times = []
    for _ in range(8):
        t0 = time.perf_counter()
        loss = model.training_loss([a, b], torch.arange(256))
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    median = sorted(times[2:])[3]
    params = sum(p.numel() for p in model.backbone.parameters())
    print(f"{name}: {256 / median:.0f} img/s, backbone {params / 1e6:.2f}M parameters", flush=True)
