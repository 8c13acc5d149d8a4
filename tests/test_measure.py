"""The measuring process: parameter counts, fvcore MACs, the FlopCounterMode cross-check, activation shapes."""
from __future__ import annotations

import json
import subprocess
import sys

import torch
from torch import nn

from harness.export import export_model
from harness.measure import profile_module, profile_program


class BatchedAffine(nn.Module):
    """torch.baddbmm: FlopCounterMode counts it, fvcore has no handler for it: a real cross-check mismatch."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 8)

    def forward(self, x):
        q = self.proj(x)
        return torch.baddbmm(q, q, q.transpose(1, 2)[:, :, :8]).flatten(1)


def test_frozen_parameters_are_not_trainable():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    model[0].requires_grad_(False)
    profile = profile_module(model, (4,))
    # BatchNorm running stats are buffers, not parameters
    assert (profile["params"], profile["trainable_params"]) == (40 + 16 + 18, 16 + 18)


def test_unsupported_ops_are_reported():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 3 * 3, 2))
    profile = profile_module(model, (3, 8, 8))
    assert profile["unsupported_ops"] == {"aten::max_pool2d": 1}
    assert profile["macs"] == 3 * 9 * 4 * 36 + 36 * 2
    assert profile["flops_check"] == 2 * profile["macs_conv_linear"]
    assert profile["flops_check_ok"] is True


def test_cross_check_mismatch_is_reported_not_hidden():
    profile = profile_module(BatchedAffine(), (8, 8))
    assert profile["flops_check_ok"] is False
    assert profile["flops_check"] == 2 * profile["macs_conv_linear"] + 2 * 8 * 8 * 8
    assert profile["unsupported_ops"] == {"aten::baddbmm": 1}


def test_batch_dimension_stays_dynamic():
    program = export_model(nn.Sequential(nn.Flatten(), nn.Linear(12, 3)), torch.randn(1, 3, 4))
    assert program.module()(torch.randn(7, 3, 4)).shape == (7, 3)
    assert profile_program(program)["input_shape"] == [3, 4]


def test_measure_command_prints_one_json_profile(tmp_path):
    program = export_model(nn.Sequential(nn.Flatten(), nn.Linear(12, 3)), torch.randn(2, 3, 4))
    torch.export.save(program, tmp_path / "model.pt2")
    out = subprocess.run([sys.executable, "-m", "harness.measure", str(tmp_path / "model.pt2")],
                         capture_output=True, text=True, check=True).stdout
    profile = json.loads(out)
    assert (profile["params"], profile["macs"], profile["activation_shapes"]) == (39, 36, {"0": [12], "1": [3]})


def test_crafted_model_file_is_a_measure_error(tmp_path):
    (tmp_path / "model.pt2").write_bytes(b"PK\x03\x04 not really a zip")
    out = subprocess.run([sys.executable, "-m", "harness.measure", str(tmp_path / "model.pt2")],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["error"].startswith("model.pt2 could not be loaded as an exported program")


def test_string_padding_convolutions_are_counted():
    """Conv2d(padding="same"/"valid") lowers to aten::_convolution_mode, which fvcore has no handler for."""
    as_strings = nn.Sequential(nn.Conv2d(1, 8, 3, padding="same"), nn.Conv2d(8, 8, 3, padding="valid"))
    as_ints = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=0))
    profile = profile_module(as_strings, (1, 28, 28))
    assert profile["macs"] == profile_module(as_ints, (1, 28, 28))["macs"] == 9 * 8 * 28 * 28 + 9 * 64 * 26 * 26
    assert profile["flops_check_ok"] is True
    assert profile["unsupported_ops"] == {}
