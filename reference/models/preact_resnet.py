"""Pre-activation ResNet for 32x32 inputs, as in kuangliu/pytorch-cifar.

He et al., "Identity Mappings in Deep Residual Networks" (arXiv:1603.05027): BN and ReLU come before each conv,
so the identity path carries the raw sum from block to block. As in kuangliu's version, the stem is a bare conv
and there is no final BN-ReLU before pooling; module names match kuangliu's so its checkpoints load as is.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from reference.models.resnet import STAGE_CHANNELS, STAGE_STRIDES, check_knobs, make_stage, scaled_channels


class PreActBlock(nn.Module):
    """BN-ReLU-conv twice; a projecting shortcut (1x1 conv, no BN) only when the shape changes."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            # kuangliu wraps the conv in a Sequential: keep it, so parameter names are "shortcut.0.weight".
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        # The projection reads the pre-activated input; the identity path keeps the raw input.
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """Stem conv, four stages of PreActBlocks, 4x4 average pool, linear classifier."""

    def __init__(
        self,
        blocks: Sequence[int] = (2, 2, 2, 2),
        width: float = 1.0,
        num_classes: int = 10,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        blocks = check_knobs(blocks, width)
        channels = [scaled_channels(c, width) for c in STAGE_CHANNELS]
        self.conv1 = nn.Conv2d(in_channels, channels[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.layer1 = make_stage(PreActBlock, channels[0], channels[0], blocks[0], STAGE_STRIDES[0])
        self.layer2 = make_stage(PreActBlock, channels[0], channels[1], blocks[1], STAGE_STRIDES[1])
        self.layer3 = make_stage(PreActBlock, channels[1], channels[2], blocks[2], STAGE_STRIDES[2])
        self.layer4 = make_stage(PreActBlock, channels[2], channels[3], blocks[3], STAGE_STRIDES[3])
        self.linear = nn.Linear(channels[3], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.avg_pool2d(out, 4)  # fixed pool, as in resnet.py: fvcore does not count it
        return self.linear(torch.flatten(out, 1))


def preact_resnet(
    blocks: Sequence[int] = (2, 2, 2, 2),
    width: float = 1.0,
    num_classes: int = 10,
    in_channels: int = 3,
) -> PreActResNet:
    """CIFAR pre-activation ResNet: `blocks` per stage is the depth knob, `width` multiplies every channel count."""
    return PreActResNet(blocks=blocks, width=width, num_classes=num_classes, in_channels=in_channels)


def preact_resnet18(*, blocks: Sequence[int] = (2, 2, 2, 2), **kwargs) -> PreActResNet:
    """PreActResNet-18; `blocks` may still be overridden to vary depth."""
    return preact_resnet(blocks=blocks, **kwargs)
