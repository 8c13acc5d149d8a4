"""lab_pruning's thresholds rest on how the grader counts the lab's network (assignments/lab_pruning/assignment.toml):
w = 11,218 weights the layers use (11,096 conv/linear weights + 10 classifier biases + 112 BatchNorm scales and
shifts); global pruning of 90 % of the conv/linear weights leaves round(0.9 x 11,096) = 9,986 zeros, half of each
conv's filters 4 x 27 + 8 x 72 + 16 x 144 = 2,988 weights in all-zero filters. The network is the notebook's locked
cell itself, pruned as the solution prunes it, untrained: its parameters are drawn from N(0, 1), so that no zero comes
from anything but the masks (a fresh BatchNorm's shifts are all zero)."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from harness.export import export_model
from harness.measure import profile_program
from harness.spec import ASSIGNMENTS_DIR

W = 11_218


def lab_network() -> nn.Module:
    """SmallCNN from the notebook's locked `model` cell, run as the notebook runs it."""
    notebook = json.loads((ASSIGNMENTS_DIR / "lab_pruning" / "lab_pruning.ipynb").read_text())
    source = next("".join(cell["source"]) for cell in notebook["cells"]
                  if cell["metadata"].get("nbgrader", {}).get("grade_id") == "model")
    scope = {"torch": torch, "nn": nn, "F": torch.nn.functional, "seed": 0, "device": "cpu"}
    exec(compile(source, "model", "exec"), scope)
    with torch.no_grad():
        for parameter in scope["model"].parameters():
            parameter.copy_(torch.randn_like(parameter))
    return scope["model"]


def measured(model: nn.Module) -> dict:
    return profile_program(export_model(model, torch.randn(2, 3, 32, 32)))


def test_global_pruning_at_90_percent_measures_9986_zeros_of_11218():
    model = lab_network()
    layers = [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    prune.global_unstructured(layers, pruning_method=prune.L1Unstructured, amount=0.9)
    profile = measured(model)
    assert profile["weights"] == W
    # which zeros lie in whole filters depends on the values (the trained solution has none); their sum does not
    zero = profile["structured_sparsity"] + profile["unstructured_sparsity"]
    assert zero == pytest.approx(9_986 / W, abs=2e-6)


@pytest.mark.parametrize("dim, structured", [(0, round(2_988 / W, 6)), (1, 0.0)])
def test_half_of_the_filters_measure_2988_structured_weights_and_input_channels_none(dim, structured):
    model = lab_network()
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            prune.ln_structured(module, "weight", amount=0.5, n=2, dim=dim)
    assert measured(model)["structured_sparsity"] == structured
