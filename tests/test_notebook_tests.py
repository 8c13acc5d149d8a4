"""nbgrader test cells of the assignment are checks: restored from the source (hidden tests included when grading),
scored like nbgrader, except that a warning on stderr does not cost the points."""
from __future__ import annotations

import copy

import nbformat
import pytest

from harness.grade import grade_one
from harness.prepare import strip_hidden_tests
from harness.spec import load_spec
from tests.conftest import MODEL, nbgrader_test_cell, notebook

pytestmark = pytest.mark.slow

SOFTMAX_WARNING = "import torch.nn.functional as F\nF.softmax(torch.ones(2, 3))  # torch warns: implicit dim\n"
HIDDEN = ('assert answer > 0\n### BEGIN HIDDEN TESTS\nassert answer == 42, "the hidden test wants 42"\n'
          '### END HIDDEN TESTS')


@pytest.fixture
def with_tests(tiny):
    """make(tests) -> (spec, student(body, replace)): the source notebook gets the test cells after MODEL;
    a student's notebook is the released version (hidden tests stripped) with `body` cells before the tests."""

    def make(tests: list[tuple[str, str, float]]):
        spec, _ = tiny()
        source = notebook([MODEL])
        source.cells[2:2] = [nbgrader_test_cell(src, grade_id, points) for grade_id, src, points in tests]
        nbformat.write(source, spec.notebook)
        counter = iter(range(100))

        def student(body: list[str] = (), replace: dict[str, str] | None = None, after: list[str] = ()):
            nb = copy.deepcopy(source)
            for cell in nb.cells:
                grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
                cell.source = (replace or {}).get(grade_id, strip_hidden_tests(cell.source))
            nb.cells[2:2] = [nbformat.v4.new_code_cell(src) for src in body]
            nb.cells[-1:-1] = [nbformat.v4.new_code_cell(src) for src in after]
            path = spec.submissions_dir / f"student{next(counter)}.ipynb"
            nbformat.write(nb, path)
            return path

        return load_spec(spec.root), student

    return make


def check(result, check_id):
    return next(c for c in result.checks if c.id == check_id)


def test_test_cells_are_checks_in_notebook_order_before_the_harness_checks(with_tests):
    spec, _ = with_tests([("test_a", "assert True", 2), ("test_b", "assert True", 1)])
    assert [(c.id, c.kind, c.points) for c in spec.checks] == [
        ("test_a", "notebook_test", 2.0), ("test_b", "notebook_test", 1.0), ("params", "params", 2.0),
        ("output", "output_shape", 1.0)]


def test_test_cells_score_like_nbgrader_except_stderr_and_printed_numbers(with_tests):
    spec, student = with_tests([
        ("test_shape", SOFTMAX_WARNING + "assert model(torch.zeros(1, 3, 4, 4)).shape == (1, 10)", 2),
        ("test_sum", 'assert 1 + 1 == 3, "one plus one is not three"', 1),
        ("test_value", "0.5", 2),  # nbgrader: 0.5 points; the grader takes no number from the kernel's output
    ])
    result = grade_one(student(), spec)
    assert (result.status, result.score, result.max_score) == ("graded", 7.0, 8.0)
    warned, failed, value = (check(result, i) for i in ("test_shape", "test_sum", "test_value"))
    assert (warned.passed, warned.points, warned.message) == (True, 2.0, "test cell 'test_shape' passed.")
    executed = next(c for c in result.executed.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test_shape")
    stderr = [o.text for o in executed.outputs if o.output_type == "stream" and o.name == "stderr"]
    assert stderr and "softmax" in stderr[0]  # nbgrader would have given this cell 0
    assert (failed.passed, failed.points) == (False, 0.0)
    assert failed.message == ("test cell 'test_sum' failed - AssertionError: one plus one is not three. Fix the "
                              "cells above it, restart the kernel and run all cells.")
    assert (value.passed, value.points, value.max_points) == (True, 2.0, 2.0)


def test_a_tampered_test_cell_is_restored_with_its_hidden_tests(with_tests):
    spec, student = with_tests([("test_answer", HIDDEN, 1)])
    path = student(body=["answer = 7"], replace={"test_answer": "pass  # removed the test"})
    graded = check(grade_one(path, spec), "test_answer")
    assert (graded.passed, graded.message) == (False, "test cell 'test_answer' failed - AssertionError: the hidden "
                                               "test wants 42. Fix the cells above it, restart the kernel and run "
                                               "all cells.")
    selfchecked = check(grade_one(path, spec, selfcheck=True), "test_answer")  # the student's view: no hidden tests
    assert (selfchecked.passed, selfchecked.points) == (True, 1.0)
    assert check(grade_one(student(body=["answer = 42"]), spec), "test_answer").passed


def test_test_cells_that_ran_keep_their_points_when_no_model_is_submitted(with_tests):
    spec, student = with_tests([("test_ok", "assert True", 1)])
    result = grade_one(student(after=["del model"]), spec)
    assert (result.status, result.error["kind"]) == ("failed", "cell_error")
    assert [(c.id, c.points) for c in result.checks] == [("test_ok", 1.0), ("params", 0.0), ("output", 0.0)]
    assert check(result, "params").message.startswith("not graded: ")
