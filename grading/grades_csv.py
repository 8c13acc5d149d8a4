"""grades.csv: one row per student, one column per graded item (nbgrader test cells, harness checks, manually
graded answers), then the total. Scores come from the gradebook, so manual grades entered in nbgrader's formgrader
appear on the next export; the status and error come from the result JSON."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from harness.spec import AssignmentSpec


def grades_table(spec: AssignmentSpec, course: Path, results_dir: Path) -> pd.DataFrame:
    from grading.course import gradebook

    results = {p.stem: json.loads(p.read_text()) for p in sorted(Path(results_dir).glob("*.json"))}
    rows, max_scores = [], {}
    with gradebook(course) as gb:
        for student, result in results.items():
            row = {"student": student, "status": result["status"],
                   "error": (result["error"] or {}).get("message", "")}
            notebook = gb.find_submission_notebook(spec.notebook.stem, spec.id, student)
            for grade in notebook.grades:
                row[grade.name] = grade.score if (grade.auto_score is not None or grade.manual_score is not None) \
                    else None
                max_scores[grade.name] = grade.max_score
            rows.append(row)
    table = pd.DataFrame(rows, columns=["student", "status", *max_scores, "error"])
    graded_items = list(max_scores)
    table.insert(len(table.columns) - 1, "total", table[graded_items].fillna(0).sum(axis=1).round(4))
    table.insert(len(table.columns) - 1, "max_score", round(sum(max_scores.values()), 4))
    return table


def write_grades_csv(spec: AssignmentSpec, course: Path, results_dir: Path, path: Path) -> Path:
    table = grades_table(spec, course, results_dir)
    tmp = path.with_name(f".{path.name}.tmp")
    table.to_csv(tmp, index=False)
    tmp.replace(path)
    return path
