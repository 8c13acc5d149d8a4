"""Fixtures: tiny assignments written to tmp_path, graded through the real path (papermill kernel, measuring
process)."""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import nbformat
import pytest

from harness.spec import load_spec

PARAMETERS = 'output_dir = "dlgrade_out"\ndevice = "cpu"\nseed = 0\ndata_dir = "data"'
MODEL = textwrap.dedent("""\
    import torch
    from torch import nn
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 10))""")
SUBMIT = "import harness\nharness.submit(model, torch.randn(2, 3, 4, 4), answer=globals().get('answer'))"
TOML = """\
[assignment]
id = "tiny"
notebook = "tiny.ipynb"
input_shape = [3, 4, 4]

[limits]
timeout_s = {timeout_s}
cell_timeout_s = {cell_timeout_s}
memory_gb = {memory_gb}
measure_timeout_s = 60

[[checks]]
id = "params"
kind = "params"
points = 2
expected = 490

[[checks]]
id = "output"
kind = "output_shape"
points = 1
expected = [10]
"""


def notebook(cells: list[str], submit: str | None = SUBMIT, tags: dict[int, list[str]] | None = None):
    """A student notebook: parameters cell, the given code cells, then the locked submit cell (None: deleted)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]})
    body = [nbformat.v4.new_code_cell(src) for src in cells]
    for index, cell_tags in (tags or {}).items():
        body[index].metadata["tags"] = cell_tags
    nb.cells = [params, *body]
    if submit is not None:
        nb.cells.append(nbformat.v4.new_code_cell(submit, metadata={"nbgrader": {
            "grade": False, "grade_id": "submit", "locked": True, "schema_version": 3, "solution": False,
            "task": False}}))
    return nb


def nbgrader_test_cell(source: str, grade_id: str, points: float = 1):
    """An nbgrader autograded test cell (locked, graded, not a solution)."""
    return nbformat.v4.new_code_cell(source, metadata={"nbgrader": {
        "grade": True, "grade_id": grade_id, "locked": True, "points": points, "schema_version": 3,
        "solution": False, "task": False}})


@pytest.fixture(autouse=True, scope="session")
def private_calibration_cache(tmp_path_factory):
    """Tests never read or write the user's ~/.cache/dlgrade: reference timings are calibrated once per session."""

    os.environ["DLGRADE_CACHE"] = str(tmp_path_factory.mktemp("dlgrade-cache"))


@pytest.fixture
def tiny(tmp_path: Path):
    """make(limits...) -> (spec, write(cells, ...) -> path of a submission notebook)."""

    def make(timeout_s=120, cell_timeout_s=60, memory_gb=2, extra_toml="", reference_cells=None, submit=SUBMIT,
             input_shape=(3, 4, 4), assignment_keys=""):
        """extra_toml is appended to assignment.toml, assignment_keys to its [assignment] table; reference_cells =
        (cells, tags) become reference.ipynb; submit is the assignment's locked submit cell (restored into every
        submission)."""
        root = tmp_path / "tiny"
        (root / "submissions").mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook([MODEL], submit=submit), root / "tiny.ipynb")
        if reference_cells is not None:
            nbformat.write(notebook(reference_cells[0], tags=reference_cells[1]), root / "reference.ipynb")
        toml = TOML.format(timeout_s=timeout_s, cell_timeout_s=cell_timeout_s, memory_gb=memory_gb)
        toml = toml.replace("input_shape = [3, 4, 4]", f"input_shape = {list(input_shape)}\n{assignment_keys}")
        (root / "assignment.toml").write_text(toml + extra_toml)
        counter = iter(range(1000))

        def write(cells: list[str], **kwargs) -> Path:
            path = root / "submissions" / f"s{next(counter)}.ipynb"
            nbformat.write(notebook(cells, **kwargs), path)
            return path

        return load_spec(root), write

    return make


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium (Debian's, through chromedriver) for the session; see tests/browser.py."""
    from tests.browser import open_browser

    with open_browser() as driver:
        yield driver


@pytest.fixture(scope="session")
def ordinary_account():
    """An unprivileged account that can run this checkout (tests/accounts.py): for tests that grade as one."""
    from tests.accounts import ensure_account, open_the_way, restore_modes

    if os.geteuid() != 0:
        pytest.skip("the suite already runs as an ordinary user, so every test grades as one")
    account = ensure_account()
    changed = open_the_way()
    yield account
    restore_modes(changed)
