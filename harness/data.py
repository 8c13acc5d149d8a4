"""Datasets: `digits32` (bundled, offline default) and `cifar10` (torchvision, from a directory), with fixed splits.

Images are kept as uint8 (N, 3, 32, 32) and normalised on load. The split is fixed and documented:

- digits32 (train mean 0.3049, std 0.3234 per channel): scikit-learn's 1,797 handwritten 8x8 digits (values 0-16),
  resized bilinearly to 32x32 and repeated to 3 channels. Split stratified by label with
  `train_test_split(random_state=0)`: test 360, val 180, train 1,257.
- cifar10: torchvision's CIFAR10 in `source_dir` (the directory holding `cifar-10-batches-py`). The official 10,000
  test images are the test split; the 50,000 training images are split 45,000 train / 5,000 val by a fixed
  permutation (seed 0).
- class subsets for transfer learning (Lab 1): `digits32_0to4` (a backbone is pretrained on it) and `digits32_5to9`
  (the lab transfers the backbone to it): the same splits restricted to those classes, labels renumbered 0-4.

A notebook only ever gets `train.pt` and `val.pt` in its `data_dir` (`write_notebook_data`); the test split is built
by the measuring process (`load_test`), and in the sandbox the dataset sources are masked from the kernel.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.errors import BadInput

SPLIT_SEED = 0
NOTEBOOK_SPLITS = ("train", "val")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    flip: bool  # horizontal flips preserve the label (not for digits)
    base: str | None = None  # this dataset is a class subset of `base`
    classes: tuple[int, ...] = ()  # the base's classes it keeps, relabelled 0, 1, ... in this order


DATASETS = {
    "digits32": DatasetInfo("digits32", 10, (0.3049, 0.3049, 0.3049), (0.3234, 0.3234, 0.3234), flip=False),
    "cifar10": DatasetInfo("cifar10", 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), flip=True),
    "digits32_0to4": DatasetInfo("digits32_0to4", 5, (0.3049, 0.3049, 0.3049), (0.3234, 0.3234, 0.3234),
                                 flip=False, base="digits32", classes=(0, 1, 2, 3, 4)),
    "digits32_5to9": DatasetInfo("digits32_5to9", 5, (0.3049, 0.3049, 0.3049), (0.3234, 0.3234, 0.3234),
                                 flip=False, base="digits32", classes=(5, 6, 7, 8, 9)),
}


class DataError(BadInput):
    """A dataset that cannot be found or read; the message says what to do."""


def info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise DataError(f"unknown dataset '{name}': use one of {', '.join(DATASETS)}")
    return DATASETS[name]


def raw_split(name: str, split: str, source_dir: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 images (N, 3, 32, 32), int64 labels) of one split, straight from the source."""
    if split not in ("train", "val", "test"):
        raise DataError(f"unknown split '{split}': use train, val or test")
    ds = info(name)
    if ds.base:
        images, labels = raw_split(ds.base, split, source_dir)
        relabel = torch.full((info(ds.base).num_classes,), -1, dtype=torch.int64)
        relabel[list(ds.classes)] = torch.arange(len(ds.classes))
        keep = relabel[labels] >= 0
        return images[keep], relabel[labels[keep]]
    if name == "digits32":
        return _digits32(split)
    return _cifar10(split, source_dir)


def source_paths(name: str, source_dir: str | Path | None = None) -> list[Path]:
    """Files/directories a dataset is built from: the sandbox masks them so the kernel cannot rebuild the test split."""
    if info(name).base:
        return source_paths(info(name).base, source_dir)
    if name == "digits32":
        import sklearn.datasets

        return [Path(sklearn.datasets.__file__).parent / "data" / "digits.csv.gz"]
    return [Path(source_dir)] if source_dir else []


def _digits32(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    index = list(range(len(digits.target)))
    rest, test = train_test_split(index, test_size=360, stratify=digits.target, random_state=SPLIT_SEED)
    train, val = train_test_split(rest, test_size=180, stratify=digits.target[rest], random_state=SPLIT_SEED)
    chosen = {"train": train, "val": val, "test": test}[split]
    images = torch.tensor(digits.images[chosen], dtype=torch.float32).unsqueeze(1) / 16.0
    images = torch.nn.functional.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False)
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    return images, torch.tensor(digits.target[chosen], dtype=torch.int64)


def _cifar10(split: str, source_dir: str | Path | None) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision.datasets import CIFAR10

    if not source_dir:
        raise DataError("cifar10 needs a data directory: pass -p data_source=/path/to/cifar (the directory that "
                        "holds cifar-10-batches-py)")
    try:
        dataset = CIFAR10(root=str(source_dir), train=split != "test", download=False)
    except RuntimeError:
        raise DataError(
            f"CIFAR-10 not found in {source_dir}: on a machine with internet run "
            f"`python -c \"import torchvision; torchvision.datasets.CIFAR10('{source_dir}', download=True)\"` "
            "(it creates cifar-10-batches-py there), then copy that directory here"
        ) from None
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor(dataset.targets, dtype=torch.int64)
    if split == "test":
        return images, labels
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_val = len(labels) // 10
    chosen = order[n_val:] if split == "train" else order[:n_val]
    return images[chosen], labels[chosen]


def normalize(images: torch.Tensor, name: str) -> torch.Tensor:
    ds = info(name)
    mean = torch.tensor(ds.mean).view(1, 3, 1, 1)
    std = torch.tensor(ds.std).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


def write_notebook_data(name: str, data_dir: str | Path, source_dir: str | Path | None = None) -> None:
    """Write train.pt and val.pt (never the test split) for a notebook's `data_dir`."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    for split in NOTEBOOK_SPLITS:
        images, labels = raw_split(name, split, source_dir)
        torch.save({"dataset": name, "images": images, "labels": labels}, data_dir / f"{split}.pt")


def load_notebook_data(data_dir: str | Path, name: str = "digits32", device: str = "cpu",
                       source_dir: str | Path | None = None) -> tuple[torch.Tensor, ...]:
    """(train_x, train_y, val_x, val_y) normalised, on `device`: what a notebook trains and validates on.

    Under the grader `data_dir` is already filled; in plain Jupyter the files are created on first use.
    """
    data_dir = Path(data_dir)
    if not all((data_dir / f"{s}.pt").is_file() for s in NOTEBOOK_SPLITS):
        if "DLGRADE_OUTPUT_DIR" in os.environ:
            raise DataError(f"{data_dir} has no train.pt/val.pt: the grader did not provide data for '{name}'")
        write_notebook_data(name, data_dir, source_dir)
    tensors = []
    for split in NOTEBOOK_SPLITS:
        blob = torch.load(data_dir / f"{split}.pt", weights_only=True)
        if blob["dataset"] != name:
            raise DataError(f"{data_dir / f'{split}.pt'} holds {blob['dataset']}, not {name}: delete it or use "
                            "another data_dir")
        tensors += [normalize(blob["images"], name).to(device), blob["labels"].to(device)]
    return tuple(tensors)


def load_test(name: str, source_dir: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out split, normalised. Only the measuring process calls this."""
    images, labels = raw_split(name, "test", source_dir)
    return normalize(images, name), labels
