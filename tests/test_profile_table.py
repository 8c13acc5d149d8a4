"""The `dlgrade profile` table: nested rows indented, MACs outside any submodule in a row of their own, op-less
modules (nn.Identity) with their activation shape, and one rule for pooling (every kind counts 0 MACs)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grading.console import MODEL_OWN_FORWARD, format_profile, profile_rows
from harness.measure import profile_module


class Block(nn.Module):
    """conv + identity skip, then a 1x1 convolution of its own (F.conv2d with a parameter it holds directly)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.skip = nn.Identity()
        self.mix = nn.Parameter(torch.randn(4, 4, 1, 1))

    def forward(self, x):
        return F.conv2d(F.relu(self.conv(x)) + self.skip(x), self.mix)


class TableNet(nn.Module):
    """Input (3, 8, 8). Nesting (stage.0.conv), an op-less module (stage.0.skip), F.avg_pool2d and an adaptive pool,
    and a top-level F.linear with a parameter the model holds itself."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.stage = nn.Sequential(Block(), nn.Dropout(0.1))
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(4, 10)
        self.proj = nn.Parameter(torch.randn(10, 10))

    def forward(self, x):
        x = F.avg_pool2d(self.stage(self.stem(x)), 2)
        return F.linear(self.head(self.gap(x).flatten(1)), self.proj)


# By hand, 8x8 pixels = 64 output positions for every convolution (padding 1, stride 1):
STEM = (3 * 9 * 4 + 4, 3 * 9 * 4 * 64)  # (params, MACs) = (112, 6912)
CONV = (4 * 9 * 4 + 4, 4 * 9 * 4 * 64)  # (148, 9216)
MIX = (4 * 4, 4 * 4 * 64)  # Block's own 1x1 F.conv2d: (16, 1024)
HEAD = (4 * 10 + 10, 4 * 10)  # (50, 40)
PROJ = (10 * 10, 10 * 10)  # the model's own F.linear: (100, 100)
PARAMS = STEM[0] + CONV[0] + MIX[0] + HEAD[0] + PROJ[0]  # 426
MACS = STEM[1] + CONV[1] + MIX[1] + HEAD[1] + PROJ[1]  # 17,292: both pools count 0


@pytest.fixture(scope="module")
def profile() -> dict:
    torch.manual_seed(0)
    return profile_module(TableNet(), (3, 8, 8))


def test_totals_count_no_pooling_of_any_kind(profile):
    assert (profile["params"], profile["macs"], profile["macs_conv_linear"]) == (PARAMS, MACS, MACS)
    assert profile["flops_check"] == 2 * profile["macs_conv_linear"]
    # F.avg_pool2d and nn.AdaptiveAvgPool2d alike: 0 MACs, listed as not counted (fvcore alone counts the adaptive
    # one as 4 * 4 * 4 = 64 input elements).
    assert profile["unsupported_ops"] == {"aten::add": 1, "aten::avg_pool2d": 1, "aten::adaptive_avg_pool2d": 1}


def test_macs_by_module_include_the_children_and_the_modules_own_forward(profile):
    assert profile["macs_by_module"] == {"stem": STEM[1], "stage": CONV[1] + MIX[1], "stage.0": CONV[1] + MIX[1],
                                         "stage.0.conv": CONV[1], "head": HEAD[1]}


def test_op_less_modules_have_activation_shapes_parents_before_children(profile):
    assert list(profile["activation_shapes"].items()) == [
        ("stem", [4, 8, 8]), ("stage", [4, 8, 8]), ("stage.0", [4, 8, 8]), ("stage.0.conv", [4, 8, 8]),
        ("stage.0.skip", [4, 8, 8]), ("stage.1", [4, 8, 8]), ("gap", [4, 1, 1]), ("head", [10])]


def test_identity_on_the_model_input_has_the_input_shape():
    profile = profile_module(nn.Sequential(nn.Identity(), nn.Flatten(), nn.Linear(12, 3)), (3, 4))
    assert profile["activation_shapes"] == {"0": [3, 4], "1": [12], "2": [3]}


def test_rows_are_a_tree_with_own_forward_rows_and_leaves_add_up_to_the_totals(profile):
    rows = profile_rows(profile)
    assert rows == [
        ("stem", 0, "(4, 8, 8)", *STEM, True),
        ("stage", 0, "(4, 8, 8)", CONV[0] + MIX[0], CONV[1] + MIX[1], False),
        ("stage.0", 1, "(4, 8, 8)", CONV[0] + MIX[0], CONV[1] + MIX[1], False),
        ("stage.0.conv", 2, "(4, 8, 8)", *CONV, True),
        ("stage.0.skip", 2, "(4, 8, 8)", 0, 0, True),
        ("stage.0 (own forward)", 2, "-", *MIX, True),
        ("stage.1", 1, "(4, 8, 8)", 0, 0, True),
        ("gap", 0, "(4, 1, 1)", 0, 0, True),
        ("head", 0, "(10,)", *HEAD, True),
        (MODEL_OWN_FORWARD, 0, "-", *PROJ, True),
    ]
    leaves = [row for row in rows if row[-1]]
    assert sum(row[3] for row in leaves) == profile["params"]
    assert sum(row[4] for row in leaves) == profile["macs"]


def test_table_indents_nested_rows_and_states_the_conventions(profile):
    lines = format_profile(profile).splitlines()
    assert lines[2].split() == ["stem", "(4,", "8,", "8)", "112", "6,912"]
    assert lines[4].startswith("  stage.0 ") and lines[5].startswith("    stage.0.conv ")
    assert lines[7].startswith("    stage.0 (own forward) ") and lines[7].split()[-2:] == ["16", "1,024"]
    assert lines[11].startswith(MODEL_OWN_FORWARD) and lines[11].split()[-2:] == ["100", "100"]
    footer = " ".join(" ".join(lines[12:]).split())
    assert "a row includes the rows indented under it" in footer
    assert "0 for pooling (max, average and adaptive alike)" in footer
    assert "aten::avg_pool2d x1, aten::adaptive_avg_pool2d x1" in footer


def test_a_container_that_is_never_called_leaves_its_children_one_level_up():
    """nn.ModuleList is iterated, not called: no row of its own; its blocks hang under the model."""
    profile = {"activation_shapes": {"blocks.0": [4], "blocks.1": [4]}, "params_by_module": {"blocks.0": 20,
               "blocks.1": 20}, "macs_by_module": {"blocks.0": 16, "blocks.1": 16}, "params": 40, "macs": 32}
    assert profile_rows(profile) == [("blocks.0", 0, "(4,)", 20, 16, True), ("blocks.1", 0, "(4,)", 20, 16, True)]
