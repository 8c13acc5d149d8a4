"""VGG-11/13/16/19 with BatchNorm for 32x32 inputs, as in kuangliu/pytorch-cifar.

Five max-pools take 32x32 down to 1x1, so the classifier is a single Linear on the last conv's channels
(512 at width 1) instead of ImageNet VGG's three large fully-connected layers.
Module names and indices (features.N, classifier) match kuangliu's, so its checkpoints load as is.
"""
from __future__ import annotations

import torch
from torch import nn

from reference.models.resnet import scaled_channels

POOL = "M"

# Conv output channels per layer at width 1; POOL is a 2x2 max-pool. Keyed by depth (weight layers, incl. classifier).
LAYERS: dict[int, list[int | str]] = {
    11: [64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL],
    13: [64, 64, POOL, 128, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL],
    16: [64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512, POOL],
    19: [64, 64, POOL, 128, 128, POOL, 256, 256, 256, 256, POOL, 512, 512, 512, 512, POOL, 512, 512, 512, 512, POOL],
}


class VGG(nn.Module):
    """Conv-BN-ReLU layers with max-pools (`features`), then one Linear (`classifier`)."""

    def __init__(
        self, layers: list[int | str], width: float = 1.0, num_classes: int = 10, in_channels: int = 3
    ) -> None:
        super().__init__()
        if not width > 0:
            raise ValueError(f"width must be > 0, got {width!r}")
        modules: list[nn.Module] = []
        channels = in_channels
        for layer in layers:
            if layer == POOL:
                modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                out_channels = scaled_channels(layer, width)
                # The conv keeps its bias although BN follows, as in kuangliu's VGG (it is in the parameter count).
                modules += [
                    nn.Conv2d(channels, out_channels, kernel_size=3, padding=1),
                    nn.BatchNorm2d(out_channels),
                    nn.ReLU(inplace=True),
                ]
                channels = out_channels
        # kuangliu ends `features` with AvgPool2d(kernel_size=1, stride=1), an identity: left out, it holds no weights.
        self.features = nn.Sequential(*modules)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def vgg(depth: int = 16, width: float = 1.0, num_classes: int = 10, in_channels: int = 3) -> VGG:
    """CIFAR VGG of the given depth (11, 13, 16 or 19); `width` multiplies every conv's channel count."""
    if depth not in LAYERS:
        raise ValueError(f"VGG depth must be one of {sorted(LAYERS)}, got {depth!r}")
    return VGG(LAYERS[depth], width=width, num_classes=num_classes, in_channels=in_channels)


def vgg11(**kwargs) -> VGG:
    """VGG-11 with BatchNorm."""
    return vgg(11, **kwargs)


def vgg13(**kwargs) -> VGG:
    """VGG-13 with BatchNorm."""
    return vgg(13, **kwargs)


def vgg16(**kwargs) -> VGG:
    """VGG-16 with BatchNorm."""
    return vgg(16, **kwargs)


def vgg19(**kwargs) -> VGG:
    """VGG-19 with BatchNorm."""
    return vgg(19, **kwargs)
