"""The nbgrader course directory: release an assignment, record graded results in the gradebook, build feedback.

A course directory is a plain nbgrader one (nbgrader_config.py, source/, release/, autograded/, feedback/,
gradebook.db): `nbgrader export`, `nbgrader formgrader` and the other nbgrader commands keep working in it.

What dlgrade adds to nbgrader's picture:
- each harness check of assignment.toml becomes a locked, autograded "check cell" in the course's source notebook, so
  it is a grade cell of the gradebook and `nbgrader export` totals include it;
- the grader, not nbgrader, executes the notebook (sandboxed, once) and scores every grade cell; this module writes
  those scores as `auto_score` and the executed notebook to autograded/ for nbgrader's feedback and formgrader.
Only the coordinator of a batch calls this module: one writer for the gradebook.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import sys
import warnings
from datetime import datetime
from pathlib import Path

import nbformat
from markupsafe import Markup

from grading.feedback import feedback_config, scrub_notebook, scrub_paths
from grading.html import render
from harness.errors import BadInput
from harness.spec import AssignmentSpec

CONFIG = '''\
# nbgrader configuration of a course set up by `dlgrade release`. nbgrader's own commands work here.
c = get_config()
c.CourseDirectory.course_id = "dlgrade"
c.CourseDirectory.db_url = "sqlite:///{db}"
# dlgrade executes submissions itself (sandboxed, once). If you run `nbgrader autograde` anyway, do not let its 30 s
# default cell timeout fail training cells:
c.ExecutePreprocessor.timeout = {timeout}
c.Execute.timeout = {timeout}
'''
CHECK_CELL = "# Checked by the grader outside this notebook ({points:g} point{plural}): `{id}` ({kind}{options}).\n"
SHOWN = "# Nothing to do in this cell; `dlgrade check --selfcheck` shows this check's result."
HIDDEN = ("# Hidden check: `dlgrade check --selfcheck` leaves it out. Only your instructor's grading runs it; your\n"
          "# feedback says whether it passed. Nothing to do in this cell.")


class CourseError(BadInput):
    """The course directory or nbgrader refused; the message says what to do."""


def check_cells(spec: AssignmentSpec) -> list[nbformat.NotebookNode]:
    """One locked, autograded code cell per harness check (grade_id = the check's id)."""
    hidden = [c for c in spec.harness_checks if c.hidden]
    which = "the hidden one" if len(hidden) == 1 else f"the {len(hidden)} hidden ones"
    selfcheck = "`dlgrade check --selfcheck` shows the result of each one" + (
        f" except {which} (said so in the cell), which only your instructor's grading runs." if hidden else ".")
    cells = [nbformat.v4.new_markdown_cell(
        "## Checks made by the grader\nThe cells below stand for the checks the grader makes on your exported model "
        f"(in a separate process, on data this notebook never sees). Their points count in your grade. {selfcheck}",
        metadata={"nbgrader": _meta("dlgrade_checks_intro", grade=False)})]
    for check in spec.harness_checks:
        options = "".join(f", {k} = {v}" for k, v in check.options.items()
                          if k in ("model", "baseline", "threshold", "budget", "rel_tol", "at_most", "unstructured",
                                   "structured", "gate"))
        source = CHECK_CELL.format(points=check.points, plural="" if check.points == 1 else "s", id=check.id,
                                   kind=check.kind, options=options) + (HIDDEN if check.hidden else SHOWN)
        cells.append(nbformat.v4.new_code_cell(source, metadata={"nbgrader": _meta(check.id, points=check.points)}))
    return cells


def _meta(grade_id: str, grade: bool = True, points: float = 0.0) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": True, "schema_version": 3, "solution": False,
            "task": False}
    if grade:
        meta["points"] = points
    return meta


def insert_check_cells(nb: nbformat.NotebookNode, spec: AssignmentSpec) -> None:
    """The check cells go before the submit cell (or at the end)."""
    at = next((i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "submit"),
              len(nb.cells))
    nb.cells[at:at] = check_cells(spec)


def kernelspec(spec: AssignmentSpec) -> dict:
    """The Jupyter kernel a released notebook names: the one the grader runs it with (`[assignment] kernel`, default
    "dlgrade", installed by `make` as "Python (dlgrade)"), whatever the source notebook was last saved with."""
    return {"display_name": f"Python ({spec.kernel})", "language": "python", "name": spec.kernel}


