"""The reference training recipe: batched augmentation, hyper-parameter overrides, determinism, evaluation."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness.data import normalize, raw_split
from reference.models import build
from reference.train import HYPERPARAMETERS, TrainReport, augment, evaluate, train


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, ...]:
    """A tiny, fixed slice of digits32: 64 train and 40 val examples, normalised."""
    train_images, train_labels = raw_split("digits32", "train")
    val_images, val_labels = raw_split("digits32", "val")
    return (normalize(train_images[:64], "digits32"), train_labels[:64],
            normalize(val_images[:40], "digits32"), val_labels[:40])


def test_augment_keeps_shape_and_dtype():
    images = torch.randn(8, 3, 32, 32, dtype=torch.float64)
    out = augment(images, padding=4, flip=True, generator=generator())
    assert out.shape == (8, 3, 32, 32)
    assert out.dtype == torch.float64


def test_augment_without_padding_or_flip_is_the_identity():
    images = torch.randn(8, 3, 32, 32)
    assert torch.equal(augment(images, padding=0, flip=False, generator=generator()), images)


def test_flipped_examples_are_the_mirror_images_and_the_others_are_unchanged():
    images = torch.randn(64, 3, 8, 8)
    out = augment(images, padding=0, flip=True, generator=generator())
    mirrored = torch.flip(images, dims=[3])
    flipped = [torch.equal(out[i], mirrored[i]) for i in range(64)]
    unchanged = [torch.equal(out[i], images[i]) for i in range(64)]
    assert all(f != u for f, u in zip(flipped, unchanged))  # each example is exactly one of the two
    assert 0 < sum(flipped) < 64


def test_each_crop_is_a_slice_of_the_reflect_padded_image():
    padding, size = 2, 8
    images = torch.randn(32, 3, size, size)
    out = augment(images, padding=padding, flip=False, generator=generator())
    padded = F.pad(images, (padding,) * 4, mode="reflect")
    offsets = []
    for i in range(32):
        matches = [(dy, dx) for dy in range(2 * padding + 1) for dx in range(2 * padding + 1)
                   if torch.equal(out[i], padded[i, :, dy:dy + size, dx:dx + size])]
        assert len(matches) == 1, f"example {i} is not a single shift of its padded image: {matches}"
        offsets += matches
    assert len(set(offsets)) > 1  # offsets are drawn per example, not once for the batch


def test_unknown_override_raises_naming_the_known_hyperparameters(digits):
    with pytest.raises(ValueError, match="unknown hyper-parameter.*learning_rate") as error:
        train(nn.Linear(1, 1), *digits, learning_rate=0.1)
    assert all(key in str(error.value) for key in HYPERPARAMETERS)


def train_small_resnet(digits, seed: int) -> TrainReport:
    torch.manual_seed(0)
    model = build("resnet18", width=0.25, blocks=(1, 1, 1, 1))
    return train(model, *digits, seed=seed, epochs=2, batch_size=32)


@pytest.fixture(scope="module")
def twin_reports(digits) -> tuple[TrainReport, TrainReport]:
    """Two trainings of the same initial model with the same seed."""
    return train_small_resnet(digits, seed=3), train_small_resnet(digits, seed=3)


def test_train_returns_one_entry_per_epoch(twin_reports):
    report = twin_reports[0]
    assert isinstance(report, TrainReport)
    assert report.epochs == 2
    assert len(report.val_accuracy) == len(report.losses) == len(report.train_time_s_at_epoch) == 2
    assert report.train_time_s == report.train_time_s_at_epoch[-1] > 0


def test_train_is_deterministic_for_a_seed(twin_reports):
    first, second = twin_reports
    assert first.val_accuracy == second.val_accuracy
    assert first.losses == second.losses


def test_train_leaves_the_global_rng_as_it_was(digits):
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    train(model, *digits, epochs=1)
    assert torch.equal(torch.rand(4), expected)


class AlwaysClassZero(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(len(x), 10)
        logits[:, 0] = 1.0
        return logits


def test_evaluate_of_a_constant_model_is_the_fraction_of_its_class(digits):
    _, _, val_x, val_y = digits
    expected = (val_y == 0).sum().item() / len(val_y)
    assert expected > 0
    assert evaluate(AlwaysClassZero(), val_x, val_y, batch_size=7) == expected


def test_evaluate_restores_the_training_mode(digits):
    model = AlwaysClassZero().train()
    evaluate(model, digits[2], digits[3])
    assert model.training
