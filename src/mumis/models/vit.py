"""ViT-B/16 fine-tuned from ImageNet weights: the paper's transformer (Tables A6–A8), via the SSD/JiT code it
inherits, which fine-tunes torchvision's ``vit_b_16`` (IMAGENET1K_V1) on 224×224 inputs.

The weights are read from a local safetensors file, never downloaded at run time and never unpickled. The
32×32 CIFAR images are resized to 224×224 *inside* the model (bilinear), so every method, metric and MU-Mis's
input gradient sees the dataset's own resolution; the reference code resizes in the data pipeline instead, which
only rescales the input-gradient norm. The classifier is a fresh ``nn.Linear(768, K)`` (seed torch first).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from mumis.errors import MumisError
from mumis.models.registry import register_model
from mumis.runtime import cache_root

IMAGE_SIZE = 224
# torchvision's vit_b_16; tests shrink it (same class, same code path, fewer and narrower layers)
VIT_B_16 = {"patch_size": 16, "num_layers": 12, "num_heads": 12, "hidden_dim": 768, "mlp_dim": 3072}
CONVERT = ("python -c \"import torchvision; from safetensors.torch import save_file; "
           "save_file(torchvision.models.vit_b_16(weights='IMAGENET1K_V1').state_dict(), 'vit_b_16.safetensors')\"")


def pretrained_path(name: str) -> Path:
    """Where pretrained backbones live: ``$MUMIS_PRETRAINED_DIR/<name>.safetensors`` (default: the model cache's
    ``pretrained/`` folder, ``~/.cache/mumis/pretrained``)."""
    root = os.environ.get("MUMIS_PRETRAINED_DIR") or cache_root() / "pretrained"
    return Path(root) / f"{name}.safetensors"


class ResizingViT(nn.Module):
    def __init__(self, vit: nn.Module, size: int = IMAGE_SIZE):
        super().__init__()
        self.vit, self.size = vit, size

    def forward(self, x):
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.vit(x)


@register_model
def vit_b_16(num_classes: int, in_channels: int = 3) -> nn.Module:
    from torchvision.models.vision_transformer import VisionTransformer

    if in_channels != 3:
        raise MumisError(f"vit_b_16 is pretrained on RGB images; this dataset has {in_channels} channel(s)")
    path = pretrained_path("vit_b_16")
    if not path.is_file():
        raise MumisError(f"vit_b_16 starts from ImageNet weights, expected at {path} (or set MUMIS_PRETRAINED_DIR). "
                         f"Make the file once on a machine with internet access: {CONVERT}")
    net = VisionTransformer(image_size=IMAGE_SIZE, num_classes=1000, **VIT_B_16)
    try:
        state = load_file(str(path))
        net.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError) as err:
        raise MumisError(f"{path} is not torchvision's vit_b_16 state dict in safetensors ({str(err)[:200]}); "
                         f"recreate it with: {CONVERT}") from None
    net.heads.head = nn.Linear(net.heads.head.in_features, num_classes)
    return ResizingViT(net)