def course_notebook(spec: AssignmentSpec) -> nbformat.NotebookNode:
    """The assignment's source notebook + its check cells, naming the grader's kernel."""
    nb = nbformat.read(spec.notebook, as_version=4)
    nb.metadata["kernelspec"] = kernelspec(spec)
    insert_check_cells(nb, spec)
    return nb


def release(spec: AssignmentSpec, course: Path, timeout_s: float | None = None) -> Path:
    """Set up (or update) the course directory and run nbgrader's generate_assignment. Returns the student version."""
    course = Path(course).resolve()
    source_dir = course / "source" / spec.id
    source_dir.mkdir(parents=True, exist_ok=True)
    config = course / "nbgrader_config.py"
    if not config.exists():
        config.write_text(CONFIG.format(db=course / "gradebook.db", timeout=int(timeout_s or spec.limits.timeout_s)))
    nbformat.write(course_notebook(spec), source_dir / spec.notebook.name)
    result = _api(course).generate_assignment(spec.id, force=True, create=True)
    if not result["success"]:
        raise CourseError(f"nbgrader generate_assignment failed for '{spec.id}':\n{result.get('error', '')}"
                          f"{result.get('log', '')}")
    return course / "release" / spec.id / spec.notebook.name


def is_released(spec: AssignmentSpec, course: Path) -> bool:
    expected = nbformat.writes(course_notebook(spec))
    source = Path(course) / "source" / spec.id / spec.notebook.name
    return (Path(course) / "gradebook.db").is_file() and source.is_file() and source.read_text() == expected


def _alembic_on_path() -> None:
    """nbgrader runs `alembic` (installed beside this Python) by name to create and migrate the gradebook."""
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def _api(course: Path, config=None):
    from nbgrader.apps import NbGraderAPI
    from traitlets.config import Config

    _alembic_on_path()
    config = config or Config()
    config.CourseDirectory.root = str(course)
    config.CourseDirectory.db_url = f"sqlite:///{course / 'gradebook.db'}"
    config.CourseDirectory.course_id = "dlgrade"
    return NbGraderAPI(config=config)


def gradebook(course: Path):
    from nbgrader.api import Gradebook

    _alembic_on_path()
    return Gradebook(f"sqlite:///{Path(course).resolve() / 'gradebook.db'}", course_id="dlgrade")


def record(spec: AssignmentSpec, course: Path, student: str, result: dict, executed: dict | None,
           timestamp: datetime | None = None) -> None:
    """Write one graded submission into the course: autograded notebook + auto scores in the gradebook.
    `timestamp`: the submission time (nbgrader's timestamp.txt); None records none (nbgrader never counts such a
    submission late), never the time of grading.

    Idempotent: recording the same student again replaces the scores (a re-run after a crash, or --force)."""
    from sqlalchemy.exc import SAWarning

    notebook_name = spec.notebook.stem
    autograded = Path(course) / "autograded" / student / spec.id / spec.notebook.name
    autograded.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(autograded_notebook(spec, result, executed), autograded)
    with gradebook(course) as gb, warnings.catch_warnings():
        warnings.simplefilter("ignore", SAWarning)  # nbgrader's add_submission autoflush notices
        gb.update_or_create_student(student)
        gb.update_or_create_submission(spec.id, student, timestamp=timestamp)
        points = {c["id"]: c["points"] for c in result["checks"]}
        for grade in gb.find_submission_notebook(notebook_name, spec.id, student).grades:
            if grade.cell_type == "code" and grade.name in points:  # manual grades (markdown answers) stay
                grade.auto_score = points[grade.name]
                grade.needs_manual_grade = False
        gb.db.commit()


def autograded_notebook(spec: AssignmentSpec, result: dict, executed: dict | None) -> nbformat.NotebookNode:
    """The executed notebook as nbgrader's feedback expects it: the injected parameters cell removed, the course's
    nbgrader metadata, each check cell showing the grader's verdict, and the run's sandbox paths (gone with the run)
    replaced by placeholders. A notebook that never ran is the course version, unexecuted."""
    nb = nbformat.from_dict(copy.deepcopy(executed)) if executed else course_notebook(spec)
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    restore_nbgrader_metadata(nb, spec)
    harness_ids = {c.id for c in spec.harness_checks}
    present = {c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells}
    if not present & harness_ids:  # an old or edited notebook
        insert_check_cells(nb, spec)
    hidden = {c.id for c in spec.checks if c.hidden}
    by_id = {c["id"]: c for c in result["checks"] if c["id"] in harness_ids}
    for cell in nb.cells:
        check = by_id.get(cell.metadata.get("nbgrader", {}).get("grade_id"))
        if check is None:
            continue
        verdict = "passed" if check["passed"] else "failed"
        text = f"{check['id']}: {verdict}, {check['points']:g} / {check['max_points']:g} points"
        if check["id"] not in hidden:
            text += f"\n{check['message']}"
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text + "\n")]
        cell.execution_count = None
    return scrub_notebook(nb)


