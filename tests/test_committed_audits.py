"""The committed audits (docs/audit/<id>.md, written by `make audit`) are audits of the bundled assignments as they
are now: an assignment, its reference solution or an example changed without a new audit fails here, in seconds,
instead of in a 90-minute CI that would re-grade every notebook under every seed and thread count."""
from __future__ import annotations

import re

import pytest

from grading.audit import audit_inputs
from harness.spec import ASSIGNMENTS_DIR, load_spec

AUDITS_DIR = ASSIGNMENTS_DIR.parent / "docs" / "audit"
BUNDLED = sorted(toml.parent.name for toml in ASSIGNMENTS_DIR.glob("*/assignment.toml"))


def test_every_bundled_assignment_is_found():
    assert {"shapes_params", "lab1_transfer", "lab_quantization", "challenge"} <= set(BUNDLED)


@pytest.mark.parametrize("assignment", BUNDLED)
def test_the_committed_audit_is_of_the_assignment_as_it_is_and_flags_nothing(assignment):
    audit = AUDITS_DIR / f"{assignment}.md"
    assert audit.is_file(), f"no audit committed for {assignment}: run `make audit`"
    text = audit.read_text()
    recorded = re.search(r"^Inputs `([0-9a-f]{16})`", text, re.MULTILINE)
    assert recorded, f"{audit} names no inputs: run `make audit`"
    assert recorded[1] == audit_inputs(load_spec(assignment)), (
        f"{audit} audited other inputs than assignments/{assignment} has now: run `make audit` and commit the result")
    summary = re.search(r"^(\d+) verdicts audited, (\d+) fragile\.", text, re.MULTILINE)
    assert summary and int(summary[1]) > 0 and summary[2] == "0", f"{audit}: {summary and summary[0]}"
