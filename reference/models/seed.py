"""The two small CNNs of seed exercise 004, written so their layers carry the names used in the seed tables.

Both are LeNet-5-like: conv - pool - conv - pool - flatten - three fully-connected layers. The slides give the
tables in Keras order (H, W, C); PyTorch activations are (C, H, W), which is what the tables below use.
ReLU is applied functionally, so the only submodules are the eight named rows of the table, in table order.
The slides end with a softmax; here fc3 returns logits, because nn.CrossEntropyLoss applies log-softmax itself.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SeedCNN(nn.Module):
    """conv1, pool1, conv2, pool2, flatten, fc1, fc2, fc3: only conv1 differs between the two seed networks."""

    def __init__(self, in_channels: int, conv1_kernel: int, conv1_padding: int, num_classes: int = 10) -> None:
        super().__init__()
        # Registration order is the table order: named_children() and activation listings follow it.
        self.conv1 = nn.Conv2d(in_channels, 8, kernel_size=conv1_kernel, padding=conv1_padding)
        self.pool1 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.conv2 = nn.Conv2d(8, 16, kernel_size=5)
        self.pool2 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pool1(F.relu(self.conv1(x)))
        out = self.pool2(F.relu(self.conv2(out)))
        out = self.flatten(out)
        out = F.relu(self.fc1(out))
        out = F.relu(self.fc2(out))
        return self.fc3(out)


def lenet_seed(num_classes: int = 10) -> SeedCNN:
    """LeNet of the seed table, on 1x28x28 images (MNIST-size): 62,430 parameters, 435,368 MACs.

    ======== ================================ ============ ============ ======
    layer    definition                       Keras (HWC)  torch (CHW)  params
    ======== ================================ ============ ============ ======
    conv1    Conv2d(1, 8, 3, padding="same")  (28, 28, 8)  (8, 28, 28)      80
    pool1    MaxPool2d(2, 2)                  (14, 14, 8)  (8, 14, 14)       0
    conv2    Conv2d(8, 16, 5), "valid"        (10, 10, 16) (16, 10, 10)  3,216
    pool2    MaxPool2d(2, 2)                  (5, 5, 16)   (16, 5, 5)        0
    flatten  Flatten                          (400,)       (400,)            0
    fc1      Linear(400, 120)                 (120,)       (120,)       48,120
    fc2      Linear(120, 84)                  (84,)        (84,)        10,164
    fc3      Linear(84, 10)                   (10,)        (10,)           850
    ======== ================================ ============ ============ ======
    """
    # padding=1 with a 3x3 kernel is Keras "same": 28x28 in, 28x28 out.
    return SeedCNN(in_channels=1, conv1_kernel=3, conv1_padding=1, num_classes=num_classes)


def exercise_seed(num_classes: int = 10) -> SeedCNN:
    """The exercise network of the seed, on 3x32x32 images (CIFAR-size): 62,958 parameters, 849,320 MACs.

    ======== ================================ ============ ============ ======
    layer    definition                       Keras (HWC)  torch (CHW)  params
    ======== ================================ ============ ============ ======
    conv1    Conv2d(3, 8, 5), "valid"         (28, 28, 8)  (8, 28, 28)     608
    pool1    MaxPool2d(2, 2)                  (14, 14, 8)  (8, 14, 14)       0
    conv2    Conv2d(8, 16, 5), "valid"        (10, 10, 16) (16, 10, 10)  3,216
    pool2    MaxPool2d(2, 2)                  (5, 5, 16)   (16, 5, 5)        0
    flatten  Flatten                          (400,)       (400,)            0
    fc1      Linear(400, 120)                 (120,)       (120,)       48,120
    fc2      Linear(120, 84)                  (84,)        (84,)        10,164
    fc3      Linear(84, 10)                   (10,)        (10,)           850
    ======== ================================ ============ ============ ======
    """
    return SeedCNN(in_channels=3, conv1_kernel=5, conv1_padding=0, num_classes=num_classes)
