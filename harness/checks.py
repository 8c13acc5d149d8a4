"""Check kinds: each turns one `[[checks]]` entry of assignment.toml plus the evidence into a CheckResult.

Evidence is measured by the harness: the profile of the submitted model (clean measuring process), the student's
answers (their claims, compared against harness measurements), and profiles of reference models (measured here).
Every message says what was expected, what was got, and what to do.
"""
from __future__ import annotations

import math

from harness.check_messages import shape_problems
from harness.check_registry import (
    CHECK_KINDS,
    CHECK_OPTIONS,
    COMMON_OPTIONS,
    CheckResult,
    Evidence,
    TestCellOutcome,
    _expected,
    _missing_model,
    _result,
    check_kind,
    not_graded,
    option,
    run_check,
)
from harness.model_audit import warnings_for, with_warnings
from harness.options import Option
from harness.schema import CheckSpec

# the registry's names, for the modules that grade (importing this module registers every kind)
__all__ = ["CHECK_KINDS", "CHECK_OPTIONS", "COMMON_OPTIONS", "CheckResult", "Evidence", "TestCellOutcome",
           "conv_output_size", "not_graded", "option", "run_check"]


REFERENCE = Option("reference", str, doc="a reference/models name measured for \"reference\" (default: [assignment] "
                   "reference)")
MEASURES = ("activation_shapes", "activation_sizes", "params_by_module", "conv_output_size", "autograd")


def _count_check(key: str, noun: str, default_advice: str):
    def check(spec: CheckSpec, evidence: Evidence) -> CheckResult:
        expected = int(_expected(spec, evidence, key))
        got = int(evidence.profile[key])
        rel_tol = float(option(spec, "rel_tol"))
        if math.isclose(got, expected, rel_tol=rel_tol, abs_tol=0):
            return _result(spec, 1.0, expected, got, f"{noun}: {got:,} as expected.")
        within = f" (allowed: ±{rel_tol:.0%})" if rel_tol else ""
        message = f"expected {expected:,} {noun}{within}, got {got:,} ({got - expected:+,}): {default_advice}."
        return _result(spec, 0.0, expected, got, with_warnings(message, warnings_for(key, evidence.profile)))

    return check


COUNT_OPTIONS = (Option("expected", (int, "reference"), default="reference", doc="the count, or measured on the "
                        "reference model"), Option("rel_tol", float, default=0.0, minimum=0, doc="relative tolerance"),
                 REFERENCE)
check_kind("params", *COUNT_OPTIONS)(_count_check(
    "params", "parameters", "compare your layers with the table, e.g. a Conv2d has (F*F*C_in + 1) * C_out"))
check_kind("trainable_params", *COUNT_OPTIONS)(_count_check(
    "trainable_params", "trainable parameters", "freeze with p.requires_grad_(False) what must not train"))
check_kind("macs", *COUNT_OPTIONS)(_count_check(
    "macs", "MACs", "a conv layer costs F*F*C_in*C_out*H_out*W_out; check sizes and strides"))


@check_kind("activation_shapes",
            Option("expected", (dict[str, list[int]], "reference"), default="reference",
                   doc="{module = [C, H, W], ...}, or measured on the reference model"),
            Option("modules", list[str], doc="the modules compared (default: every module of `expected`)"), REFERENCE)
def check_activation_shapes(spec: CheckSpec, evidence: Evidence) -> CheckResult:
    expected_all = _expected(spec, evidence, "activation_shapes")
    modules = spec.options.get("modules", list(expected_all))
    expected = {name: expected_all[name] for name in modules}
    got_all = evidence.profile["activation_shapes"]
    got = {name: got_all.get(name) for name in modules}
    problems = shape_problems(expected, got_all, evidence.profile.get("module_types", {}))
    if not problems:
        return _result(spec, 1.0, expected, got, f"all {len(modules)} activation shapes match.")
    fraction = 1 - len(problems) / len(modules)
    return _result(spec, fraction, expected, got, "; ".join(problems) + ".")


@check_kind("output_shape", Option("expected", (list[int], "reference"), default="reference",
                                   doc="the output shape without batch dim, e.g. [10]"), REFERENCE)
def check_output_shape(spec: CheckSpec, evidence: Evidence) -> CheckResult:
    expected = list(_expected(spec, evidence, "output_shape"))
    got = list(evidence.profile["output_shape"])
    if got == expected:
        return _result(spec, 1.0, expected, got, f"output shape {expected} as expected.")
    return _result(spec, 0.0, expected, got,
                   f"expected output shape {expected}, got {got}: the last layer should produce {expected[-1]} "
                   "values per example (one per class).")


