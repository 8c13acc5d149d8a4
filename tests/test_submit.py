"""harness.submit as the locked submit cell calls it, in this process (no kernel needed)."""
from __future__ import annotations

import json

import torch
from torch import nn

from harness.submit import submit


def test_model_pt2_does_not_carry_the_storage_the_example_input_is_a_view_of(tmp_path, monkeypatch):
    # the case: the example input is a slice of the training tensor (here 2,000 images, 24.6 MB)
    monkeypatch.setenv("DLGRADE_OUTPUT_DIR", str(tmp_path))
    train_x = torch.randn(2000, 3, 32, 32)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))  # 30,730 parameters = 123 kB of float32
    submit(model, train_x[:64])
    size = (tmp_path / "model.pt2").stat().st_size
    assert size < 200_000, f"model.pt2 is {size:,} bytes: it holds more than the weights and 2 example images"
    assert train_x.numel() * 4 > 100 * 200_000  # the training set alone would be over 100x that
    assert json.loads((tmp_path / "answers.json").read_text()) == {}
