"""Reference training recipe against the kuangliu/pytorch-cifar recipe: wall time to the same validation accuracy.

Both recipes train the same network (ResNet-18 layout, width 0.25, one block per stage, built under the same
seed) on digits32 train and are evaluated on digits32 val after every epoch; a run stops at the first epoch whose
validation accuracy reaches TARGET_ACCURACY. Only training epochs are timed, in both recipes: evaluation is
excluded from both. The baseline's timed epoch includes its DataLoader (worker start-up, PIL transforms, collation),
because that is part of the recipe.

- baseline: kuangliu/pytorch-cifar `main.py` -- SGD lr 0.1, momentum 0.9, weight decay 5e-4, batch 128, cross-entropy,
  CosineAnnealingLR stepped per epoch with T_max = its epoch budget, per-sample torchvision transforms
  (RandomCrop(32, padding=4), ToTensor, Normalize; no horizontal flip for digits) on PIL images through a
  DataLoader with num_workers=2;
- reference: `reference.train.train` with its defaults (flip off for digits); time to target is read from its
  per-epoch cumulative training time, and it always runs its whole (short) budget.

The two recipes alternate, REPEATS runs each, and the table reports medians.
Usage: python benchmarks/reference_vs_baseline.py [REPEATS] > benchmarks/reference_vs_baseline.md
"""
from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass

import torch
import torchvision
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from harness.data import DATASETS, normalize, raw_split
from reference.models import build
from reference.train import HYPERPARAMETERS, evaluate, train

DATASET = "digits32"
TARGET_ACCURACY = 0.95
# The cosine's T_max. kuangliu's 200 is for CIFAR-10; on digits32 5 is the kindest budget for the baseline: the
# shortest of 4, 5, 6, 8, 10 and 15 with which seeds 0-2 all reach the target (4 does not, longer ones get there
# later: budgets 6-15 reach it at epoch 5 to 7).
BASELINE_EPOCH_BUDGET = 5
MODEL = dict(width=0.25, blocks=(1, 1, 1, 1))
REPEATS = 3


@dataclass
class Run:
    accuracy: list[float]  # validation accuracy after each epoch
    time_s: list[float]  # cumulative timed training seconds after each epoch

    def epochs_to_target(self) -> int | None:
        return next((i + 1 for i, acc in enumerate(self.accuracy) if acc >= TARGET_ACCURACY), None)

    def seconds_to_target(self) -> float | None:
        epochs = self.epochs_to_target()
        return self.time_s[epochs - 1] if epochs else None


def fresh_model() -> nn.Module:
    torch.manual_seed(0)  # the same initial weights for both recipes
    return build("resnet18", **MODEL)


class PILImages(Dataset):
    """uint8 (N, 3, H, W) images as PIL images, transformed one sample at a time like torchvision's CIFAR10."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform) -> None:
        self.images = [Image.fromarray(image.permute(1, 2, 0).numpy()) for image in images]
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.transform(self.images[index]), self.labels[index]


def baseline_loader() -> DataLoader:
    ds = DATASETS[DATASET]
    steps = [transforms.RandomCrop(32, padding=4)]
    if ds.flip:
        steps.append(transforms.RandomHorizontalFlip())
    steps += [transforms.ToTensor(), transforms.Normalize(ds.mean, ds.std)]
    images, labels = raw_split(DATASET, "train")
    return DataLoader(PILImages(images, labels, transforms.Compose(steps)), batch_size=128, shuffle=True,
                      num_workers=2)


def run_baseline(loader: DataLoader, val_x: torch.Tensor, val_y: torch.Tensor, seed: int,
                 max_epochs: int = BASELINE_EPOCH_BUDGET) -> Run:
    """kuangliu's train() loop, one epoch at a time, until the target or the epoch budget."""
    model = fresh_model()
    torch.manual_seed(seed)  # the DataLoader's shuffling and its workers' transform seeds
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=BASELINE_EPOCH_BUDGET)
    run = Run([], [])
    elapsed = 0.0
    for _ in range(max_epochs):
        started = time.perf_counter()
        model.train()
        train_loss = 0.0
        for inputs, targets in loader:
            optimizer.zero_grad()
            loss = criterion(model(inputs), targets)
            loss.backward()
            optimizer.step()
            train_loss += loss.item()  # kuangliu logs it every step
        scheduler.step()
        elapsed += time.perf_counter() - started
        run.time_s.append(elapsed)
        run.accuracy.append(evaluate(model, val_x, val_y))
        if run.accuracy[-1] >= TARGET_ACCURACY:
            break
    return run


def run_reference(train_x, train_y, val_x, val_y, seed: int) -> Run:
    report = train(fresh_model(), train_x, train_y, val_x, val_y, flip=DATASETS[DATASET].flip, seed=seed)
    return Run(report.val_accuracy, report.train_time_s_at_epoch)


def median_or_none(values: list[float | None]) -> float | None:
    """The median when every run reached the target, else None (a median over the finishers would flatter)."""
    return None if any(v is None for v in values) else statistics.median(values)


def row(name: str, runs: list[Run], ratio: str) -> str:
    epochs = median_or_none([r.epochs_to_target() for r in runs])
    seconds = median_or_none([r.seconds_to_target() for r in runs])
    per_epoch = statistics.median(r.time_s[-1] / len(r.time_s) for r in runs)
    final = statistics.median(r.accuracy[-1] for r in runs)
    if seconds is None:
        return f"| {name} | not reached | | {per_epoch:.2f} s | {final:.1%} | {ratio} |"
    return f"| {name} | {epochs:g} | {seconds:.2f} s | {per_epoch:.2f} s | {final:.1%} | {ratio} |"


