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
