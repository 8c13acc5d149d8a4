"""DenseNet-BC for 32x32 inputs, as in kuangliu/pytorch-cifar.

Huang et al., "Densely Connected Convolutional Networks" (arXiv:1608.06993). Each bottleneck layer adds
`growth_rate` channels to everything before it; transitions shrink the channels by `reduction` and halve the
resolution. The stem is one 3x3 conv with 2 * growth_rate channels (no 7x7 conv, no max-pool), and the four dense
blocks see 32, 16, 8 and 4 pixels. Module names match kuangliu's so its checkpoints load as is.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class Bottleneck(nn.Module):
    """BN-ReLU-1x1 conv to 4 * growth_rate channels, BN-ReLU-3x3 conv to growth_rate; output is [new, input]."""

    def __init__(self, in_planes: int, growth_rate: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, 4 * growth_rate, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth_rate)
        self.conv2 = nn.Conv2d(4 * growth_rate, growth_rate, kernel_size=3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([out, x], 1)


class Transition(nn.Module):
    """BN-ReLU-1x1 conv to fewer channels, then a 2x2 average pool."""

    def __init__(self, in_planes: int, out_planes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_planes)
        self.conv = nn.Conv2d(in_planes, out_planes, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)


class DenseNet(nn.Module):
    """Stem conv, four dense blocks with transitions between them, BN-ReLU, 4x4 average pool, linear classifier."""

    def __init__(
        self,
        blocks: Sequence[int] = (6, 12, 24, 16),
        growth_rate: int = 12,
        reduction: float = 0.5,
        num_classes: int = 10,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        blocks = tuple(blocks)
        if len(blocks) != 4 or any(not isinstance(n, int) or n < 1 for n in blocks):
            raise ValueError(f"blocks must be 4 positive ints (layers per dense block), got {blocks!r}")
        if not isinstance(growth_rate, int) or growth_rate < 1:
            raise ValueError(f"growth_rate must be a positive int, got {growth_rate!r}")
        if not 0 < reduction <= 1:
            raise ValueError(f"reduction must be in (0, 1], got {reduction!r}")

        planes = 2 * growth_rate
        self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=3, padding=1, bias=False)
        self.dense1, self.trans1, planes = dense_block_and_transition(planes, blocks[0], growth_rate, reduction)
        self.dense2, self.trans2, planes = dense_block_and_transition(planes, blocks[1], growth_rate, reduction)
        self.dense3, self.trans3, planes = dense_block_and_transition(planes, blocks[2], growth_rate, reduction)
        self.dense4 = dense_block(planes, blocks[3], growth_rate)
        planes += blocks[3] * growth_rate
        self.bn = nn.BatchNorm2d(planes)
        self.linear = nn.Linear(planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = self.trans1(self.dense1(out))
        out = self.trans2(self.dense2(out))
        out = self.trans3(self.dense3(out))
        out = self.dense4(out)
        out = F.avg_pool2d(F.relu(self.bn(out)), 4)  # fixed pool, as in resnet.py: fvcore does not count it
        return self.linear(torch.flatten(out, 1))


def dense_block(in_planes: int, num_layers: int, growth_rate: int) -> nn.Sequential:
    """`num_layers` Bottlenecks; each sees all channels produced before it."""
    return nn.Sequential(*(Bottleneck(in_planes + i * growth_rate, growth_rate) for i in range(num_layers)))


def dense_block_and_transition(
    in_planes: int, num_layers: int, growth_rate: int, reduction: float
) -> tuple[nn.Sequential, Transition, int]:
    """A dense block, the transition after it, and the channel count the transition outputs."""
    block = dense_block(in_planes, num_layers, growth_rate)
    block_planes = in_planes + num_layers * growth_rate
    out_planes = max(1, math.floor(block_planes * reduction))
    return block, Transition(block_planes, out_planes), out_planes


def densenet(
    blocks: Sequence[int] = (6, 12, 24, 16),
    growth_rate: int = 12,
    reduction: float = 0.5,
    num_classes: int = 10,
    in_channels: int = 3,
) -> DenseNet:
    """CIFAR DenseNet-BC: `blocks` (layers per dense block) is the depth knob, `growth_rate` the width knob."""
    return DenseNet(
        blocks=blocks, growth_rate=growth_rate, reduction=reduction, num_classes=num_classes, in_channels=in_channels
    )


def densenet121(*, blocks: Sequence[int] = (6, 12, 24, 16), growth_rate: int = 32, **kwargs) -> DenseNet:
    """DenseNet-121 layout with growth rate 32 (kuangliu's DenseNet121)."""
    return densenet(blocks=blocks, growth_rate=growth_rate, **kwargs)


def densenet_cifar(*, blocks: Sequence[int] = (6, 12, 24, 16), growth_rate: int = 12, **kwargs) -> DenseNet:
    """The DenseNet-121 layout at growth rate 12: kuangliu's small `densenet_cifar`."""
    return densenet(blocks=blocks, growth_rate=growth_rate, **kwargs)