def _measured_answer(spec: CheckSpec, evidence: Evidence):
    """The harness's own value for an answer: measured on a reference model, or on real layers."""
    measure = spec.options["measure"]
    if measure == "conv_output_size":
        return [conv_output_size(*case) for case in spec.options["cases"]]
    if measure == "autograd":
        return [derivative(expression, at) for expression, at in spec.options["cases"]]
    profile = evidence.reference(spec.options.get("reference", evidence.default_reference))
    if measure == "activation_sizes":
        table = {name: math.prod(shape) for name, shape in profile["activation_shapes"].items()}
    elif measure in ("activation_shapes", "params_by_module"):
        table = profile[measure]
    else:
        raise KeyError(f"check '{spec.id}': unknown measure '{measure}'")
    modules = spec.options.get("modules", list(table))
    return {name: table.get(name, 0) for name in modules}


def conv_output_size(width: int, kernel: int, padding: int, stride: int) -> int:
    """Measured, not computed by formula: run a real Conv2d on a (1, 1, width, width) input."""
    import torch

    conv = torch.nn.Conv2d(1, 1, kernel, stride=stride, padding=padding)
    with torch.no_grad():
        return int(conv(torch.zeros(1, 1, width, width)).shape[-1])


def derivative(expression: str, at: float) -> float:
    """d expression / dx at x = `at`, by torch.autograd in float64. `expression` comes from assignment.toml
    (instructor-written, trusted) and may use `x` and `torch`."""
    import torch

    x = torch.tensor(float(at), dtype=torch.float64, requires_grad=True)
    y = eval(expression, {"__builtins__": {}, "torch": torch}, {"x": x})  # noqa: S307 - trusted spec, not student
    (grad,) = torch.autograd.grad(y, x)
    return float(grad)


def _same(expected, got, rel_tol: float = 1e-9) -> bool:
    if isinstance(expected, (list, tuple)) and isinstance(got, (list, tuple)):
        return len(expected) == len(got) and all(_same(e, g, rel_tol) for e, g in zip(expected, got))
    if isinstance(expected, (int, float)) and isinstance(got, (int, float)) and not isinstance(got, bool):
        return math.isclose(expected, got, rel_tol=rel_tol, abs_tol=rel_tol * 1e-3)
    return expected == got


@check_kind("answers",
            Option("answer", str, required=True, doc="the name given to harness.submit(..., name=value)"),
            Option("measure", MEASURES, required=True, doc="what the grader measures to compare the answer with"),
            Option("modules", list[str], doc="the entries compared (default: all the measurement has)"),
            Option("cases", list[list], doc="conv_output_size: [[W, F, P, S], ...]; autograd: [[\"expression in x\", "
                   "at], ...]"),
            Option("rel_tol", float, default=1e-9, minimum=0, doc="relative tolerance"), REFERENCE)
def check_answers(spec: CheckSpec, evidence: Evidence) -> CheckResult:
    name = spec.options["answer"]
    rel_tol = float(option(spec, "rel_tol"))
    expected = _measured_answer(spec, evidence)
    got = evidence.answers.get(name)
    if got is None:
        return _result(spec, 0.0, expected, None,
                       f"no answer '{name}' was submitted: set the variable {name} in its cell, then re-run.")
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return _result(spec, 0.0, expected, got,
                           f"'{name}' must be a dict keyed by layer name ({', '.join(expected)}), "
                           f"got {type(got).__name__}.")
        wrong = [k for k in expected if not _same(expected[k], got.get(k), rel_tol)]
        details = [f"{k}: expected {expected[k]}, got {got.get(k, 'nothing')}" for k in wrong]
        total = len(expected)
    else:
        if not isinstance(got, list) or len(got) != len(expected):
            return _result(spec, 0.0, expected, got, f"'{name}' must be a list of {len(expected)} values.")
        wrong = [i for i, (e, g) in enumerate(zip(expected, got)) if not _same(e, g, rel_tol)]
        details = [f"case {i + 1}: expected {expected[i]}, got {got[i]}" for i in wrong]
        total = len(expected)
    if not wrong:
        return _result(spec, 1.0, expected, got, f"'{name}': all {total} values correct.")
    return _result(spec, 1 - len(wrong) / total, expected, got,
                   f"'{name}': {total - len(wrong)}/{total} correct; " + "; ".join(details) + ".")


