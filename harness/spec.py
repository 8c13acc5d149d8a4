"""Assignment specs: `assignments/<id>/assignment.toml`, read into plain dataclasses.

An assignment is data: a notebook + this file. Adding one needs no Python change (see docs/architecture.md for the
format and harness/checks.py for the check kinds).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import tomllib

from harness.errors import SpecError
from harness.limits import Limits
from harness.schema import HARNESS_PARAMETERS, TABLES, CheckSpec, LeaderboardSpec  # noqa: F401  (HARNESS_PARAMETERS: read from here by harness/grade.py)
from harness.validate import assignment_problems

ASSIGNMENTS_DIR = Path(__file__).resolve().parent.parent / "assignments"


@dataclass(frozen=True)
class AssignmentSpec:
    id: str
    title: str
    root: Path
    notebook: Path  # the nbgrader source notebook (solutions + tests)
    input_shape: tuple[int, ...]
    reference: str | None  # reference model measured for expected = "reference"
    kernel: str
    parameters: dict  # grading parameters
    selfcheck: dict  # fast parameters for `dlgrade check --selfcheck`
    limits: Limits
    checks: tuple[CheckSpec, ...]
    reference_notebook: Path | None = None  # [timing]: the reference solution timed by `dlgrade calibrate`
    calibration_runs: int = 3  # [timing] runs: the reference's cached times are the median of this many runs
    leaderboard: LeaderboardSpec = LeaderboardSpec()
    backbone: str | None = None  # [backbone] name: a pretrained backbone given to the notebook (data_dir/backbone.pt)
    extra_models: tuple[str, ...] = ()  # [assignment] extra_models: other models the notebook submits, measured too
    device: str = "auto"  # [runner] device: auto | cuda | cpu (harness/preflight.py)
    hash: str = ""  # assignment_hash(): recorded in each result as run.assignment_hash

    @property
    def submissions_dir(self) -> Path:
        return self.root / "submissions"

    @property
    def harness_checks(self) -> tuple[CheckSpec, ...]:
        """The checks of assignment.toml (not the notebook's nbgrader test cells)."""
        return tuple(c for c in self.checks if c.kind != "notebook_test")

    def visible_checks(self, selfcheck: bool) -> tuple[CheckSpec, ...]:
        return tuple(c for c in self.checks if not (selfcheck and c.hidden))


def resolve(id_or_dir: str | Path) -> Path:
    """The assignment's directory, absolute: the runner masks it from the kernel after changing directory."""
    path = Path(id_or_dir)
    if (path / "assignment.toml").is_file():
        return path.resolve()
    if (ASSIGNMENTS_DIR / str(id_or_dir) / "assignment.toml").is_file():
        return ASSIGNMENTS_DIR / str(id_or_dir)
    known = ", ".join(sorted(p.parent.name for p in ASSIGNMENTS_DIR.glob("*/assignment.toml")))
    raise SpecError(f"no assignment '{id_or_dir}': give a directory with assignment.toml or one of: {known}")


def load_spec(id_or_dir: str | Path) -> AssignmentSpec:
    """Read and validate the assignment: every problem of assignment.toml and of its notebooks is collected and
    raised at once as a SpecError (harness/validate.py), before anything runs."""
    root = resolve(id_or_dir)
    try:
        data = tomllib.loads((root / "assignment.toml").read_text())
    except tomllib.TOMLDecodeError as exc:
        raise SpecError([f"assignment.toml: not valid TOML: {exc}"], str(root)) from None
    problems = assignment_problems(root, data)
    if problems:
        raise SpecError(problems, str(root))
    return build_spec(root, data)


def _value(data: dict, table: str, name: str):
    """data[table][name], else the default its declaration states."""
    return data.get(table, {}).get(name, TABLES[table][name].default)


def build_spec(root: Path, data: dict) -> AssignmentSpec:
    """The spec of a validated assignment.toml."""
    meta = data.get("assignment", {})
    assignment_id = meta.get("id", root.name)
    notebook = root / meta.get("notebook", f"{assignment_id}.ipynb")
    timing = data.get("timing", {})
    reference_notebook = root / timing["reference_notebook"] if "reference_notebook" in timing else None
    checks = [CheckSpec(raw["id"], raw["kind"], float(raw["points"]), raw.get("hidden", False),
                        {k: v for k, v in raw.items() if k not in ("id", "kind", "points", "hidden")})
              for raw in data.get("checks", [])]
    parameters = dict(data.get("parameters", {}))
    gate = _value(data, "leaderboard", "accuracy_gate")
    if isinstance(gate, dict):
        gate = gate.get(parameters.get("dataset"), LeaderboardSpec.accuracy_gate)
    return AssignmentSpec(
        id=assignment_id,
        title=meta.get("title", assignment_id),
        root=root,
        notebook=notebook,
        input_shape=tuple(meta["input_shape"]),
        reference=meta.get("reference"),
        kernel=_value(data, "assignment", "kernel"),
        parameters=parameters,
        selfcheck=dict(data.get("selfcheck", {})),
        limits=Limits(**data.get("limits", {})),
        checks=tuple(notebook_test_checks(notebook) + checks),
        reference_notebook=reference_notebook,
        calibration_runs=_value(data, "timing", "runs"),
        leaderboard=LeaderboardSpec(_value(data, "leaderboard", "rank"), float(gate)),
        backbone=data.get("backbone", {}).get("name"),
        extra_models=tuple(meta.get("extra_models", ())),
        device=_value(data, "runner", "device"),
        hash=assignment_hash([root / "assignment.toml", notebook, reference_notebook]),
    )


def assignment_hash(files: list[Path | None]) -> str:
    """What graded a result: sha256 of assignment.toml, the source notebook, the reference solution (its times make
    time_ratio) and dlgrade's version. Recorded as `run.assignment_hash`; a batch refuses to mix results of two."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        harness_version = version("dlgrade")
    except PackageNotFoundError:  # run from a source tree that was never installed
        harness_version = "unknown"
    digest = hashlib.sha256(f"dlgrade {harness_version}".encode())
    for path in sorted({f for f in files if f is not None}):
        digest.update(b"\0" + path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _nbgrader_cells(notebook: Path) -> list[tuple[str, dict]]:
    import json

    cells = json.loads(notebook.read_text()).get("cells", [])
    return [(c.get("cell_type"), c["metadata"]["nbgrader"]) for c in cells if "nbgrader" in c.get("metadata", {})]


def is_test_cell(cell_type: str, meta: dict) -> bool:
    """nbgrader's autograded test cell: a graded code cell that is not a solution."""
    return cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


def notebook_test_checks(notebook: Path) -> list[CheckSpec]:
    """nbgrader's autograded test cells of the source notebook (code, grade, not solution), one check each, in
    notebook order: kind `notebook_test`, id = the cell's grade_id, points = the cell's points."""
    return [CheckSpec(meta["grade_id"], "notebook_test", float(meta.get("points", 0)))
            for cell_type, meta in _nbgrader_cells(notebook) if is_test_cell(cell_type, meta)]
