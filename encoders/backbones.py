"""Backbones: image (N, 3, S, S) -> representation h (N, D). No pretrained weights.

`build_backbone(name, small_stem)` returns a module with a `.feat_dim` attribute and a
`feature_map(x)` -> (N, D, h, w), the map its forward averages into h (the encoder's read-out
may pool it otherwise: encoders.embed).
ResNets come from torchvision (`weights=None`) with `fc` removed; `small_stem` swaps the
7x7/2 conv + max-pool for a 3x3/1 conv (CIFAR-style) for inputs up to 64 px.
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision import models

BACKBONES = ("resnet18", "resnet50", "smallcnn")


class ResNetBackbone(nn.Module):
    def __init__(self, arch: str, small_stem: bool):
        super().__init__()
        net = getattr(models, arch)(weights=None)
        if small_stem:
            net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        self.feat_dim = net.fc.in_features
        net.fc = nn.Identity()
        self.net = net

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        return n.layer4(n.layer3(n.layer2(n.layer1(x))))  # (N, D, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (N, D)


class SmallCNN(nn.Module):
    """4 conv-BN-ReLU blocks (32-64-128-256, stride 2 after the first), global average
    pool. Much faster than ResNet-18 on CPU (bench/results/train_step_speed.json); for quick
    runs on small images."""

    def __init__(self, width: int = 32):
        super().__init__()
        chans = [3, width, 2 * width, 4 * width, 8 * width]
        layers = []
        for i in range(4):
            layers += [
                nn.Conv2d(chans[i], chans[i + 1], 3, stride=1 if i == 0 else 2, padding=1, bias=False),
                nn.BatchNorm2d(chans[i + 1]),
                nn.ReLU(inplace=True),
            ]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feat_dim = chans[-1]

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (N, D, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)  # (N, D)


def build_backbone(name: str, small_stem: bool = False) -> nn.Module:
    if name == "smallcnn":
        return SmallCNN()
    if name in ("resnet18", "resnet50"):
        return ResNetBackbone(name, small_stem)
    raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
