"""`dlgrade release`: what the student version says about itself (the kernel to open it with, the grader's check
cells). Fast: nbgrader's generate_assignment, no kernel runs."""
from __future__ import annotations

import json

import pytest

from grading import course as nbcourse
from harness.spec import ASSIGNMENTS_DIR, load_spec

BUNDLED_NOTEBOOKS = sorted([*ASSIGNMENTS_DIR.glob("*/*.ipynb"), *ASSIGNMENTS_DIR.glob("*/submissions/*.ipynb")])


@pytest.mark.parametrize("path", BUNDLED_NOTEBOOKS, ids=lambda p: str(p.relative_to(ASSIGNMENTS_DIR)))
def test_bundled_notebooks_name_the_kernel_the_grader_runs(path):
    spec = load_spec(path.parent.parent if path.parent.name == "submissions" else path.parent)
    assert json.loads(path.read_text())["metadata"]["kernelspec"] == {
        "display_name": "Python (dlgrade)", "language": "python", "name": spec.kernel}
    assert spec.kernel == "dlgrade"


def test_the_released_notebook_names_the_assignments_kernel_whatever_the_source_says(tiny, tmp_path):
    spec, _ = tiny(assignment_keys='kernel = "course-gpu"')  # the tiny source notebook says python3
    student_version = nbcourse.release(spec, tmp_path / "course")
    assert json.loads(student_version.read_text())["metadata"]["kernelspec"] == {
        "display_name": "Python (course-gpu)", "language": "python", "name": "course-gpu"}


def _grader_cells(nb: dict) -> dict[str, str]:
    return {c["metadata"]["nbgrader"]["grade_id"]: "".join(c["source"]) for c in nb["cells"]
            if c["metadata"].get("nbgrader", {}).get("grade_id", "").startswith("dlgrade_checks_intro")
            or c["source"] and "".join(c["source"]).startswith("# Checked by the grader")}


def test_released_check_cells_say_which_checks_the_selfcheck_shows(tmp_path):
    spec = load_spec("shapes_params")  # exercise_params is its one hidden check
    cells = _grader_cells(json.loads(nbcourse.release(spec, tmp_path / "course").read_text()))
    assert [c.id for c in spec.harness_checks if c.hidden] == ["exercise_params"]
    assert cells["dlgrade_checks_intro"].endswith(
        "`dlgrade check --selfcheck` shows the result of each one except the hidden one (said so in the cell), which "
        "only your instructor's grading runs.")
    assert cells["exercise_params"] == (
        "# Checked by the grader outside this notebook (1 point): `exercise_params` (answers).\n"
        "# Hidden check: `dlgrade check --selfcheck` leaves it out. Only your instructor's grading runs it; your\n"
        "# feedback says whether it passed. Nothing to do in this cell.")
    shown = [c.id for c in spec.harness_checks if not c.hidden]
    assert all(cells[i].endswith("# Nothing to do in this cell; `dlgrade check --selfcheck` shows this check's "
                                 "result.") for i in shown)
    assert len(shown) == 9 and all("Hidden" not in cells[i] for i in shown)


def test_without_hidden_checks_the_intro_promises_every_result(tiny):
    spec, _ = tiny()
    intro = nbcourse.check_cells(spec)[0].source
    assert intro.endswith("Their points count in your grade. `dlgrade check --selfcheck` shows the result of each one.")


@pytest.mark.parametrize("assignment", sorted(p.parent.name for p in ASSIGNMENTS_DIR.glob("*/submissions")))
def test_example_submissions_hold_the_locked_cells_as_released(assignment):
    """The examples are released versions: each locked cell reads as the source's, hidden tests stripped (the
    grader restores them anyway; this keeps edits of the source's texts in step)."""
    from harness.prepare import strip_hidden_tests

    spec = load_spec(assignment)
    source = {c["metadata"]["nbgrader"]["grade_id"]: strip_hidden_tests("".join(c["source"])).rstrip()
              for c in json.loads(spec.notebook.read_text())["cells"]
              if c["metadata"].get("nbgrader", {}).get("locked") and not c["metadata"]["nbgrader"].get("solution")}
    for path in sorted(spec.submissions_dir.glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
            if grade_id in source:
                assert "".join(cell["source"]).rstrip() == source[grade_id], (path.name, grade_id)
