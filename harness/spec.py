"""Assignment specs: `assignments/<id>/assignment.toml`, read into plain dataclasses.

An assignment is data: a notebook + this file. Adding one needs no Python change (see docs/architecture.md for the
format and harness/checks.py for the check kinds).
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from harness.execute import Limits

ASSIGNMENTS_DIR = Path(__file__).resolve().parent.parent / "assignments"
HARNESS_PARAMETERS = ("output_dir", "data_dir", "device")  # set by the harness for every run, never overridable
EXTRA_MODEL_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")  # harness.submit(..., extra_models={name: module})
MODEL_OPTIONS = ("model", "baseline")  # check options that name an extra model


class SpecError(Exception):
    """assignment.toml is missing or wrong; the message names the file and the field."""


@dataclass(frozen=True)
class CheckSpec:
    id: str
    kind: str
    points: float
    hidden: bool = False
    options: dict = field(default_factory=dict)  # every other key of the [[checks]] table


@dataclass(frozen=True)
class LeaderboardSpec:
    """[leaderboard]: how `dlgrade leaderboard` ranks (docs/architecture.md, Leaderboards)."""

    rank: str = "pareto"  # "pareto": non-dominated first | "challenge": the course's score, lowest first
    accuracy_gate: float = 0.90  # the challenge score counts only at or above this held-out accuracy


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
    path = Path(id_or_dir)
    if (path / "assignment.toml").is_file():
        return path
    if (ASSIGNMENTS_DIR / str(id_or_dir) / "assignment.toml").is_file():
        return ASSIGNMENTS_DIR / str(id_or_dir)
    known = ", ".join(sorted(p.parent.name for p in ASSIGNMENTS_DIR.glob("*/assignment.toml")))
    raise SpecError(f"no assignment '{id_or_dir}': give a directory with assignment.toml or one of: {known}")


def load_spec(id_or_dir: str | Path) -> AssignmentSpec:
    from harness.checks import CHECK_KINDS

    root = resolve(id_or_dir)
    toml_path = root / "assignment.toml"
    try:
        data = tomllib.loads(toml_path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{toml_path}: {exc}") from None
    meta = data.get("assignment", {})
    assignment_id = meta.get("id", root.name)
    checks = []
    for raw in data.get("checks", []):
        raw = dict(raw)
        try:
            check = CheckSpec(raw.pop("id"), raw.pop("kind"), float(raw.pop("points")), bool(raw.pop("hidden", False)),
                              raw)
        except KeyError as exc:
            raise SpecError(f"{toml_path}: a [[checks]] entry has no {exc}") from None
        if check.kind not in CHECK_KINDS:
            raise SpecError(f"{toml_path}: check '{check.id}' has unknown kind '{check.kind}' "
                            f"(known: {', '.join(sorted(CHECK_KINDS))})")
        checks.append(check)
    notebook = root / meta.get("notebook", f"{assignment_id}.ipynb")
    if not notebook.is_file():
        raise SpecError(f"{toml_path}: notebook {notebook.name} not found")
    cell_ids = notebook_grade_ids(notebook)
    clashing = sorted({c.id for c in checks} & set(cell_ids))
    if clashing:
        raise SpecError(f"{toml_path}: check id(s) {', '.join(clashing)} are also grade_ids of notebook cells; "
                        "nbgrader needs unique ids (each check becomes a grade cell): rename the check")
    checks = notebook_test_checks(notebook) + checks
    if len({c.id for c in checks}) != len(checks):
        raise SpecError(f"{toml_path}: check ids must be unique")
    limits = Limits(**data.get("limits", {}))
    reference_notebook = None
    calibration_runs = int(data.get("timing", {}).get("runs", 3))
    if calibration_runs < 1:
        raise SpecError(f"{toml_path}: [timing] runs must be at least 1")
    if "reference_notebook" in data.get("timing", {}):
        reference_notebook = root / data["timing"]["reference_notebook"]
        if not reference_notebook.is_file():
            raise SpecError(f"{toml_path}: [timing] reference_notebook {reference_notebook.name} not found")
    parameters = dict(data.get("parameters", {}))
    extra_models = extra_model_names(meta, checks, toml_path)
    backbone = data.get("backbone", {}).get("name")
    if any(c.kind == "frozen_backbone" for c in checks) and not backbone:
        raise SpecError(f"{toml_path}: a frozen_backbone check needs [backbone] name = ... (the pretrained backbone)")
    return AssignmentSpec(
        id=assignment_id,
        title=meta.get("title", assignment_id),
        root=root,
        notebook=notebook,
        input_shape=tuple(meta["input_shape"]),
        reference=meta.get("reference"),
        kernel=meta.get("kernel", "dlgrade"),
        parameters=parameters,
        selfcheck=dict(data.get("selfcheck", {})),
        limits=limits,
        checks=tuple(checks),
        reference_notebook=reference_notebook,
        calibration_runs=calibration_runs,
        leaderboard=leaderboard_spec(data.get("leaderboard", {}), parameters.get("dataset"), toml_path),
        backbone=backbone,
        extra_models=extra_models,
    )


def extra_model_names(meta: dict, checks: list[CheckSpec], toml_path: Path) -> tuple[str, ...]:
    """[assignment] extra_models = ["finetuned", "scratch"]: the only extra models the grader reads and measures;
    a check's `model` / `baseline` option must name one of them."""
    names = tuple(meta.get("extra_models", ()))
    for name in names:
        if not isinstance(name, str) or not EXTRA_MODEL_NAME.fullmatch(name) or name == "model":
            raise SpecError(f"{toml_path}: extra model name {name!r}: use a short lowercase identifier ('scratch')")
    for check in checks:
        for option in MODEL_OPTIONS:
            name = check.options.get(option)
            if name is not None and name not in names:
                raise SpecError(f"{toml_path}: check '{check.id}' {option} = {name!r} is not one of [assignment] "
                                f"extra_models ({', '.join(names) or 'none declared'})")
    if any(c.kind == "beats" and "baseline" not in c.options for c in checks):
        raise SpecError(f"{toml_path}: a beats check needs baseline = \"<extra model>\"")
    return names


