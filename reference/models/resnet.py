"""ResNet for 32x32 inputs, as in kuangliu/pytorch-cifar (the network most course baselines start from).

Differences from the ImageNet ResNet of torchvision: a 3x3 stride-1 stem and no max-pool, so the four stages
see 32, 16, 8 and 4 pixels, and a fixed 4x4 average pool before the classifier.
Module names (conv1, bn1, layer1..layer4, shortcut, linear) match kuangliu's, so its checkpoints load as is.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

STAGE_CHANNELS = (64, 128, 256, 512)
STAGE_STRIDES = (1, 2, 2, 2)


def scaled_channels(channels: int, width: float) -> int:
    """`channels` times the width multiplier, rounded, never below one channel."""
    return max(1, round(channels * width))


def check_knobs(blocks: Sequence[int], width: float, stages: int = 4) -> tuple[int, ...]:
    """Validate the depth and width knobs shared by the ResNet-like builders; return `blocks` as a tuple."""
    blocks = tuple(blocks)
    if len(blocks) != stages or any(not isinstance(n, int) or n < 1 for n in blocks):
        raise ValueError(f"blocks must be {stages} positive ints (blocks per stage), got {blocks!r}")
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width!r}")
    return blocks


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a shortcut; the shortcut is a 1x1 conv-BN only when the shape changes."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """Stem conv, four stages of BasicBlocks, 4x4 average pool, linear classifier."""

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
        self.bn1 = nn.BatchNorm2d(channels[0])
        self.layer1 = make_stage(BasicBlock, channels[0], channels[0], blocks[0], STAGE_STRIDES[0])
        self.layer2 = make_stage(BasicBlock, channels[0], channels[1], blocks[1], STAGE_STRIDES[1])
        self.layer3 = make_stage(BasicBlock, channels[1], channels[2], blocks[2], STAGE_STRIDES[2])
        self.layer4 = make_stage(BasicBlock, channels[2], channels[3], blocks[3], STAGE_STRIDES[3])
        self.linear = nn.Linear(channels[3], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        # A fixed 4x4 pool, as in kuangliu's network (the harness counts no pooling of any kind: 0 MACs).
        out = F.avg_pool2d(out, 4)
        return self.linear(torch.flatten(out, 1))


def make_stage(block: type[nn.Module], in_planes: int, planes: int, num_blocks: int, stride: int) -> nn.Sequential:
    """`num_blocks` blocks (BasicBlock, PreActBlock); only the first one changes stride and channel count."""
    layers = [block(in_planes, planes, stride)]
    layers += [block(planes, planes, 1) for _ in range(num_blocks - 1)]
    return nn.Sequential(*layers)


def resnet(
    blocks: Sequence[int] = (2, 2, 2, 2),
    width: float = 1.0,
    num_classes: int = 10,
    in_channels: int = 3,
) -> ResNet:
    """CIFAR ResNet with BasicBlocks.

    `blocks` is the depth knob (blocks per stage); `width` multiplies every channel count (64, 128, 256, 512).
    """
    return ResNet(blocks=blocks, width=width, num_classes=num_classes, in_channels=in_channels)


def resnet18(*, blocks: Sequence[int] = (2, 2, 2, 2), **kwargs) -> ResNet:
    """ResNet-18 (11,173,962 parameters at width 1); `blocks` may still be overridden to vary depth."""
    return resnet(blocks=blocks, **kwargs)


def resnet34(*, blocks: Sequence[int] = (3, 4, 6, 3), **kwargs) -> ResNet:
    """ResNet-34 (21,282,122 parameters at width 1); `blocks` may still be overridden to vary depth."""
    return resnet(blocks=blocks, **kwargs)
