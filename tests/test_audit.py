"""`dlgrade audit`: verdicts, spreads and margins over seeds and kernel thread counts; fragile checks flagged."""
from __future__ import annotations

import pytest

from grading.audit import CheckAudit, audit_inputs, measured_value, signed_margin
from grading.cli import main
from harness.checks import CheckResult
from harness.spec import load_spec
from tests.conftest import MODEL


def audit_row(passed, margins, kind="accuracy") -> CheckAudit:
    return CheckAudit("solution", "acc", kind, list(passed), [], list(margins))


def test_a_verdict_that_flips_is_fragile():
    row = audit_row([True, False, True], [0.02, -0.01, 0.03])
    assert (row.verdict, row.fragile) == ("FLIPS", "verdict flips: passed 2 of 3 runs")


def test_a_margin_not_above_the_spread_is_fragile():
    row = audit_row([True] * 4, [0.05, 0.20, 0.12, 0.09])
    assert row.verdict == "pass"
    assert (row.margin, round(row.spread, 6)) == (0.05, 0.15)
    assert row.fragile == "margin 0.05 not above the spread 0.15"


def test_a_margin_many_spreads_wide_is_not_fragile():
    row = audit_row([True] * 4, [0.30, 0.35, 0.32, 0.31])
    assert row.fragile is None
    failing = audit_row([False] * 3, [-0.40, -0.38, -0.41])  # a robust failure (an example meant to fail) is fine
    assert (failing.verdict, failing.margin, failing.fragile) == ("fail", 0.38, None)


def test_a_margin_of_zero_is_fragile():
    assert audit_row([False, False], [0.0, 0.0], "beats").fragile == "margin 0 not above the spread 0"


def test_signed_margins_point_to_the_passing_side():
    accuracy = CheckResult("acc", True, 1, 1, 0.5, 0.72, "")
    beats = CheckResult("beats", False, 0, 1, 0.6, 0.55, "")
    timing = CheckResult("t", True, 1, 1, {"time_ratio": 3.0, "exec_ratio": 3.0},
                         {"time_ratio": 1.2, "exec_ratio": 2.5}, "")
    assert signed_margin("accuracy", accuracy) == pytest.approx(0.22)
    assert signed_margin("beats", beats) == pytest.approx(-0.05)
    assert signed_margin("time_ratio", timing) == pytest.approx(0.5)  # the tighter of the two budgets
    assert signed_margin("accuracy", CheckResult("acc", False, 0, 1, 0.5, None, "")) is None
    assert signed_margin("activation_bits", CheckResult("b", True, 1, 1, 8, 8, "")) is None  # structural, like counts
    assert signed_margin("challenge_score", CheckResult("s", False, 0, 1, 0.005, 0.006309, "")) == pytest.approx(
        -0.001309)
    assert signed_margin("challenge_score", CheckResult("s", False, 0, 1, 0.005, None, "below the gate")) is None
    assert signed_margin("params", CheckResult("p", True, 1, 1, 490, 490, "")) is None


def test_sparsity_is_audited_on_the_share_it_requires():
    filters = CheckResult("f", True, 1, 1, {"zero": 0.0, "structured": 0.26}, {"zero": 0.27, "structured": 0.266358},
                          "")
    assert signed_margin("sparsity", filters) == pytest.approx(0.006358)  # `zero` is not required: 0
    assert measured_value("sparsity", filters) == 0.266358
    both = CheckResult("b", False, 0, 1, {"zero": 0.5, "structured": 0.25}, {"zero": 0.52, "structured": 0.1}, "")
    assert (signed_margin("sparsity", both), measured_value("sparsity", both)) == (pytest.approx(-0.15), 0.1)


@pytest.mark.slow
def test_audit_flags_a_verdict_that_depends_on_the_kernels_thread_count(tiny, capsys):
    spec, write = tiny()
    write([MODEL])
    write(["import torch\nfrom torch import nn\n"
           "model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 9 + torch.get_num_threads()))"])
    code = main(["audit", str(spec.root), "--seeds", "3", "--workers", "2"])
    table = capsys.readouterr().out
    assert code == 1
    assert "no seed parameter x kernel threads 1, 2 (6 runs)" in table
    assert "| example s0 | params | pass | 490 - 490 |  |  | ok |" in table
    assert "| solution | output | pass |  |  |  | ok |" in table
    assert "| example s1 | params | FLIPS | 490 - 539 |  |  | **FRAGILE**: verdict flips: passed 1 of 2 runs |" in table
    assert "| example s1 | output | FLIPS |  |  |  | **FRAGILE**: verdict flips: passed 1 of 2 runs |" in table
    assert f"\n\nInputs `{audit_inputs(spec)}` (`audit_inputs`: " in table
    assert "\n\n6 verdicts audited, 2 fragile.\n\n6 runs, 2 at a time, in " in table


def test_audit_inputs_change_with_the_assignment_and_with_any_notebook_audited(tiny):
    spec, write = tiny()
    example = write([MODEL])
    before = audit_inputs(spec)
    assert audit_inputs(load_spec(spec.root)) == before  # the same files: the same inputs
    example.write_bytes(example.read_bytes() + b"\n")
    assert audit_inputs(spec) != before
    changed = audit_inputs(spec)
    toml = spec.root / "assignment.toml"
    toml.write_text(toml.read_text() + "\n# a comment\n")
    assert audit_inputs(load_spec(spec.root)) != changed
