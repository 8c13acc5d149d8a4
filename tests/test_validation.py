"""Instructor mistakes in an assignment are refused up front: `dlgrade validate` lists every problem (file, table,
key, and the nearest valid name) and exits 2, and every command that runs notebooks stops with exit 2 before running
any. Each mistake is made on a copy of a bundled assignment."""
from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest

from grading.cli import main
from harness.errors import InternalError, SpecError
from harness.spec import ASSIGNMENTS_DIR, load_spec

BUNDLED = sorted(p.parent.name for p in ASSIGNMENTS_DIR.glob("*/assignment.toml"))


def copy_assignment(tmp_path: Path, base: str) -> Path:
    root = tmp_path / base
    shutil.copytree(ASSIGNMENTS_DIR / base, root, ignore=shutil.ignore_patterns("submissions"))
    return root


def edit_toml(root: Path, old: str, new: str) -> None:
    toml = root / "assignment.toml"
    text = toml.read_text()
    assert old in text, f"the bundled {root.name} changed: {old!r} not found"
    toml.write_text(text.replace(old, new, 1))


def edit_cells(root: Path, edit) -> None:
    path = root / f"{root.name}.ipynb"
    nb = json.loads(path.read_text())
    edit(nb["cells"])
    path.write_text(json.dumps(nb))


def cell(cells: list, grade_id: str) -> dict:
    return next(c for c in cells if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id)


