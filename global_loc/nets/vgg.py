"""VGG16 convolutional layers (Simonyan and Zisserman, ICLR 2015) with torchvision's module
layout (``features.N``), so that published state dicts load by name."""
from __future__ import annotations

import torch.nn as nn

VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def vgg16_features(drop_last: int = 0) -> nn.Sequential:
    """The 31 modules of ``torchvision.models.vgg16().features`` (conv, ReLU, max-pool), minus
    the last ``drop_last`` (2 ends at conv5_3 as NetVLAD does; 1 keeps its ReLU as GeM does)."""
    layers: list[nn.Module] = []
    cin = 3
    for v in VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=True)]
            cin = v
    return nn.Sequential(*(layers[: len(layers) - drop_last] if drop_last else layers))
