"""`dlgrade demo`: the whole instructor pipeline on the example submissions of assignments, offline: every
assignment under assignments/ by default, or the ones named by `--assignment` (an id or a directory elsewhere, with
submissions/*.ipynb and submissions/expected.toml).

For each assignment: `dlgrade grade` (nbgrader course, results JSON, feedback pages, grades.csv) on its examples,
then `dlgrade leaderboard`; each example is compared with its submissions/expected.toml. Ends with a summary and
the paths to open (DIR/index.html links every page). A re-run resumes: recorded examples are not graded again.
"""
from __future__ import annotations

import time
from pathlib import Path

import tomllib
from tabulate import tabulate

from grading.batch import grade_batch
from grading.html import render
from grading.leaderboard import load_results, write_leaderboard
from harness.devices import visible_gpus
from harness.errors import BadInput
from harness.execute import cpu_threads
from harness.spec import ASSIGNMENTS_DIR, AssignmentSpec, load_spec


def demo_assignments(chosen: list[str] | None = None) -> list[AssignmentSpec]:
    """The assignments `chosen` (ids or directories; each validated, with examples and their expected outcomes), or
    by default every assignment under assignments/ that has example submissions."""
    if not chosen:
        return [load_spec(toml.parent) for toml in sorted(ASSIGNMENTS_DIR.glob("*/assignment.toml"))
                if list((toml.parent / "submissions").glob("*.ipynb"))]
    specs = [load_spec(a) for a in chosen]
    for spec in specs:
        if not list(spec.submissions_dir.glob("*.ipynb")) or not (spec.submissions_dir / "expected.toml").is_file():
            raise BadInput(f"{spec.root}: the demo grades an assignment's examples: it needs submissions/*.ipynb and "
                           "their expected outcomes in submissions/expected.toml")
    ids = [spec.id for spec in specs]
    if len(set(ids)) < len(ids):
        raise BadInput(f"two of the --assignment directories have the same id ({', '.join(sorted(ids))}): the demo "
                       "writes each to OUT/<id>")
    return specs


def as_expected(result: dict, expected: dict | None) -> bool:
    if expected is None:
        return False
    score_ok = "score" not in expected or abs(result["score"] - expected["score"]) < 1e-9
    return result["status"] == expected["status"] and score_ok


def run_demo(out: Path, workers: int | None = None, assignments: list[str] | None = None) -> int:
    """`assignments`: ids or directories (default: every assignment under assignments/ with examples)."""
    specs = demo_assignments(assignments)  # every one validated before anything runs
    out = Path(out).resolve()
    gpus = visible_gpus()
    workers = workers or (len(gpus) if gpus else cpu_threads())  # one worker per GPU, else per core (one thread each)
    started = time.monotonic()
    rows, pages, all_as_expected = [], [], True
    for spec in specs:
        print(f"\n== {spec.id}: grading {len(list(spec.submissions_dir.glob('*.ipynb')))} example submissions "
              f"on {workers} worker(s)")
        # an example whose assignment was edited since the last demo is graded again (the demo's purpose)
        report = grade_batch(spec, spec.submissions_dir, out / spec.id, workers=workers, regrade_changed=True)
        board = write_leaderboard(spec, report.results_dir, out / spec.id / "leaderboard")
        expected_file = spec.submissions_dir / "expected.toml"
        expected = tomllib.loads(expected_file.read_text()) if expected_file.is_file() else {}
        results = load_results(report.results_dir)
        matching = sum(as_expected(r, expected.get(r["submission"])) for r in results)
        all_as_expected &= matching == len(results)
        graded = [r for r in results if r["status"] == "graded"]
        rows.append([spec.id, len(results), len(graded), f"{matching}/{len(results)}",
                     f"{sum(r['score'] / r['max_score'] for r in results) / len(results):.0%}"])
        pages.append((spec, report, board, results))
    index = write_index(out, pages)
    print("\n" + tabulate(rows, headers=["assignment", "examples", "graded", "as expected", "mean score"],
                          tablefmt="simple"))
    print(f"\ndemo finished in {time.monotonic() - started:.0f} s. Open:\n  {index}")
    for _, report, board, _ in pages:
        print(f"  {board.html}\n  {report.feedback_dir}/  {report.grades_csv}")
    return 0 if all_as_expected else 1


def write_index(out: Path, pages: list) -> Path:
    """DIR/index.html: every leaderboard, feedback page and grades CSV of the demo, as relative links."""
    sections = [{"title": spec.title, "leaderboard": str(board.html.relative_to(out)),
                 "grades_csv": str(report.grades_csv.relative_to(out)),
                 "feedback": [{"submission": r["submission"], "score": f"{r['score']:g}/{r['max_score']:g}",
                               "href": str((report.feedback_dir / (r["submission"] + ".html")).relative_to(out))}
                              for r in results]}
                for spec, report, board, results in pages]
    index = out / "index.html"
    index.write_text(render("demo_index.html.j2", sections=sections))
    return index
