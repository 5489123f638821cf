"""VGG-16 with BatchNorm, CIFAR variant (one linear head after the 512-channel features), as in SalUn/JiT."""
from __future__ import annotations

from torch import nn

from mumis.models.registry import register_model

_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


@register_model
def vgg16_bn(num_classes: int, in_channels: int = 3) -> nn.Module:
    """VGG-16-bn: 13 conv layers with BatchNorm, 5 max-pools, global pooling and a linear classifier."""
    layers, cin = [], in_channels
    for v in _VGG16:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU()]
            cin = v
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes))
