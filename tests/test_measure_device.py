"""Held-out measurement on the grading device: what our export leaves on the CPU is moved, what still fails on the
device is measured on the CPU with a note, and latency comes labelled with a throughput (harness/measure_device.py).
The GPU is stood in for by PyTorch's `meta` device, which really rejects CPU tensors and cannot produce values."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.export import export_model
from harness.measure import evaluate_program
from harness.measure_device import measure_on_device_or_cpu, on_device


class PinnedToCpu(nn.Module):
    """A correct model whose export records a tensor constant and a factory call on the CPU."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 32 * 32, 10)
        self.scale = torch.full((10,), 2.0)  # a plain tensor attribute: a constant of the exported program

    def forward(self, x):
        return self.fc(x.flatten(1)) * self.scale + torch.zeros(10, device="cpu")


@pytest.fixture(scope="module")
def pinned():
    torch.manual_seed(0)
    return export_model(PinnedToCpu(), torch.randn(2, 3, 32, 32))


def test_export_leaves_constants_on_the_cpu_and_on_device_moves_them(pinned):
    x = torch.randn(5, 3, 32, 32, device="meta")
    with pytest.raises(RuntimeError, match="Tensor on device cpu is not on the expected device meta"):
        pinned.module().to("meta")(x)
    assert on_device(pinned.module(), "meta")(x).shape == (5, 10)


def test_a_model_that_fails_on_the_device_is_measured_on_the_cpu_with_a_note(pinned):
    on_cpu = evaluate_program(pinned, "digits32")
    on_meta = evaluate_program(pinned, "digits32", device="meta")
    assert on_meta["accuracy"] == on_cpu["accuracy"]
    assert on_meta["latency_device"] == "cpu"
    assert on_meta["notes"] == ["accuracy and latency measured on the CPU: the model could not run on meta "
                                "(Tensor.item() cannot be called on meta tensors), though it runs on the CPU where it "
                                "was exported; not counted against the submission"]
    assert "notes" not in on_cpu


def test_a_model_that_fails_on_the_cpu_too_keeps_its_own_error():
    def broken(device: str):
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied (on {device})")

    with pytest.raises(RuntimeError, match=r"\(on cpu\)"):
        measure_on_device_or_cpu(broken, "meta")


def test_latency_is_labelled_with_its_device_and_a_batch_throughput(pinned):
    measured = evaluate_program(pinned, "digits32")
    assert (measured["latency_device"], measured["throughput_batch"]) == ("cpu", 360)  # the whole test split
    assert measured["throughput_per_s"] > 1000 / measured["latency_ms"]  # batching pays even on a CPU
