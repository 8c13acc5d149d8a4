"""Datasets: fixed splits, what a notebook gets, and clear messages when data is missing."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from harness import data


def test_digits32_split_sizes_are_fixed_and_stratified():
    sizes = {split: data.raw_split("digits32", split)[1] for split in ("train", "val", "test")}
    assert {k: len(v) for k, v in sizes.items()} == {"train": 1257, "val": 180, "test": 360}
    assert sizes["val"].bincount().tolist() == [18] * 10
    assert sizes["test"].bincount().tolist() == [36, 36, 35, 37, 36, 37, 36, 36, 35, 36]


def test_digits32_splits_are_disjoint_and_deterministic():
    train, _ = data.raw_split("digits32", "train")
    test, _ = data.raw_split("digits32", "test")
    again, _ = data.raw_split("digits32", "test")
    assert torch.equal(test, again)
    assert train.shape[1:] == (3, 32, 32) and train.dtype == torch.uint8
    train_rows = {bytes(img.numpy()) for img in train}
    assert not any(bytes(img.numpy()) in train_rows for img in test if img.any())


def test_notebook_data_dir_holds_train_and_val_only(tmp_path):
    data.write_notebook_data("digits32", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.pt", "val.pt"]
    train_x, train_y, val_x, val_y = data.load_notebook_data(tmp_path, "digits32")
    assert (train_x.shape, val_x.shape) == ((1257, 3, 32, 32), (180, 3, 32, 32))
    assert abs(train_x.mean().item()) < 0.01 and abs(train_x.std().item() - 1) < 0.01  # the documented constants


def test_notebook_data_of_another_dataset_is_refused(tmp_path):
    data.write_notebook_data("digits32", tmp_path)
    with pytest.raises(data.DataError, match="holds digits32, not cifar10"):
        data.load_notebook_data(tmp_path, "cifar10")


def test_missing_cifar10_says_how_to_get_it(tmp_path):
    with pytest.raises(data.DataError, match=r"CIFAR-10 not found in .*download=True"):
        data.raw_split("cifar10", "train", tmp_path)


def _fake_cifar10(root, n_train_per_batch=4, n_test=6):
    """A tiny directory in torchvision's CIFAR-10 layout (not the real data: tests never download)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = n_test if name == "test_batch" else n_train_per_batch
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": list(range(n))}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(i) for i in range(10)]}))


def test_cifar10_from_a_directory_splits_train_into_train_and_val(tmp_path, monkeypatch):
    _fake_cifar10(tmp_path)
    # the fake files have other md5 sums than the real ones: skip torchvision's checksum test, nothing else
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *args, **kwargs: True)
    sizes = {s: len(data.raw_split("cifar10", s, tmp_path)[1]) for s in ("train", "val", "test")}
    assert sizes == {"train": 18, "val": 2, "test": 6}
    assert data.raw_split("cifar10", "test", tmp_path)[0].shape == (6, 3, 32, 32)
    assert data.source_paths("cifar10", tmp_path) == [tmp_path]
