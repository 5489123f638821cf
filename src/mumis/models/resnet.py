"""The CIFAR-style ResNet-18 of the unlearning literature (SalUn, SSD, MU-Mis): a 3×3 stride-1 stem and no
max-pool, so 32×32 inputs keep their resolution in the first stage."""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from mumis.models.registry import register_model


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, blocks: tuple[int, ...], widths: tuple[int, ...], num_classes: int, in_channels: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        layers, cin = [], widths[0]
        for i, (n, width) in enumerate(zip(blocks, widths)):
            for j in range(n):
                layers.append(BasicBlock(cin, width, stride=2 if (i > 0 and j == 0) else 1))
                cin = width
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x):
        out = self.layers(self.stem(x))
        return self.head(F.adaptive_avg_pool2d(out, 1).flatten(1))


@register_model
def resnet18(num_classes: int, in_channels: int = 3) -> nn.Module:
    """ResNet-18 (2-2-2-2 basic blocks, widths 64-128-256-512), CIFAR stem; 11.2M parameters."""
    return ResNet((2, 2, 2, 2), (64, 128, 256, 512), num_classes, in_channels)


@register_model
def resnet_small(num_classes: int, in_channels: int = 1) -> nn.Module:
    """A small ResNet (1-1-1 blocks, widths 16-32-64) for 28×28 experiments on a CPU."""
    return ResNet((1, 1, 1), (16, 32, 64), num_classes, in_channels)


@register_model
def resnet_wide(num_classes: int, in_channels: int = 1) -> nn.Module:
    """``resnet_small`` at twice the width (1-1-1 blocks, widths 32-64-128): the "wider ResNet" of the variants grid."""
    return ResNet((1, 1, 1), (32, 64, 128), num_classes, in_channels)
