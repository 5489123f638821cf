"""Small models that train in seconds on a CPU. No in-place activations: MU-Mis backpropagates through an
input gradient (double backprop), and in-place ops on saved tensors make that fragile in user code."""
from __future__ import annotations

from torch import nn

from mumis.models.registry import register_model


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


@register_model
def small_cnn(num_classes: int, in_channels: int = 1) -> nn.Module:
    """Two conv blocks (32, 64 channels, BatchNorm) and a linear head: ~99% on MNIST, any input size ≥ 8×8."""
    return nn.Sequential(
        _conv_bn(in_channels, 32), nn.MaxPool2d(2),
        _conv_bn(32, 64), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(64 * 4, num_classes),
    )


@register_model
def fast_cifar_net(num_classes: int, in_channels: int = 3) -> nn.Module:
    """A compact airbench-style CIFAR net (64-128-256 channels, 1.1M parameters) for CPU experiments."""
    return nn.Sequential(
        _conv_bn(in_channels, 64),
        _conv_bn(64, 128), nn.MaxPool2d(2), _conv_bn(128, 128),
        _conv_bn(128, 256), nn.MaxPool2d(2), _conv_bn(256, 256),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(),
        nn.Linear(256, num_classes),
    )