def validate(root: Path, capsys) -> list[str]:
    """The problems `dlgrade validate` prints (it must exit 2)."""
    assert main(["validate", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dlgrade validate: {root}: "), err
    return [line.strip() for line in err.splitlines()[1:]]


def append_check(root: Path, lines: str) -> None:
    (root / "assignment.toml").write_text((root / "assignment.toml").read_text() + "\n[[checks]]\n" + lines + "\n")


# (base assignment, edit of the copy, the exact problem line)
MISTAKES = {
    "accuracy_check_without_threshold": (
        "lab1_pytorch_intro", lambda r: edit_toml(r, "threshold = 0.90\n", ""),
        "assignment.toml: [[checks]] 'accuracy' threshold: missing, accuracy checks need it: the held-out accuracy "
        "needed to pass, between 0 and 1 (e.g. 0.9)"),
    "limits_memroy_gb": (
        "shapes_params", lambda r: edit_toml(r, "memory_gb = 4", "memroy_gb = 4"),
        "assignment.toml: [limits] memroy_gb: unknown key (did you mean memory_gb?)"),
    "missing_input_shape": (
        "shapes_params", lambda r: edit_toml(r, "input_shape = [1, 28, 28]", ""),
        "assignment.toml: [assignment] input_shape: missing, required: the shape of one example of the submitted "
        "model, without batch dim, e.g. [3, 32, 32]"),
    "table_limit": (
        "shapes_params", lambda r: edit_toml(r, "[limits]", "[limit]"),
        "assignment.toml: [limit]: unknown table (did you mean [limits]?)"),
    "option_hiden": (
        "shapes_params", lambda r: edit_toml(r, "hidden = true", "hiden = true"),
        "assignment.toml: [[checks]] 'exercise_params' hiden: unknown option (did you mean hidden?)"),
    "option_rel_tole": (
        "shapes_params", lambda r: edit_toml(r, "rel_tol = 0.0", "rel_tole = 0.0"),
        "assignment.toml: [[checks]] 'lenet_macs' rel_tole: unknown option (did you mean rel_tol?)"),
    "submit_cell_deleted": (
        "shapes_params", lambda r: edit_cells(r, lambda cells: cells.remove(cell(cells, "submit"))),
        "shapes_params.ipynb: no cell calls harness.submit(model, example_input): every submission would fail with "
        "no_submission; end the notebook with a locked cell that calls it"),
    "submit_cell_not_locked": (
        "shapes_params", lambda r: edit_cells(r, lambda cells: cell(cells, "submit")["metadata"]["nbgrader"].update(
            locked=False)),
        "shapes_params.ipynb: cell 18 (grade_id 'submit'): calls harness.submit but is not a locked cell with a "
        "grade_id: the grader restores only locked cells, so a student who edits or deletes it is not graded; make "
        "it read-only in nbgrader's Create Assignment toolbar"),
    "unknown_check_kind": (
        "shapes_params", lambda r: edit_toml(r, 'kind = "output_shape"', 'kind = "output_shapes"'),
        "assignment.toml: [[checks]] 'lenet_output_shape' kind: unknown check kind 'output_shapes' (did you mean "
        "output_shape?)"),
    "duplicate_check_id": (
        "shapes_params", lambda r: edit_toml(r, 'id = "lenet_macs"', 'id = "lenet_params"'),
        "assignment.toml: [[checks]] 'lenet_params' id: another check has this id: check ids must be unique"),
    "threshold_as_a_string": (
        "lab1_pytorch_intro", lambda r: edit_toml(r, "threshold = 0.90", 'threshold = "0.9"'),
        "assignment.toml: [[checks]] 'accuracy' threshold: expected a number, got \"0.9\" (a string)"),
    "threshold_above_1": (
        "lab1_pytorch_intro", lambda r: edit_toml(r, "threshold = 0.90", "threshold = 90"),
        "assignment.toml: [[checks]] 'accuracy' threshold: must be at most 1, got 90"),
    "negative_points": (
        "shapes_params", lambda r: edit_toml(r, 'kind = "macs"\npoints = 1', 'kind = "macs"\npoints = -1'),
        "assignment.toml: [[checks]] 'lenet_macs' points: must be at least 0, got -1"),
    "points_not_a_number": (
        "shapes_params", lambda r: edit_toml(r, 'kind = "macs"\npoints = 1', 'kind = "macs"\npoints = "one"'),
        "assignment.toml: [[checks]] 'lenet_macs' points: expected a number, got \"one\" (a string)"),
    "model_not_declared": (
        "shapes_params", lambda r: append_check(r, 'id = "scratch_params"\nkind = "params"\npoints = 1\n'
                                                   'model = "scratch"'),
        "assignment.toml: [[checks]] 'scratch_params' model: 'scratch' is not one of [assignment] extra_models (none "
        "declared)"),
    "extra_model_not_submitted": (
        "shapes_params", lambda r: edit_toml(r, 'reference = "lenet_seed"', 'reference = "lenet_seed"\n'
                                                                            'extra_models = ["scratch"]'),
        "assignment.toml: [assignment] extra_models: the notebook's harness.submit call does not submit 'scratch': "
        "pass extra_models={'scratch': <model>, ...}"),
    "no_parameters_cell": (
        "shapes_params", lambda r: edit_cells(r, lambda cells: cell(cells, "parameters")["metadata"].update(tags=[])),
        "shapes_params.ipynb: no code cell tagged `parameters`: tag the cell that sets the grading parameters (seed, "
        "epochs, ...) and output_dir, data_dir, device; papermill injects their values after it"),
    "duplicate_grade_id": (
        "shapes_params", lambda r: edit_cells(r, lambda cells: cell(cells, "test_lenet")["metadata"]["nbgrader"].update(
            grade_id="test_conv_output_size")),
        "shapes_params.ipynb: cell 12: grade_id 'test_conv_output_size' is already the grade_id of cell 7: nbgrader "
        "needs unique grade_ids; rename one"),
    "test_cell_syntax_error": (
        "shapes_params", lambda r: edit_cells(r, lambda cells: cell(cells, "test_lenet").update(
            source="assert lenet_params['conv1'] == 80\nassert (\n")),
        "shapes_params.ipynb: cell 12 (grade_id 'test_lenet'): SyntaxError: '(' was never closed (line 2): fix the "
        "cell's code"),
    "unknown_reference_model": (
        "shapes_params", lambda r: edit_toml(r, 'reference = "lenet_seed"', 'reference = "lenet_sed"'),
        "assignment.toml: [assignment] reference: unknown reference model 'lenet_sed' (did you mean lenet_seed?)"),
    "expected_without_a_reference_model": (
        "lab1_pytorch_intro", lambda r: edit_toml(r, "expected = 136874\n", ""),
        "assignment.toml: [[checks]] 'params' expected: missing, and there is no reference model to measure it on: "
        "set expected = ..., or reference = \"<a reference/models name>\" here or in [assignment]"),
    "reference_notebook_missing": (
        "lab1_pytorch_intro", lambda r: (r / "reference_solution.ipynb").unlink(),
        "assignment.toml: [timing] reference_notebook: reference_solution.ipynb not found in {root}"),
    "notebook_missing": (
        "shapes_params", lambda r: (r / "shapes_params.ipynb").unlink(),
        "assignment.toml: [assignment] notebook: shapes_params.ipynb not found in {root}"),
    "time_ratio_without_timing": (
        "lab1_pytorch_intro", lambda r: edit_toml(r, 'reference_notebook = "reference_solution.ipynb"', ""),
        "assignment.toml: [[checks]] 'train_time': a time_ratio check needs [timing] reference_notebook = ... (the "
        "reference solution it is compared with)"),
    "leaderboard_rank_invalid": (
        "shapes_params", lambda r: edit_toml(r, "[limits]", '[leaderboard]\nrank = "best"\n\n[limits]'),
        "assignment.toml: [leaderboard] rank: expected \"pareto\" or \"challenge\", got \"best\" (a string)"),
    "selfcheck_parameter_not_in_the_notebook": (
        "lab1_pytorch_intro", lambda r: edit_toml(r, "[selfcheck]                      # fast parameters for "
                                                     "`dlgrade check --selfcheck` (calibrated separately)\nepochs",
                                                  "[selfcheck]\nepocs"),
        "assignment.toml: [selfcheck] epocs: the notebook's parameters cell does not set epocs (did you mean "
        "epochs?)"),
    "parameter_set_by_the_harness": (
        "shapes_params", lambda r: edit_toml(r, "[parameters]                     # grading parameters (output_dir, "
                                                "data_dir, device are set by the harness)\nseed = 0",
                                             '[parameters]\nseed = 0\ndevice = "cuda"'),
        "assignment.toml: [parameters] device: set by the harness for every run; remove it"),
    "unknown_dataset": (
        "lab1_pytorch_intro", lambda r: edit_toml(r, 'dataset = "digits32"', 'dataset = "digits"'),
        "assignment.toml: [parameters] dataset: unknown dataset 'digits' (did you mean digits32?)"),
    "negative_limit": (
        "shapes_params", lambda r: edit_toml(r, "timeout_s = 300", "timeout_s = -300"),
        "assignment.toml: [limits] timeout_s: must be above 0, got -300"),
    "answer_not_passed_to_submit": (
        "shapes_params", lambda r: edit_toml(r, 'answer = "conv_output_sizes"', 'answer = "conv_output_size"'),
        "assignment.toml: [[checks]] 'conv_output_sizes' answer: the notebook's harness.submit call passes no "
        "conv_output_size=...: add it to the locked submit cell (did you mean conv_output_sizes?)"),
    "autograd_case_that_does_not_parse": (
        "lab1_pytorch_intro", lambda r: edit_toml(r, '["x**3 + 2*x", 2.0]', '["x**3 + 2*", 2.0]'),
        "assignment.toml: [[checks]] 'autograd_answers' cases: case 1 expression 'x**3 + 2*': SyntaxError: invalid "
        "syntax"),
    "accuracy_without_a_dataset": (
        "shapes_params", lambda r: append_check(r, 'id = "accuracy"\nkind = "accuracy"\npoints = 1\nthreshold = 0.9'),
        "assignment.toml: [[checks]] 'accuracy': accuracy checks need a dataset: set [parameters] dataset = "
        "\"digits32\" (or another harness.data dataset), or no accuracy is ever measured"),
    "notebook_test_declared_in_the_toml": (
        "shapes_params", lambda r: append_check(r, 'id = "extra_test"\nkind = "notebook_test"\npoints = 1'),
        "assignment.toml: [[checks]] 'extra_test' kind: notebook_test checks come from the notebook's nbgrader test "
        "cells; they are not declared in assignment.toml"),
    "check_id_equal_to_a_grade_id": (
        "shapes_params", lambda r: edit_toml(r, 'id = "lenet_macs"', 'id = "lenet_model"'),
        "assignment.toml: [[checks]] 'lenet_model' id: also the grade_id of a cell of the notebook: nbgrader needs "
        "unique ids (each check becomes a grade cell); rename the check"),
    "frozen_backbone_without_backbone": (
        "shapes_params", lambda r: append_check(r, 'id = "frozen"\nkind = "frozen_backbone"\npoints = 1'),
        "assignment.toml: [[checks]] 'frozen': a frozen_backbone check needs [backbone] name = ... (the pretrained "
        "backbone)"),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_an_instructor_mistake_is_refused_with_file_table_and_key(mistake, tmp_path, capsys):
    base, make, expected = MISTAKES[mistake]
    root = copy_assignment(tmp_path, base)
    make(root)
    assert expected.replace("{root}", str(root)) in validate(root, capsys)


def test_every_problem_is_reported_at_once(tmp_path, capsys):
    root = copy_assignment(tmp_path, "shapes_params")
    edit_toml(root, "memory_gb = 4", "memroy_gb = 4")
    edit_toml(root, "hidden = true", "hiden = true")
    edit_toml(root, "[limits]", "[limit]")  # the misspelt key above is now in an unknown table: reported once
    edit_cells(root, lambda cells: cells.remove(cell(cells, "submit")))
    problems = validate(root, capsys)
    assert [p.split(":")[1].strip() for p in problems] == [
        "[limit]", "[[checks]] 'exercise_params' hiden", "no cell calls harness.submit(model, example_input)"]


def test_a_toml_syntax_error_names_the_file_and_line(tmp_path, capsys):
    root = copy_assignment(tmp_path, "shapes_params")
    edit_toml(root, 'id = "lenet_macs"', 'id = "lenet_macs')
    assert validate(root, capsys)[0].startswith("assignment.toml: not valid TOML: ")


def test_ipython_magics_in_a_test_cell_are_allowed(tmp_path, capsys):
    root = copy_assignment(tmp_path, "shapes_params")
    edit_cells(root, lambda cells: cell(cells, "test_lenet").update(source="%time x = 1\n!echo hi\nfiles = !ls\n"))
    assert main(["validate", str(root)]) == 0


@pytest.mark.parametrize("assignment", BUNDLED)
def test_every_bundled_assignment_validates_clean(assignment, capsys):
    assert main(["validate", assignment]) == 0
    assert capsys.readouterr().out.startswith(f"{assignment}: OK (")


@pytest.mark.parametrize("command", ["check", "grade", "release", "calibrate", "demo"])
def test_commands_refuse_a_broken_assignment_before_running_any_notebook(command, tmp_path, capsys, monkeypatch):
    import grading.batch
    import grading.course
    import grading.demo
    import harness.grade

    def must_not_run(*args, **kwargs):
        raise AssertionError("a notebook was run for a broken assignment")

    for module, name in ((harness.grade, "grade_one"), (grading.batch, "grade_batch"), (grading.demo, "grade_batch"),
                         (grading.course, "release")):
        monkeypatch.setattr(module, name, must_not_run)
    root = copy_assignment(tmp_path / "assignments", "shapes_params")
    shutil.copytree(ASSIGNMENTS_DIR / "shapes_params" / "submissions", root / "submissions")
    edit_toml(root, "memory_gb = 4", "memroy_gb = 4")
    monkeypatch.setattr(grading.demo, "ASSIGNMENTS_DIR", root.parent)
    argv = {"check": ["check", str(root / "submissions" / "correct.ipynb"), "--assignment", str(root)],
            "grade": ["grade", str(root), str(root / "submissions"), "--out", str(tmp_path / "out")],
            "release": ["release", str(root), "--out", str(tmp_path / "course")],
            "calibrate": ["calibrate", str(root)],
            "demo": ["demo", "--out", str(tmp_path / "demo")]}[command]
    assert main(argv) == 2
    assert "assignment.toml: [limits] memroy_gb: unknown key (did you mean memory_gb?)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "course").exists()


def test_an_unexpected_exception_is_an_internal_error_not_bad_input(capsys, monkeypatch):
    import grading.targets

    def bug(*args):
        raise ValueError("a bug")

    monkeypatch.setattr(grading.targets, "profile_target", bug)
    assert main(["profile", "reference:resnet18"]) == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and "ValueError: a bug" in err
    assert "dlgrade profile: internal error (a bug in dlgrade, not in the notebook): a bug" in err


def test_errors_of_the_family_cross_process_boundaries_intact():
    spec_error = pickle.loads(pickle.dumps(SpecError(["assignment.toml: [limit]: unknown table"], "x")))
    assert (spec_error.problems, spec_error.where, str(spec_error)) == (
        ["assignment.toml: [limit]: unknown table"], "x", str(SpecError(["assignment.toml: [limit]: unknown table"],
                                                                        "x")))
    internal = pickle.loads(pickle.dumps(InternalError("grading ada failed", "Traceback ...")))
    assert (internal.message, internal.details) == ("grading ada failed", "Traceback ...")


def test_check_options_get_the_defaults_their_kind_declares():
    spec = load_spec("shapes_params")
    from harness.checks import option

    params = next(c for c in spec.checks if c.id == "lenet_params")
    assert (option(params, "expected"), option(params, "rel_tol"), option(params, "hidden")) == ("reference", 0.0,
                                                                                                   False)