def main(repeats: int) -> None:
    train_images, train_labels = raw_split(DATASET, "train")
    val_images, val_labels = raw_split(DATASET, "val")
    train_x, val_x = normalize(train_images, DATASET), normalize(val_images, DATASET)
    loader = baseline_loader()
    load_before = os.getloadavg()[0]
    run_reference(train_x[:256], train_labels[:256], None, None, seed=0)  # warm-up: first-call costs, both paths
    run_baseline(loader, val_x, val_labels, seed=0, max_epochs=1)
    baseline, reference = [], []
    for seed in range(repeats):
        baseline.append(run_baseline(loader, val_x, val_labels, seed))
        reference.append(run_reference(train_x, train_labels, val_x, val_labels, seed))
    setting = (f"Median of {repeats} alternating runs per recipe. Load average (1 min) {load_before:.1f} before "
               f"the runs, {os.getloadavg()[0]:.1f} after: other processes share the 2 cores, so absolute times "
               "vary between runs of this script; the ratio, measured in one run, is the claim.")
    data = f"{DATASET} train ({len(train_x)} images), validated on {DATASET} val ({len(val_x)} images)"
    print_report(baseline, reference, setting, data)


def print_report(baseline: list[Run], reference: list[Run], setting: str, data: str) -> None:
    base_s = median_or_none([r.seconds_to_target() for r in baseline])
    ref_s = median_or_none([r.seconds_to_target() for r in reference])
    ratio = f"{base_s / ref_s:.1f}x" if base_s and ref_s else "n/a"
    print("# Reference recipe vs kuangliu/pytorch-cifar baseline (digits32, CPU)\n")
    print(f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          f"torchvision {torchvision.__version__}, Python {platform.python_version()}. {setting}\n")
    print(f"Model: `build(\"resnet18\", width=0.25, blocks=(1, 1, 1, 1))`, same initial weights for both. "
          f"Data: {data} after every epoch. Target: {TARGET_ACCURACY:.0%} validation accuracy. Times are training "
          "epochs only: evaluation is excluded from both recipes; the baseline's DataLoader is included.\n")
    print("| recipe | epochs to target | wall s to target | s per epoch | final val accuracy | baseline / reference |")
    print("|---|---|---|---|---|---|")
    print(row(f"baseline: kuangliu main.py (batch 128, DataLoader, {BASELINE_EPOCH_BUDGET}-epoch cosine)",
              baseline, ""))
    print(row(f"reference: `reference.train` defaults ({HYPERPARAMETERS['epochs']} epochs)", reference, ratio))
    print("\nThe baseline stops at the target, so its final accuracy is the one that reached it; the reference "
          "always runs its whole budget, and its time to target is read at the first epoch that reached it.\n")
    print(f"Reference hyper-parameters: `{HYPERPARAMETERS}`\n")
    for name, runs in (("baseline", baseline), ("reference", reference)):
        print(f"All {name} runs (validation accuracy per epoch @ cumulative seconds):\n")
        for run in runs:
            print("- " + ", ".join(f"{acc:.3f} @ {t:.2f} s" for acc, t in zip(run.accuracy, run.time_s)))
        print()
    print(GPU_SECTION)


GPU_SECTION = """## On a GPU (expectation, not measured: this machine has no GPU)

The public anchor is airbench94 (Keller Jordan, cifar10-airbench): 94.01 % mean CIFAR-10 test accuracy in 3.83 s on
an A100 without torch.compile (0.36 PFLOPs for the whole run).

Shared by the reference recipe: the whole train set resident on the device; augmentation as batched tensor ops
(random translation from a padded batch, flips when the dataset allows them); channels_last; bf16 autocast; label
smoothing; SGD with Nesterov momentum and a per-iteration warmup-then-decay schedule; a high BatchNorm momentum
for short runs; the clock read only after `torch.cuda.synchronize()`, around the training steps alone.

Lacking: airbench's own network (three conv groups, GELU, about 0.12 GMACs per image by our count of its layers,
against 0.56 GMACs for the course's ResNet-18); its frozen patch-whitening first layer initialised from the data;
decoupled hyper-parameters with a 64x learning rate for BatchNorm biases; Lookahead with an EMA of the weights;
alternating instead of random flips; test-time augmentation (mirror + translate); fp16 weights. And the
defaults here are tuned for digits32 on a CPU: batch 128 and 3 epochs. On CIFAR-10 on a GPU, pass larger batches
(512-1024, lr scaled linearly from 0.2 per 128) and more epochs.

Expected gap, for ResNet-18 at width 1 with this recipe on an A100: compute-bound (no DataLoader in the loop), so
each epoch costs about 0.56 / 0.12 = 4.7x airbench94's, and without whitening, Lookahead and TTA it needs more
epochs than airbench's 9.9 to reach 94 % (our guess: 20-30, as for other untuned ResNets with one-cycle schedules).
That puts the expectation at roughly ten to fifteen times airbench94's 3.83 s, i.e. about a minute, against several
minutes for the kuangliu recipe (fp32, NCHW, per-sample PIL transforms in two DataLoader workers, which can become
the bottleneck on a fast GPU). These are expectations, to be replaced by a measurement on a GPU.
"""

if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else REPEATS)