def _no_accuracy(profile: dict) -> str:
    if profile.get("accuracy_error"):
        return f"no accuracy was measured: {profile['accuracy_error']}."
    return "no accuracy was measured: the assignment trains on no dataset."


@check_kind("accuracy", Option("threshold", float, required=True, minimum=0, maximum=1,
                               doc="the held-out accuracy needed to pass, between 0 and 1 (e.g. 0.9)"))
def check_accuracy(spec: CheckSpec, evidence: Evidence) -> CheckResult:
    threshold = float(spec.options["threshold"])
    got = evidence.metrics.get("accuracy")
    if got is None:
        return _result(spec, 0.0, threshold, None, _no_accuracy(evidence.profile))
    if got >= threshold:
        return _result(spec, 1.0, threshold, got, f"accuracy on the held-out split {got:.2%} >= {threshold:.2%}.")
    message = (f"accuracy on the held-out split {got:.2%}, below the required {threshold:.2%}: train longer or "
               "with a better learning rate, and check the validation accuracy your notebook prints.")
    return _result(spec, 0.0, threshold, got, with_warnings(message, warnings_for("accuracy", evidence.profile)))


@check_kind("beats", Option("baseline", str, required=True, doc="the extra model to beat (same architecture)"),
            Option("margin", float, default=0.0, minimum=0, maximum=1, doc="accuracy above the baseline's needed"))
def check_beats(spec: CheckSpec, evidence: Evidence) -> CheckResult:
    """More accurate on the held-out split than the extra model `baseline` (e.g. the same network trained from
    scratch on the same budget) by more than `margin` (default 0). Both accuracies are measured by the grader; the
    baseline must have the same number of parameters (the same architecture), or the comparison says nothing."""
    baseline = spec.options["baseline"]
    margin = float(option(spec, "margin"))
    accuracy = evidence.metrics.get("accuracy")
    if baseline not in evidence.models:
        return _result(spec, 0.0, f"above '{baseline}'", accuracy, _missing_model(baseline))
    other = evidence.models[baseline]
    if accuracy is None or other.get("accuracy") is None:
        unmeasured, whose = (evidence.profile, "this model") if accuracy is None else (other, f"'{baseline}'")
        return _result(spec, 0.0, f"above '{baseline}'", accuracy, f"{whose}: {_no_accuracy(unmeasured)}")
    needed = round(other["accuracy"] + margin, 6)
    compared = f"{accuracy:.1%} on the held-out split against {other['accuracy']:.1%} for '{baseline}'"
    if evidence.profile["params"] != other["params"]:
        return _result(spec, 0.0, needed, accuracy,
                       f"{compared}, but '{baseline}' has {other['params']:,} parameters and this model "
                       f"{evidence.profile['params']:,}: the comparison needs the same architecture (same head "
                       "too), trained the same number of epochs.")
    if accuracy > needed:
        return _result(spec, 1.0, needed, accuracy, f"{compared} ({(accuracy - other['accuracy']) * 100:+.1f} "
                       "points).")
    return _result(spec, 0.0, needed, accuracy,
                   f"{compared}: not more accurate{f' by more than {margin:.1%}' if margin else ''}, with the same "
                   "network and budget: what should make the difference (pretrained features, a teacher's soft "
                   "targets) did not reach the training. Check that the model you submit is the one trained that "
                   "way, and what reaches the optimizer (learning rate, parameters).")


@check_kind("frozen_backbone", Option("head", str, default="", doc="module name of the new head (not compared)"))
def check_frozen_backbone(spec: CheckSpec, evidence: Evidence) -> CheckResult:
    """Transfer learning: the backbone's parameters in the exported model equal the pretrained file's (compared in
    the measuring process), i.e. only the new head was trained. Option `head`: the head's module name (not compared:
    it is new even when its shape is the old one's)."""
    head = option(spec, "head")
    in_head = lambda name: bool(head) and (name == head or name.startswith(head + "."))  # noqa: E731
    comparison = evidence.profile["backbone"]
    unchanged = [n for n in comparison["unchanged"] if not in_head(n)]
    changed = [(n, diff) for n, diff in comparison["changed"] if not in_head(n)]
    compared = len(unchanged) + len(changed)
    if compared == 0:
        return _result(spec, 0.0, "backbone unchanged", "no backbone parameter found",
                       "none of the pretrained backbone's parameters is in the exported model: load the backbone, "
                       "replace its head and submit that model (same module names).")
    if not changed:
        return _result(spec, 1.0, "backbone unchanged", f"{compared} parameters unchanged",
                       f"the {compared} backbone parameters are exactly the pretrained ones.")
    listed = ", ".join(f"{name} (max |change| {diff:.3g})" for name, diff in changed[:5])
    more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
    return _result(spec, 0.0, "backbone unchanged", f"{len(changed)} of {compared} parameters changed",
                   f"the backbone changed during training: {listed}{more}. Freeze it before training the head: "
                   "`for p in backbone.parameters(): p.requires_grad_(False)`, and give the optimizer only the "
                   "head's parameters.")


