"""The check registry: results, evidence, and how a check kind is declared and run. The kinds themselves register
here from harness/checks.py and harness/compression_checks.py (imported by checks.py, so importing it gives every
kind)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from harness.options import Option
from harness.schema import CheckSpec


@dataclass
class CheckResult:
    id: str
    passed: bool
    points: float
    max_points: float
    expected: object
    got: object
    message: str


@dataclass
class Evidence:
    profile: dict  # measurement of the submitted model
    answers: dict  # the student's answers (claims, not measurements)
    reference: Callable[[str], dict]  # name of a reference model -> its profile
    default_reference: str | None
    metrics: dict  # the result's metrics: accuracy, train_time_s, time_ratio, exec_ratio, ...
    test_cells: dict = field(default_factory=dict)  # grade_id -> TestCellOutcome of nbgrader test cells that ran
    models: dict = field(default_factory=dict)  # name -> profile of each extra model the notebook submitted

    def of_model(self, name: str) -> Evidence:
        """The same evidence seen from extra model `name`: its profile, and its measurements in the metrics."""
        profile = self.models[name]
        metrics = {**self.metrics, **{key: value for key, value in profile.items() if key in self.metrics}}
        return replace(self, profile=profile, metrics=metrics)


@dataclass
class TestCellOutcome:
    """How an nbgrader test cell ran, read by the runner from the kernel's replies (not from anything it printed)."""

    ran: bool
    error: dict | None = None  # {"ename", "evalue"}


CheckFn = Callable[[CheckSpec, Evidence], CheckResult]
CHECK_KINDS: dict[str, CheckFn] = {}
CHECK_OPTIONS: dict[str, dict[str, Option]] = {}  # kind -> its own options (load_spec refuses any other key)
COMMON_OPTIONS = {o.name: o for o in (  # keys every [[checks]] entry may have
    Option("id", str, required=True, doc="a unique name, also the grade_id of the check's nbgrader cell"),
    Option("kind", str, required=True, doc="one of the kinds in harness/checks.py"),
    Option("points", float, required=True, minimum=0, doc="the check's points"),
    Option("hidden", bool, default=False, doc="graded, but left out of `dlgrade check --selfcheck`"),
    Option("hint", str, doc="added to the message of a failed check"),
    Option("model", str, doc="an [assignment] extra_models name: check that model instead of the main one"),
)}
def check_kind(name: str, *options: Option):
    """Register a check kind and declare its options (besides COMMON_OPTIONS)."""
    def register(fn: CheckFn) -> CheckFn:
        CHECK_KINDS[name] = fn
        CHECK_OPTIONS[name] = {o.name: o for o in options}
        return fn

    return register


def option(spec: CheckSpec, name: str):
    """The check's value of option `name`, else the default its kind declares."""
    declared = {**COMMON_OPTIONS, **CHECK_OPTIONS[spec.kind]}[name]
    return spec.options.get(name, declared.default)


def run_check(spec: CheckSpec, evidence: Evidence) -> CheckResult:
    """Option `model` (any kind): check that extra model of the submission instead of the main one."""
    name = spec.options.get("model")
    if name is not None:
        if name not in evidence.models:
            return _result(spec, 0.0, f"model '{name}'", None, _missing_model(name))
        evidence = evidence.of_model(name)
    return CHECK_KINDS[spec.kind](spec, evidence)


def _missing_model(name: str) -> str:
    return (f"the notebook did not submit the model '{name}': keep the assignment's last (locked) cell, which "
            f"submits it with harness.submit(..., extra_models={{'{name}': ...}}).")


def not_graded(spec: CheckSpec, reason: str) -> CheckResult:
    """A check that could not be made (no model, a timeout, a lost worker): 0 points and the reason."""
    return CheckResult(spec.id, False, 0.0, spec.points, None, None, f"not graded: {reason}")


def _result(spec: CheckSpec, fraction: float, expected, got, message: str) -> CheckResult:
    points = round(spec.points * fraction, 4)
    hint = spec.options.get("hint")
    passed = fraction >= 1.0
    if not passed and hint:
        message = f"{message} Hint: {hint}"
    return CheckResult(spec.id, passed, points, spec.points, expected, got, message)


def _expected(spec: CheckSpec, evidence: Evidence, key: str):
    """`expected` from the spec, or measured on the reference model when it says "reference"."""
    expected = option(spec, "expected")
    if expected == "reference":
        name = spec.options.get("reference", evidence.default_reference)
        if not name:
            raise KeyError(f"check '{spec.id}' needs expected = ... or a reference model")
        return evidence.reference(name)[key]
    return expected
