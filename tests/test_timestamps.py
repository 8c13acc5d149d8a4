"""Submission times: nbgrader's timestamp.txt is read as nbgrader reads it; one that gives no time (unparseable,
empty, missing) is warned about, noted in the result and recorded as no time (never as the time of grading, which
nbgrader's late penalties would compare with the due date)."""
from __future__ import annotations

import json
from datetime import datetime

import nbformat
import pytest

from grading.batch import find_submissions
from grading.cli import main
from grading.course import gradebook
from tests.conftest import MODEL, notebook

GOOD = "2026-11-20 23:59:00.000000 UTC"


def submitted_tree(root, stamps: dict[str, str | None]):
    """root/submitted/<student>/tiny/tiny.ipynb (a correct submission) with its timestamp.txt (None: no file)."""
    for student, stamp in stamps.items():
        folder = root / "submitted" / student / "tiny"
        folder.mkdir(parents=True)
        nbformat.write(notebook([MODEL]), folder / "tiny.ipynb")
        if stamp is not None:
            (folder / "timestamp.txt").write_text(stamp)
    return root / "submitted"


def test_each_timestamp_file_gives_a_time_or_says_what_is_wrong(tiny, tmp_path):
    spec, _ = tiny()
    tree = submitted_tree(tmp_path, {"ada": GOOD, "bob": "yesterday 5pm", "cy": " \n", "dee": None,
                                     "eve": "2026-11-20T22:59:00+01:00"})
    found = {s.student: (s.timestamp, s.timestamp_problem) for s in find_submissions(spec, tree)}
    assert found == {
        "ada": (datetime(2026, 11, 20, 23, 59), None),
        "bob": (None, "holds 'yesterday 5pm', which is not a time (nbgrader's format: "
                      "'2026-11-20 23:59:00.000000 UTC')"),
        "cy": (None, "is empty"),
        "dee": (None, "is missing"),
        "eve": (datetime(2026, 11, 20, 21, 59), None)}  # UTC, as nbgrader stores it
    bob = next(s for s in find_submissions(spec, tree) if s.student == "bob")
    assert bob.timestamp_warning(tmp_path / "out" / "results") == (
        f"{tree}/bob/tiny/timestamp.txt holds 'yesterday 5pm', which is not a time (nbgrader's format: "
        "'2026-11-20 23:59:00.000000 UTC'): bob's submission is graded and recorded without a submission time "
        f"(nbgrader never counts it late). Fix the file, delete {tmp_path}/out/results/bob.json and run the same "
        "command again to record its time.")


def test_plain_notebooks_have_no_timestamp_and_no_warning(tiny, tmp_path):
    spec, write = tiny()
    write([MODEL])
    assert [(s.timestamp, s.timestamp_problem) for s in find_submissions(spec, spec.submissions_dir)] == [(None, None)]


@pytest.mark.slow
def test_a_bad_timestamp_is_warned_noted_and_recorded_as_no_time_and_the_submission_graded(tiny, tmp_path, capsys):
    spec, _ = tiny()
    tree = submitted_tree(tmp_path, {"ada": GOOD, "bob": "yesterday 5pm"})
    nbformat.write(notebook([MODEL]), tree / "cy.ipynb")  # a plain notebook beside them: no time either, no warning
    out = tmp_path / "out"
    assert main(["grade", str(spec.root), str(tree), "--out", str(out), "--threads", "1", "--no-progress"]) == 0
    printed = capsys.readouterr()
    warning = (f"{tree}/bob/tiny/timestamp.txt holds 'yesterday 5pm', which is not a time (nbgrader's format: "
               "'2026-11-20 23:59:00.000000 UTC'): bob's submission is graded and recorded without a submission time "
               f"(nbgrader never counts it late). Fix the file, delete {out}/results/bob.json and run the same "
               "command again to record its time.")
    assert f"warning: {warning}\n" in printed.err  # before the batch
    assert f"\n1 warning:\n  {warning}\n" in printed.out  # and in the summary

    results = {name: json.loads((out / "results" / f"{name}.json").read_text()) for name in ("ada", "bob", "cy")}
    assert {name: (r["status"], r["score"]) for name, r in results.items()} == {
        "ada": ("graded", 3.0), "bob": ("graded", 3.0), "cy": ("graded", 3.0)}
    note = ("timestamp.txt holds 'yesterday 5pm', which is not a time (nbgrader's format: '2026-11-20 23:59:00.000000 "
            "UTC'): recorded without a submission time")
    assert note in results["bob"]["run"]["notes"]
    assert not any("timestamp" in n for name in ("ada", "cy") for n in results[name]["run"]["notes"])
    assert "yesterday 5pm" in (out / "feedback" / "bob.html").read_text()
    with gradebook(out / "course") as gb:
        assert {s.student_id: s.timestamp for s in gb.assignment_submissions("tiny")} == {
            "ada": datetime(2026, 11, 20, 23, 59), "bob": None, "cy": None}