@check_kind("time_ratio", Option("budget", float, required=True, positive=True,
                                 doc="the largest training time allowed, in multiples of the reference's"),
            Option("exec_budget", float, positive=True, doc="the same for the whole notebook (default: budget)"))
def check_time_ratio(spec: CheckSpec, evidence: Evidence) -> CheckResult:
    """Training time charged (cells tagged `train`, or the whole notebook less the reference's other cells when
    larger: harness.grade.time_ratios) and whole-notebook time, each against the reference on this runner."""
    budget = float(spec.options["budget"])
    exec_budget = float(spec.options.get("exec_budget", budget))
    m = evidence.metrics
    expected = {"time_ratio": budget, "exec_ratio": exec_budget}
    got = {"time_ratio": m.get("time_ratio"), "exec_ratio": m.get("exec_ratio")}
    if got["time_ratio"] is None:
        why = ("no cell tagged `train` ran: keep the assignment's `train` tags on your training cells"
               if m.get("train_time_s") is None else "there is no reference timing for this runner")
        return _result(spec, 0.0, expected, got, f"training time not compared: {why}.")
    problems = []
    if got["time_ratio"] > budget:
        problems.append(f"training took {got['time_ratio']:.2f}x the reference's time (budget {budget:g}x)")
    if got["exec_ratio"] is not None and got["exec_ratio"] > exec_budget:
        problems.append(f"the whole notebook took {got['exec_ratio']:.2f}x the reference's (budget {exec_budget:g}x)")
    outside = _time_outside_train_cells(m)
    if problems:
        return _result(spec, 0.0, expected, got, "; ".join(problems) + ": train fewer epochs, use larger batches, or "
                       "keep tensors on the device." + outside)
    return _result(spec, 1.0, expected, got, f"training {got['time_ratio']:.2f}x and whole notebook "
                   f"{got['exec_ratio']:.2f}x the reference's time, within {budget:g}x." + outside)


def _time_outside_train_cells(metrics: dict) -> str:
    """Why the training time charged exceeds the `train` cells' time, when it does by more than the noise of the
    cells every notebook shares (about 0.1 s of CPU)."""
    train = metrics["train_cpu_s"] if metrics.get("time_basis") == "cpu" else metrics.get("train_time_s")
    charged = metrics.get("charged_train_s") or 0.0
    outside = charged - (train or 0.0)
    if outside <= max(0.5, 0.1 * charged):
        return ""
    return (f" {outside:.1f} s of the {charged:.1f} s charged ran outside the cells tagged `train` (the whole notebook "
            "less the reference's other cells): train in the `train` cells.")


@check_kind("notebook_test")
def check_notebook_test(spec: CheckSpec, evidence: Evidence) -> CheckResult:
    """An nbgrader test cell: full points when it ran without an exception, else 0. Unlike nbgrader, output on
    stderr (torch warnings) does not cost the points, and a number shown as the cell's value is not partial credit:
    the grader never takes a number from the kernel's output (split a test into cells instead)."""
    outcome = evidence.test_cells.get(spec.id)
    if outcome is None:
        return _result(spec, 0.0, "passes", None, f"test cell '{spec.id}' is missing from the notebook: keep every "
                       "cell of the assignment (start again from the released notebook).")
    if not outcome.ran:
        return _result(spec, 0.0, "passes", None, f"test cell '{spec.id}' did not run: the notebook stopped before it.")
    if outcome.error:
        detail = f"{outcome.error['ename']}: {outcome.error['evalue']}".strip().rstrip(":")[:300]
        return _result(spec, 0.0, "passes", "error", f"test cell '{spec.id}' failed - {detail}. Fix the cells above "
                       "it, restart the kernel and run all cells.")
    return _result(spec, 1.0, "passes", "passes", f"test cell '{spec.id}' passed.")


from harness import compression_checks  # noqa: E402,F401  (registers weight_bits, activation_bits, sparsity, challenge_score)
