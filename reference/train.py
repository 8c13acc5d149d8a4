"""The course's reference training recipe: one file, hyper-parameters in one dict, the timed region explicit.

Modelled on airbench (Keller Jordan's CIFAR-10 speedruns), minus its architecture-specific tricks:

- the whole train set is moved to the device once; batches are index slices of it (no DataLoader, no PIL);
- augmentation is a few batched tensor ops: reflect-pad the batch once, crop every example at its own random
  offset with two gathers, and flip horizontally only when the dataset allows it (digits are not flip-invariant);
- SGD with Nesterov momentum and weight decay, label smoothing, and a linear-warmup + cosine learning rate
  stepped every iteration;
- a high BatchNorm momentum (0.6, PyTorch's default is 0.1): with ~10 steps per epoch the default running
  statistics lag far behind the weights, and the per-epoch validation accuracy would measure stale statistics;
- batch 128 by default, tuned for digits32 on a CPU: with 1,257 training images a larger batch leaves too few
  steps per epoch, and on a CPU it is not faster per image. On a GPU and CIFAR-10, pass batch_size=512 to 1024
  with lr scaled linearly (0.2 per 128 examples) and more epochs;
- channels_last memory format on every device (on this course's 2-core CPU it makes the small ResNet's
  training steps about 1.4x faster), bf16 autocast on CUDA only by default.

The timed region is the training steps of each epoch (augmentation, forward, backward, optimizer, schedule);
moving the data and the model to the device and the per-epoch evaluation are outside it. On CUDA, kernels run
asynchronously, so the clock is read only after `torch.cuda.synchronize()` at both ends of the region.

Threads: this module never calls `torch.set_num_threads`; CPU training uses whatever the caller set (torch's
default is one thread per physical core).

    from harness.data import DATASETS, load_notebook_data
    from reference.models import build
    from reference.train import pick_device, train

    train_x, train_y, val_x, val_y = load_notebook_data("data", "digits32")
    torch.manual_seed(0)
    model = build("resnet18", width=0.25, blocks=(1, 1, 1, 1))
    report = train(model, train_x, train_y, val_x, val_y, device=pick_device(), flip=DATASETS["digits32"].flip)
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

HYPERPARAMETERS = {
    "epochs": 3,
    "batch_size": 128,          # on a GPU use 512-1024 and scale lr linearly (see the module docstring)
    "lr": 0.2,                  # peak learning rate, reached at the end of the warmup
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 5e-4,       # coupled (PyTorch SGD's), applied to every parameter
    "label_smoothing": 0.1,
    "warmup_fraction": 0.2,     # of all steps, linear from ~0 to lr; then cosine down to 0
    "crop_padding": 2,          # random translation of up to this many pixels (reflect padding)
    "bn_momentum": 0.6,         # set on every BatchNorm layer of the model (None: keep the model's own)
    "bf16_on_cpu": False,       # bf16 autocast is always on for CUDA; on CPU it needs bf16 hardware to pay off
}

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


@dataclass
class TrainReport:
    epochs: int
    train_time_s: float  # the timed region only (training steps; evaluation excluded), synchronized on CUDA
    val_accuracy: list[float] = field(default_factory=list)  # after each epoch (empty when no val data)
    losses: list[float] = field(default_factory=list)  # mean training loss per epoch (label-smoothed)
    train_time_s_at_epoch: list[float] = field(default_factory=list)  # cumulative train_time_s after each epoch


def pick_device(requested: str | None = None) -> torch.device:
    """`requested` if given, else "cuda" when a GPU is visible, else "cpu". Asks NVML, not CUDA: this runs in
    workers that go on forking helpers (harness/devices.py, "Fork safety")."""
    from harness.devices import pick_device as visible_device

    return torch.device(requested or visible_device())


def hyperparameters(overrides: dict) -> dict:
    """HYPERPARAMETERS updated with `overrides`; ValueError naming the known keys for any other key."""
    unknown = sorted(set(overrides) - set(HYPERPARAMETERS))
    if unknown:
        raise ValueError(f"unknown hyper-parameter(s) {', '.join(unknown)}: "
                         f"the known ones are {', '.join(HYPERPARAMETERS)}")
    return {**HYPERPARAMETERS, **overrides}


def augment(images: torch.Tensor, *, padding: int, flip: bool,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """A random crop (translation by up to `padding` pixels) of every image, plus a random horizontal flip.

    The batch (N, C, H, W) is reflect-padded once; each example's crop offset is drawn independently and applied
    with two gathers (rows, then columns), so the cost does not depend on the number of distinct offsets.
    """
    n, channels, height, width = images.shape
    if padding > 0:
        padded = F.pad(images, (padding,) * 4, mode="reflect")
        offsets = torch.randint(0, 2 * padding + 1, (2, n, 1), generator=generator, device=images.device)
        rows = offsets[0] + torch.arange(height, device=images.device)  # (N, H): padded rows each example keeps
        cols = offsets[1] + torch.arange(width, device=images.device)  # (N, W)
        padded = padded.gather(2, rows.view(n, 1, height, 1).expand(n, channels, height, width + 2 * padding))
        images = padded.gather(3, cols.view(n, 1, 1, width).expand(n, channels, height, width))
    if flip:
        flipped = torch.rand(n, generator=generator, device=images.device) < 0.5
        images = torch.where(flipped.view(n, 1, 1, 1), images.flip(3), images)
    return images


def warmup_cosine(step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate multiplier of optimizer step `step` (0-based): linear warmup, then cosine to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * progress))


def train(model: nn.Module, train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor | None = None,
          val_y: torch.Tensor | None = None, *, device: str | torch.device = "cpu", flip: bool = False,
          seed: int = 0, **overrides) -> TrainReport:
    """Train `model` in place on normalised images; `overrides` are keys of HYPERPARAMETERS.

    `seed` fixes the batch order and the augmentation (and any randomness inside the model, e.g. dropout);
    the caller's global RNG state is left as it was. On CPU two runs with the same seed, the same initial
    model and the same thread count give identical results.
    """
    hp = hyperparameters(overrides)
    device = torch.device(device)
    model.to(device, memory_format=torch.channels_last)
    if hp["bn_momentum"] is not None:
        for module in model.modules():
            if isinstance(module, BATCH_NORMS):
                module.momentum = hp["bn_momentum"]
    train_x, train_y = train_x.to(device), train_y.to(device)  # once: every batch below is a slice of these
    batch_count = math.ceil(len(train_x) / hp["batch_size"])
    total_steps = hp["epochs"] * batch_count
    optimizer = torch.optim.SGD(model.parameters(), lr=hp["lr"], momentum=hp["momentum"],
                                nesterov=hp["nesterov"], weight_decay=hp["weight_decay"])
    warmup_steps = max(1, round(hp["warmup_fraction"] * total_steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, warmup_steps, total_steps))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=hp["label_smoothing"])
    autocast = autocast_for(device, cpu=hp["bf16_on_cpu"])
    report = TrainReport(epochs=hp["epochs"], train_time_s=0.0)

    with forked_rng(device):
        torch.manual_seed(seed)
        for _ in range(hp["epochs"]):
            # ---- timed region: one epoch of training steps ----
            synchronize(device)
            started = time.perf_counter()
            model.train()
            order = torch.randperm(len(train_x), device=device)
            loss_sum = torch.zeros((), device=device)  # summed on the device: no host sync per step
            for batch in order.split(hp["batch_size"]):
                images = augment(train_x[batch], padding=hp["crop_padding"], flip=flip)
                with autocast:
                    loss = loss_fn(model(images.contiguous(memory_format=torch.channels_last)), train_y[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                loss_sum += loss.detach().float() * len(batch)
            synchronize(device)
            report.train_time_s += time.perf_counter() - started
            # ---- end of timed region ----
            report.train_time_s_at_epoch.append(report.train_time_s)
            report.losses.append(loss_sum.item() / len(train_x))
            if val_x is not None and val_y is not None:
                report.val_accuracy.append(evaluate(model, val_x, val_y))
    return report


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Top-1 accuracy in [0, 1] of `model` on (x, y), in eval mode, batched, on the model's device.

    The model's train/eval mode is restored afterwards.
    """
    device = next(model.parameters(), x).device
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    with autocast_for(device, cpu=False):
        for start in range(0, len(x), batch_size):
            images = x[start:start + batch_size].to(device, memory_format=torch.channels_last)
            correct += (model(images).argmax(1) == y[start:start + batch_size].to(device)).sum()
    model.train(was_training)
    return correct.item() / len(y)


def autocast_for(device: torch.device, cpu: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; on CPU only when `cpu` is true."""
    if device.type == "cuda" or (device.type == "cpu" and cpu):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA kernels, so that a clock read after this measures finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forked_rng(device: torch.device) -> contextlib.AbstractContextManager:
    """Restore the global CPU (and this CUDA device's) RNG state on exit, so train() leaves it untouched."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.random.fork_rng(devices=[index], device_type="cuda")
    return torch.random.fork_rng(devices=[])
