"""The assignment's source notebook, checked before any student is graded: what the grading path relies on.

- a code cell tagged `parameters` (papermill injects the grading parameters after it);
- a locked cell calling `harness.submit(...)` (restored into every submission: without it every student fails
  `no_submission`);
- grade_ids on every nbgrader cell, each unique (nbgrader's gradebook and the restoring of locked cells key on them);
- code that parses (IPython magics and `!` commands are turned into Python first, as IPython does).

`notebook_facts` returns the problems and what the spec's checks are compared with: the names the parameters cell
sets, the keywords the submit call passes, the extra models it submits.
"""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class NotebookFacts:
    parameters: set[str] = field(default_factory=set)  # names assigned in the `parameters` cell
    submit_keywords: set[str] | None = None  # keywords of harness.submit(...); None: unknown (**kwargs, no call)
    extra_models: set[str] | None = None  # keys of its extra_models={...} literal; None: unknown
    grade_ids: list[str] = field(default_factory=list)


def notebook_facts(path: Path, source: bool = True) -> tuple[list[str], NotebookFacts]:
    """Problems of the notebook at `path` (each line starts with its file name) and its facts. `source=False`: a
    reference solution, whose submit cell need not be locked (the source notebook's locked cells replace its own)."""
    facts, label = NotebookFacts(), path.name
    try:
        cells = json.loads(path.read_text())["cells"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        return [f"{label}: cannot be read as a Jupyter notebook ({type(exc).__name__}: {exc})"], facts
    problems, trees = [], {}
    for number, cell in enumerate(cells, 1):
        where = _where(label, number, cell)
        if cell.get("cell_type") == "code":
            tree, problem = parse_cell(_text(cell.get("source", "")))
            if problem:
                problems.append(f"{where}: {problem}: fix the cell's code")
            else:
                trees[number] = tree
    problems += _grade_id_problems(cells, label)
    facts.grade_ids = [grade_id for cell in cells if (grade_id := _nbgrader(cell).get("grade_id"))]
    parameters = [n for n, c in enumerate(cells, 1) if c.get("cell_type") == "code" and "parameters" in _tags(c)]
    if not parameters:
        problems.append(f"{label}: no code cell tagged `parameters`: tag the cell that sets the grading parameters "
                        "(seed, epochs, ...) and output_dir, data_dir, device; papermill injects their values after it")
    elif len(parameters) > 1:
        problems.append(f"{label}: cells {', '.join(map(str, parameters))} are all tagged `parameters`: papermill "
                        "uses the first only; keep one")
    if parameters and parameters[0] in trees:
        facts.parameters = assigned_names(trees[parameters[0]])
    problems += _submit_problems(cells, trees, label, source, facts)
    return problems, facts


def _text(source) -> str:
    return "".join(source) if isinstance(source, list) else str(source)


def _tags(cell: dict) -> list:
    return cell.get("metadata", {}).get("tags", [])


def _nbgrader(cell: dict) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def _where(label: str, number: int, cell: dict) -> str:
    grade_id = _nbgrader(cell).get("grade_id")
    return f"{label}: cell {number}" + (f" (grade_id '{grade_id}')" if grade_id else "")


def parse_cell(source: str) -> tuple[ast.Module | None, str | None]:
    """The cell as IPython would run it: magics (%time, %%capture) and shell escapes (!ls) become Python calls."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return ast.parse(TransformerManager().transform_cell(source)), None
    except SyntaxError as exc:
        return None, f"SyntaxError: {exc.msg} (line {exc.lineno})"


def assigned_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, (ast.AnnAssign, ast.AugAssign)) else []
        names |= {t.id for target in targets for t in ast.walk(target) if isinstance(t, ast.Name)}
    return names


def _grade_id_problems(cells: list[dict], label: str) -> list[str]:
    problems, first = [], {}
    for number, cell in enumerate(cells, 1):
        meta = _nbgrader(cell)
        if not meta:
            continue
        grade_id = meta.get("grade_id")
        if not grade_id:
            problems.append(f"{label}: cell {number} has nbgrader metadata but no grade_id: give it one in "
                            "nbgrader's Create Assignment toolbar")
        elif grade_id in first:
            problems.append(f"{label}: cell {number}: grade_id '{grade_id}' is already the grade_id of cell "
                            f"{first[grade_id]}: nbgrader needs unique grade_ids; rename one")
        else:
            first[grade_id] = number
        points = meta.get("points", 0)
        if meta.get("grade") and (isinstance(points, bool) or not isinstance(points, (int, float)) or points < 0):
            problems.append(f"{_where(label, number, cell)}: points = {points!r}: a graded cell needs a number of "
                            "points >= 0")
    return problems


def _submit_call(tree: ast.Module) -> ast.Call | None:
    """harness.submit(...) or submit(...) in the cell, if any."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if (isinstance(func, ast.Attribute) and func.attr == "submit" and isinstance(func.value, ast.Name)
                    and func.value.id == "harness") or (isinstance(func, ast.Name) and func.id == "submit"):
                return node
    return None


def _submit_problems(cells: list[dict], trees: dict, label: str, source: bool, facts: NotebookFacts) -> list[str]:
    calls = [(number, call) for number, tree in trees.items() if (call := _submit_call(tree)) is not None]
    if not calls:
        return [f"{label}: no cell calls harness.submit(model, example_input): every submission would fail with "
                "no_submission; end the notebook with a locked cell that calls it"]
    number, call = calls[-1]
    meta, problems = _nbgrader(cells[number - 1]), []
    if source and not (meta.get("locked") and not meta.get("solution") and meta.get("grade_id")):
        problems.append(f"{_where(label, number, cells[number - 1])}: calls harness.submit but is not a locked cell "
                        "with a grade_id: the grader restores only locked cells, so a student who edits or deletes "
                        "it is not graded; make it read-only in nbgrader's Create Assignment toolbar")
    if not any(k.arg is None for k in call.keywords):  # **kwargs: names unknown
        facts.submit_keywords = {k.arg for k in call.keywords}
    extra = next((k.value for k in call.keywords if k.arg == "extra_models"), None)
    if facts.submit_keywords is not None and extra is None:
        facts.extra_models = set()
    elif isinstance(extra, ast.Dict) and all(isinstance(k, ast.Constant) for k in extra.keys):
        facts.extra_models = {k.value for k in extra.keys}
    return problems
