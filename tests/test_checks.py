"""Check kinds on synthetic evidence: exact points, expected/got and messages."""
from __future__ import annotations

import pytest

from harness.checks import Evidence, conv_output_size, run_check
from harness.spec import CheckSpec

REFERENCE = {
    "params": 62430, "macs": 435368, "output_shape": [10],
    "activation_shapes": {"conv1": [8, 28, 28], "pool1": [8, 14, 14], "fc3": [10]},
    "params_by_module": {"conv1": 80, "fc3": 850},
}


def evidence(profile=None, answers=None, metrics=None) -> Evidence:
    student = {**REFERENCE, "module_types": {"conv1": "Conv2d", "pool1": "MaxPool2d", "fc3": "Linear"},
               **(profile or {})}
    return Evidence(student, answers or {}, lambda name: REFERENCE, "lenet_seed", metrics or {})


def check(kind: str, points: float = 2, **options) -> CheckSpec:
    return CheckSpec(id=f"{kind}_check", kind=kind, points=points, options=options)


def test_params_match_reference_exactly():
    result = run_check(check("params"), evidence())
    assert (result.passed, result.points, result.expected, result.got) == (True, 2, 62430, 62430)


def test_params_mismatch_says_by_how_much_and_adds_the_hint():
    result = run_check(check("params", hint="count the biases"), evidence({"params": 62400}))
    assert (result.passed, result.points) == (False, 0)
    assert result.message.startswith("expected 62,430 parameters, got 62,400 (-30)")
    assert result.message.endswith("Hint: count the biases")


def test_macs_relative_tolerance_is_inclusive():
    assert run_check(check("macs", rel_tol=0.01, expected=1000), evidence({"macs": 1010})).passed
    assert not run_check(check("macs", rel_tol=0.01, expected=1000), evidence({"macs": 1011})).passed


def test_activation_shapes_give_partial_credit_and_name_the_module():
    profile = {"activation_shapes": {"conv1": [8, 26, 26], "pool1": [8, 14, 14], "fc3": [10]}}
    result = run_check(check("activation_shapes", points=3), evidence(profile))
    assert (result.passed, result.points) == (False, 2.0)
    assert result.message.startswith("conv1: expected [8, 28, 28], got [8, 26, 26] (check kernel_size, stride and "
                                     "padding")


def test_only_the_first_wrong_layer_gets_a_hint():
    profile = {"activation_shapes": {"conv1": [8, 26, 26], "pool1": [8, 13, 13], "fc3": [10]}}
    result = run_check(check("activation_shapes", points=3), evidence(profile))
    assert result.message.endswith("; pool1: expected [8, 14, 14], got [8, 13, 13].")


def test_activation_shapes_missing_module_says_to_define_it():
    profile = {"activation_shapes": {"conv1": [8, 28, 28], "fc3": [10]}}
    result = run_check(check("activation_shapes", points=3, modules=["pool1"]), evidence(profile))
    assert result.points == 0
    assert "no module named 'pool1'" in result.message


def test_output_shape_message_says_what_the_last_layer_should_do():
    result = run_check(check("output_shape", expected=[10]), evidence({"output_shape": [100]}))
    assert (result.passed, result.expected, result.got) == (False, [10], [100])
    assert "expected output shape [10], got [100]" in result.message


def test_answers_compared_with_measured_reference_tables():
    answers = {"shapes": {"conv1": [8, 28, 28], "pool1": [8, 13, 13]}}
    result = run_check(check("answers", answer="shapes", measure="activation_shapes", modules=["conv1", "pool1"]),
                       evidence(answers=answers))
    assert (result.passed, result.points) == (False, 1.0)
    assert "pool1: expected [8, 14, 14], got [8, 13, 13]" in result.message


def test_answers_activation_sizes_are_products_of_shapes():
    answers = {"sizes": {"conv1": 6272, "fc3": 10}}
    result = run_check(check("answers", answer="sizes", measure="activation_sizes", modules=["conv1", "fc3"]),
                       evidence(answers=answers))
    assert (result.passed, result.expected) == (True, {"conv1": 6272, "fc3": 10})