def restore_nbgrader_metadata(nb: nbformat.NotebookNode, spec: AssignmentSpec) -> None:
    """Each cell's nbgrader metadata as the course notebook has it, matched by grade_id (what nbgrader's own
    OverwriteCells does before autograding); the metadata of a grade_id the course does not know is dropped.
    The student's file could otherwise mark a cell of theirs as graded (nbgrader's feedback then fails: no such grade
    in the gradebook) or as locked (shown as the assignment's, unsanitized: grading/feedback.py)."""
    course = {c.metadata["nbgrader"]["grade_id"]: c.metadata["nbgrader"]
              for c in course_notebook(spec).cells if "grade_id" in c.metadata.get("nbgrader", {})}
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in course:
            cell.metadata["nbgrader"] = copy.deepcopy(course[grade_id])
        else:
            cell.metadata.pop("nbgrader", None)


def feedback(spec: AssignmentSpec, course: Path, student: str, result: dict, out: Path) -> Path:
    """nbgrader's feedback HTML for one student, with the grader's check table at the top. Written to `out`."""
    from nbgrader.converters import GenerateFeedback
    from nbgrader.utils import capture_log

    # NbGraderAPI.generate_feedback would impose nbgrader's own template: its converter is run here as the
    # `nbgrader generate_feedback` command runs it, with dlgrade's configuration and template (grading/feedback.py).
    api = _api(Path(course).resolve(), feedback_config(check_table(spec, result)))
    api.coursedir.assignment_id, api.coursedir.student_id = spec.id, student
    converter = GenerateFeedback(coursedir=api.coursedir, parent=api)
    converter.force = True
    api_result = capture_log(converter)
    generated = Path(course) / "feedback" / student / spec.id / f"{spec.notebook.stem}.html"
    if not api_result["success"] or not generated.is_file():
        raise CourseError(f"nbgrader generate_feedback failed for {student}: {api_result.get('error', '')}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.copyfile(generated, tmp)
    tmp.replace(out)
    return out


def check_table(spec: AssignmentSpec, result: dict) -> Markup:
    """The harness's verdict as an HTML section: status, error, and one row per check (hidden: passed/failed)."""
    hidden = {c.id for c in spec.checks if c.hidden}
    text = lambda value: scrub_paths(value if isinstance(value, str) else json.dumps(value))  # noqa: E731
    rows = []
    for c in result["checks"]:
        secret = c["id"] in hidden
        cells = [c["id"], "passed" if c["passed"] else "failed", f"{c['points']:g} / {c['max_points']:g}",
                 "(hidden)" if secret else c["expected"], "(hidden)" if secret else c["got"],
                 "" if secret else c["message"]]
        rows.append({"css": "pass" if c["passed"] else "fail", "cells": [text(v) for v in cells]})
    error = result.get("error")
    manual = hand_graded_cells(spec)
    by_hand = {"points": f"{sum(manual.values()):g}", "cells": ", ".join(manual),
               "total": f"{result['max_score'] + sum(manual.values()):g}"} if manual else None
    return render("check_table.html.j2", assignment=text(result["assignment"]), submission=text(result["submission"]),
                  status=text(result["status"]), score=f"{result['score']:g} / {result['max_score']:g}",
                  error={"kind": text(error["kind"]), "message": text(error["message"])} if error else None,
                  notes=[text(note) for note in result["run"].get("notes", [])], rows=rows, by_hand=by_hand)


def hand_graded_cells(spec: AssignmentSpec) -> dict[str, float]:
    """grade_id -> points of the source notebook's cells graded by hand in nbgrader's formgrader (written answers,
    free-response code, tasks): part of the assignment's total, never of the grader's score."""
    cells = nbformat.read(spec.notebook, as_version=4).cells
    return {meta["grade_id"]: float(meta.get("points", 0)) for cell in cells
            if (meta := cell.metadata.get("nbgrader", {})).get("grade_id")
            and ((meta.get("grade") and (meta.get("solution") or cell.cell_type == "markdown")) or meta.get("task"))}
