"""Prepare step: validate a submitted notebook, restore locked cells, inject parameters with papermill."""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import nbformat
import papermill

from harness.errors import BadInput

MAX_NOTEBOOK_BYTES = 50 * 1024**2


class InvalidNotebook(BadInput):
    """The file is not a notebook we can run; the message says what to fix."""


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """Read and validate a submission: a JSON nbformat-4 notebook with a cell tagged `parameters`."""
    path = Path(path)
    if not path.is_file():
        raise InvalidNotebook(f"{path} does not exist")
    if path.stat().st_size > MAX_NOTEBOOK_BYTES:
        raise InvalidNotebook(f"{path.name} is larger than {MAX_NOTEBOOK_BYTES // 1024**2} MB: clear the outputs")
    text = path.read_bytes().decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidNotebook(
            f"{path.name} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}): "
            "submit the .ipynb file saved by Jupyter, not an export or a copy-paste"
        ) from None
    if not isinstance(data, dict) or "cells" not in data or "nbformat" not in data:
        raise InvalidNotebook(f"{path.name} is JSON but not a Jupyter notebook (no 'cells'/'nbformat')")
    try:
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except Exception as exc:  # nbformat raises ValidationError, KeyError, ... for malformed documents
        raise InvalidNotebook(f"{path.name} is not a valid notebook: {str(exc).splitlines()[0]}") from None
    if not any("parameters" in c.metadata.get("tags", []) for c in nb.cells if c.cell_type == "code"):
        raise InvalidNotebook(
            f"{path.name} has no code cell tagged 'parameters': start again from the assignment notebook, "
            "which has one (View > Cell Toolbar > Tags in Jupyter shows it)"
        )
    return nb


def _grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def restore_locked_cells(nb: nbformat.NotebookNode, source: nbformat.NotebookNode,
                         hidden_tests: bool = True) -> list[str]:
    """Put back the source of every locked cell of the assignment (nbgrader `locked`): instructions, data loading,
    the call to harness.submit and the test cells, with their hidden tests (`hidden_tests=False`, the student's
    self-check: hidden test regions removed, as in the released notebook).

    Students cannot edit locked cells in Jupyter, but the file is theirs: those cells are taken from the assignment,
    never from the submission. Returns the grade_ids of locked cells missing from the submission.
    """
    locked = {
        _grade_id(cell): cell.source if hidden_tests else strip_hidden_tests(cell.source)
        for cell in source.cells
        if cell.metadata.get("nbgrader", {}).get("locked") and not cell.metadata["nbgrader"].get("solution")
    }
    seen = set()
    for cell in nb.cells:
        grade_id = _grade_id(cell)
        if grade_id in locked:
            cell.source = locked[grade_id]
            seen.add(grade_id)
    return sorted(set(locked) - seen)


HIDDEN_TESTS = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS.*?^[ \t]*### END HIDDEN TESTS[^\n]*\n?", re.M | re.S)


def strip_hidden_tests(source: str) -> str:
    """nbgrader's hidden test regions removed (what `generate_assignment` does to the student version)."""
    return HIDDEN_TESTS.sub("", source)


def inject_parameters(nb: nbformat.NotebookNode, parameters: dict, kernel_name: str) -> nbformat.NotebookNode:
    """papermill's own parameter injection (prepare_only: nothing runs here).

    Parameters the notebook's `parameters` cell does not define are still injected (papermill only logs them).
    """
    logging.getLogger("papermill").setLevel(logging.ERROR)
    return papermill.execute_notebook(
        nb, None, parameters=parameters, prepare_only=True, kernel_name=kernel_name, language="python",
        progress_bar=False, log_output=False,
    )