def leaderboard_spec(table: dict, dataset: str | None, toml_path: Path) -> LeaderboardSpec:
    """rank = "pareto" | "challenge"; accuracy_gate = 0.9, or one gate per dataset: {cifar10 = 0.9, digits32 = 0.95}."""
    rank = table.get("rank", "pareto")
    if rank not in ("pareto", "challenge"):
        raise SpecError(f"{toml_path}: [leaderboard] rank must be \"pareto\" or \"challenge\", not {rank!r}")
    gate = table.get("accuracy_gate", LeaderboardSpec.accuracy_gate)
    if isinstance(gate, dict):
        gate = gate.get(dataset, LeaderboardSpec.accuracy_gate)
    return LeaderboardSpec(rank, float(gate))


def _nbgrader_cells(notebook: Path) -> list[tuple[str, dict]]:
    import json

    cells = json.loads(notebook.read_text()).get("cells", [])
    return [(c.get("cell_type"), c["metadata"]["nbgrader"]) for c in cells if "nbgrader" in c.get("metadata", {})]


def notebook_grade_ids(notebook: Path) -> list[str]:
    return [meta["grade_id"] for _, meta in _nbgrader_cells(notebook) if "grade_id" in meta]


def is_test_cell(cell_type: str, meta: dict) -> bool:
    """nbgrader's autograded test cell: a graded code cell that is not a solution."""
    return cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


def notebook_test_checks(notebook: Path) -> list[CheckSpec]:
    """nbgrader's autograded test cells of the source notebook (code, grade, not solution), one check each, in
    notebook order: kind `notebook_test`, id = the cell's grade_id, points = the cell's points."""
    return [CheckSpec(meta["grade_id"], "notebook_test", float(meta.get("points", 0)))
            for cell_type, meta in _nbgrader_cells(notebook) if is_test_cell(cell_type, meta)]