def test_missing_answer_says_which_variable_to_set():
    result = run_check(check("answers", answer="lenet_params", measure="params_by_module"), evidence())
    assert (result.passed, result.got) == (False, None)
    assert "set the variable lenet_params" in result.message


@pytest.mark.parametrize("case, size", [((28, 5, 0, 1), 24), ((32, 3, 1, 1), 32), ((32, 5, 2, 2), 16),
                                        ((7, 3, 0, 2), 3)])
def test_conv_output_size_is_measured_on_a_real_layer(case, size):
    assert conv_output_size(*case) == size


def test_conv_output_size_answers_per_case():
    spec = check("answers", answer="sizes", measure="conv_output_size", cases=[[28, 5, 0, 1], [7, 3, 0, 2]])
    result = run_check(spec, evidence(answers={"sizes": [24, 2.5]}))
    assert (result.points, result.expected) == (1.0, [24, 3])
    assert "case 2: expected 3, got 2.5" in result.message


def test_autograd_answers_are_compared_with_torch_autograd():
    spec = check("answers", answer="grads", measure="autograd", rel_tol=1e-5,
                 cases=[["x ** 3 + 2 * x", 2.0], ["torch.sin(x) * x", 0.0]])
    result = run_check(spec, evidence(answers={"grads": [14.00001, 0.3]}))
    assert result.expected == [14.0, 0.0]
    assert result.points == 1.0
    assert "case 2: expected 0.0, got 0.3" in result.message


def transfer_evidence(accuracy=0.8, scratch=None) -> Evidence:
    models = {} if scratch is None else {"scratch": {"params": 62430, "accuracy": 0.5, **scratch}}
    return Evidence({**REFERENCE, "accuracy": accuracy}, {}, lambda name: REFERENCE, None,
                    {"accuracy": accuracy, "params": 62430}, models=models)


def test_beats_compares_two_accuracies_measured_by_the_grader():
    won = run_check(check("beats", baseline="scratch"), transfer_evidence(0.8, {}))
    assert (won.passed, won.points, won.expected, won.got) == (True, 2, 0.5, 0.8)
    assert won.message == "80.0% on the held-out split against 50.0% for 'scratch' (+30.0 points)."
    lost = run_check(check("beats", baseline="scratch", margin=0.05), transfer_evidence(0.54, {}))
    assert (lost.passed, lost.points, lost.expected) == (False, 0, 0.55)
    assert "not more accurate by more than 5.0%" in lost.message
    tie = run_check(check("beats", baseline="scratch"), transfer_evidence(0.5, {}))
    assert not tie.passed  # beating means strictly more accurate


def test_beats_needs_the_same_architecture_and_the_baseline_model():
    other = run_check(check("beats", baseline="scratch"), transfer_evidence(0.9, {"params": 645}))
    assert (other.passed, other.points) == (False, 0)
    assert "'scratch' has 645 parameters and this model 62,430: the comparison needs the same architecture" in \
        other.message
    missing = run_check(check("beats", baseline="scratch"), transfer_evidence(0.9))
    assert (missing.passed, missing.got) == (False, 0.9)
    assert "did not submit the model 'scratch'" in missing.message


def test_the_model_option_checks_an_extra_model_instead_of_the_main_one():
    evidence = transfer_evidence(0.5, {"accuracy": 0.97, "params": 645})
    extra = run_check(check("accuracy", threshold=0.9, model="scratch"), evidence)
    main = run_check(check("accuracy", threshold=0.9), evidence)
    assert (extra.passed, extra.got, main.passed, main.got) == (True, 0.97, False, 0.5)
    assert run_check(check("params", expected=645, model="scratch"), evidence).passed
    missing = run_check(check("accuracy", threshold=0.9, model="finetuned"), evidence)
    assert (missing.passed, missing.points, missing.expected) == (False, 0, "model 'finetuned'")
    assert "extra_models={'finetuned': ...}" in missing.message
