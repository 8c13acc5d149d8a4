"""The dlgrade command line: profile figures, usage errors and --help examples."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from grading.cli import build_parser, main
from grading.targets import parse_reference


def dlgrade(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grading.cli", *args], capture_output=True, text=True)


def test_profile_resnet18_reports_the_contract_figures():
    run = dlgrade("profile", "reference:resnet18", "--json", "-")
    assert run.returncode == 0, run.stderr
    profile = json.loads(run.stdout)
    assert {k: profile[k] for k in ("params", "macs", "macs_conv_linear", "flops_check")} == {
        "params": 11173962, "macs": 556651520, "macs_conv_linear": 555422720, "flops_check": 1110845440}


def test_profile_lenet_seed_has_the_seed_table(capsys):
    assert main(["profile", "reference:lenet_seed", "--json", "-"]) == 0
    profile = json.loads(capsys.readouterr().out)
    assert (profile["params"], profile["macs"]) == (62430, 435368)
    assert profile["activation_shapes"] == {
        "conv1": [8, 28, 28], "pool1": [8, 14, 14], "conv2": [16, 10, 10], "pool2": [16, 5, 5],
        "flatten": [400], "fc1": [120], "fc2": [84], "fc3": [10]}


def test_profile_factory_file(tmp_path, capsys):
    (tmp_path / "mine.py").write_text("from torch import nn\ndef make():\n    return nn.Linear(12, 2)\n")
    assert main(["profile", f"{tmp_path / 'mine.py'}:make", "--input-shape", "12", "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == 26


def test_reference_options_are_python_literals():
    assert parse_reference("resnet18,width=0.5,blocks=(1,1,1,1)") == ("resnet18", {"width": 0.5,
                                                                                  "blocks": (1, 1, 1, 1)})


def test_unknown_profile_target_is_a_usage_error(capsys):
    assert main(["profile", "nonsense"]) == 2
    assert "unknown target 'nonsense'" in capsys.readouterr().err


def test_unknown_assignment_lists_the_known_ones(capsys, tmp_path):
    assert main(["check", str(tmp_path / "x.ipynb"), "--assignment", "nope"]) == 2
    assert "no assignment 'nope'" in capsys.readouterr().err


def test_bad_parameter_syntax_is_a_usage_error(capsys):
    assert main(["check", "x.ipynb", "--assignment", "shapes_params", "-p", "seed"]) == 2
    assert "-p expects NAME=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize("command", list(build_parser()._subparsers._group_actions[0].choices))
def test_every_command_help_has_an_example(command):
    sub = build_parser()._subparsers._group_actions[0].choices[command]
    assert "dlgrade " + command in sub.format_help().rsplit("example", 1)[1]
