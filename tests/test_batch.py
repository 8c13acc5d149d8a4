"""`dlgrade grade`: batches on local workers and on a real Dask LocalCluster, the nbgrader gradebook and export,
feedback pages, grades.csv, and a batch killed with SIGKILL that resumes without losing or duplicating anything."""
from __future__ import annotations

import concurrent.futures
import csv
import html
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from grading.batch import find_submissions, grade_batch
from grading.cli import main
from grading.course import gradebook
from harness.spec import load_spec
from tests.conftest import MODEL, nbgrader_test_cell, notebook

pytestmark = pytest.mark.slow

WARNS_ON_STDERR = ("import torch.nn.functional as F\nF.softmax(torch.ones(2, 3))  # a torch UserWarning on stderr\n"
                   "assert model(torch.zeros(1, 3, 4, 4)).shape == (1, 10)")
STUDENTS = {  # name -> cells before the test cell; the expected result
    "ada": ([MODEL], ("graded", 5.0)),
    "bob": ([MODEL.replace("10)", "9)")], ("graded", 0.0)),  # 441 params, 9 outputs; its test cell fails too
    "cy": (["import torch\nraise RuntimeError('unfinished')"], ("failed", 0.0)),
    "dee": ([MODEL, "import sys; sys.exit(0)"], ("failed", 2.0)),  # IPython survives it: the test cell ran
}


def _ignoring_timings(result: dict) -> dict:
    result = json.loads(json.dumps(result))
    result["run"] = {k: v for k, v in result["run"].items() if k not in ("wall_s", "started")}
    for key in ("train_time_s", "exec_time_s", "train_cpu_s", "exec_cpu_s", "latency_ms", "time_ratio", "exec_ratio"):
        result["metrics"].pop(key, None)
    return result


@pytest.fixture
def course_assignment(tiny, tmp_path):
    """The tiny assignment with an nbgrader test cell that warns on stderr (2 points); students' notebooks made
    from the released version."""
    spec, _ = tiny()
    source = notebook([MODEL])
    source.cells[2:2] = [nbgrader_test_cell(WARNS_ON_STDERR, "test_model", 2)]
    nbformat.write(source, spec.notebook)
    spec = load_spec(spec.root)
    submissions = tmp_path / "submissions"
    submissions.mkdir()
    for name, (cells, _) in STUDENTS.items():
        nb = notebook(cells)
        nb.cells[-1:-1] = [nbgrader_test_cell(WARNS_ON_STDERR, "test_model", 2)]
        nbformat.write(nb, submissions / f"{name}.ipynb")
    return spec, submissions


def test_local_workers_and_a_dask_cluster_record_the_same_results(course_assignment, tmp_path):
    from distributed import LocalCluster

    spec, submissions = course_assignment
    local = grade_batch(spec, submissions, tmp_path / "local", workers=2, threads=1, progress=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        dask = grade_batch(spec, submissions, tmp_path / "dask", scheduler=cluster.scheduler_address, threads=1,
                           progress=False)

    for report in (local, dask):
        results = {p.stem: json.loads(p.read_text()) for p in report.results_dir.glob("*.json")}
        assert {name: (r["status"], r["score"]) for name, r in results.items()} == {
            name: expected for name, (_, expected) in STUDENTS.items()}
    for name in STUDENTS:
        assert (_ignoring_timings(json.loads((local.results_dir / f"{name}.json").read_text()))
                == _ignoring_timings(json.loads((dask.results_dir / f"{name}.json").read_text())))
    assert (local.grades_csv.read_text() == dask.grades_csv.read_text())

    # the test cell printed a torch warning on stderr and still got its 2 points, in the gradebook too
    with gradebook(local.course) as gb:
        grade = gb.find_grade("test_model", "tiny", "tiny", "ada")
        assert (grade.auto_score, grade.max_score) == (2.0, 2.0)
    executed = nbformat.read(local.course / "autograded" / "ada" / "tiny" / "tiny.ipynb", as_version=4)
    test_cell = next(c for c in executed.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test_model")
    assert any(o.output_type == "stream" and o.name == "stderr" and "softmax" in o.text for o in test_cell.outputs)

    # `nbgrader export` in the course directory: totals include the harness checks
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["nbgrader", "export"], cwd=local.course, env=env, check=True, capture_output=True)
    with open(local.course / "grades.csv") as f:
        exported = {row["student_id"]: (float(row["score"]), float(row["max_score"])) for row in csv.DictReader(f)}
    assert exported == {name: (expected[1], 5.0) for name, (_, expected) in STUDENTS.items()}

    with open(local.grades_csv) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["student", "status", "test_model", "params", "output", "total", "max_score", "error"]
    assert [(r["student"], r["status"], r["test_model"], r["total"]) for r in rows] == [
        ("ada", "graded", "2.0", "5.0"), ("bob", "graded", "0.0", "0.0"), ("cy", "failed", "0.0", "0.0"),
        ("dee", "failed", "2.0", "2.0")]
    assert rows[2]["error"].startswith('cell 2 ("import torch") raised RuntimeError: unfinished')

    page = (local.feedback_dir / "bob.html").read_text()
    params = next(c for c in json.loads((local.results_dir / "bob.json").read_text())["checks"] if c["id"] == "params")
    assert f"<td>params</td><td>failed</td><td>0 / 2</td><td>490</td><td>441</td><td>{html.escape(params['message'])}" \
        in page


def test_a_rerun_skips_what_is_recorded_and_regrades_what_changed(course_assignment, tmp_path):
    spec, submissions = course_assignment
    for name in ("cy", "dee"):
        (submissions / f"{name}.ipynb").unlink()
    first = grade_batch(spec, submissions, tmp_path / "out", threads=1, progress=False)
    assert (len(first.graded), first.skipped) == (2, 0)
    again = grade_batch(spec, submissions, tmp_path / "out", threads=1, progress=False)
    assert (len(again.graded), again.skipped) == (0, 2)
    nb = nbformat.read(submissions / "bob.ipynb", as_version=4)
    nb.cells[1].source = MODEL  # bob fixes his model and submits again
    nbformat.write(nb, submissions / "bob.ipynb")
    fixed = grade_batch(spec, submissions, tmp_path / "out", threads=1, progress=False)
    assert ([(r["submission"], r["score"]) for r in fixed.graded], fixed.skipped) == ([("bob", 5.0)], 1)
    with gradebook(fixed.course) as gb:
        assert len(gb.assignment_submissions("tiny")) == 2
        assert gb.find_submission("tiny", "bob").score == 5.0


def test_killing_the_grader_mid_batch_loses_and_duplicates_nothing(course_assignment, tmp_path):
    spec, submissions = course_assignment
    (submissions / "eve.ipynb").write_bytes((submissions / "ada.ipynb").read_bytes())
    out = tmp_path / "out"
    command = [sys.executable, "-m", "grading.cli", "grade", str(spec.root), str(submissions), "--out", str(out),
               "--threads", "1", "--no-progress"]
    grader = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list((out / "results").glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    descendants = psutil.Process(grader.pid).children(recursive=True)
    os.kill(grader.pid, signal.SIGKILL)  # mid-batch: one result written, the next submissions running
    grader.wait()
    recorded_before = {p.name for p in (out / "results").glob("*.json")}
    assert 1 <= len(recorded_before) < 5
    _, alive = psutil.wait_procs(descendants, timeout=20)
    assert alive == [], [(p.pid, p.cmdline()) for p in alive]  # workers, runners and kernels died with the grader

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 1, rerun.stderr  # 1: some submissions are below full marks
    assert re.search(r"already recorded +(\d+)", rerun.stdout).group(1) == str(len(recorded_before))
    results = sorted(p.name for p in (out / "results").iterdir())
    assert results == sorted(f"{name}.json" for name in [*STUDENTS, "eve"])  # no temp files either
    with gradebook(out / "course") as gb:
        submitted = sorted(s.student_id for s in gb.assignment_submissions("tiny"))
    assert submitted == sorted([*STUDENTS, "eve"])
    with open(out / "grades.csv") as f:
        assert sorted(row["student"] for row in csv.DictReader(f)) == submitted


def test_an_nbgrader_submitted_tree_is_read_with_its_timestamps(course_assignment, tmp_path):
    spec, submissions = course_assignment
    tree = tmp_path / "course" / "submitted"
    for name in ("ada", "bob"):
        folder = tree / name / "tiny"
        folder.mkdir(parents=True)
        (folder / "tiny.ipynb").write_bytes((submissions / f"{name}.ipynb").read_bytes())
        (folder / "timestamp.txt").write_text("2026-11-20 23:59:00.000000 UTC")
    found = find_submissions(spec, tree)
    assert [(s.student, s.path.name, s.timestamp.isoformat()) for s in found] == [
        ("ada", "tiny.ipynb", "2026-11-20T23:59:00"), ("bob", "tiny.ipynb", "2026-11-20T23:59:00")]


def test_a_killed_worker_is_recorded_as_lost_and_a_rerun_grades_it(course_assignment, tmp_path):
    spec, submissions = course_assignment
    out = tmp_path / "out"
    command = [sys.executable, "-m", "grading.cli", "grade", str(spec.root), str(submissions), "--out", str(out),
               "--workers", "2", "--threads", "1", "--no-progress"]
    grader = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim, deadline = None, time.monotonic() + 120
    while victim is None and time.monotonic() < deadline:
        victim = next((p for p in psutil.Process(grader.pid).children(recursive=True) if _is_running_a_notebook(p)),
                      None)
        time.sleep(0.1)
    assert victim is not None
    victim.kill()
    stdout, stderr = grader.communicate(timeout=300)
    assert grader.returncode == 1, stderr  # the grader went on and finished the batch
    first = {p.stem: json.loads(p.read_text()) for p in (out / "results").glob("*.json")}
    assert sorted(first) == sorted(STUDENTS)  # one result each, the lost ones included
    lost = sorted(name for name, r in first.items() if (r["error"] or {}).get("kind") == "worker_failed")
    assert lost and all(first[name]["status"] == "crashed" for name in lost)
    assert "grade it again" in first[lost[0]]["error"]["message"]

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 1, rerun.stderr
    final = {p.stem: json.loads(p.read_text()) for p in (out / "results").glob("*.json")}
    assert {name: (r["status"], r["score"]) for name, r in final.items()} == \
        {name: expected for name, (_, expected) in STUDENTS.items()}
    with gradebook(out / "course") as gb:
        assert sorted(s.student_id for s in gb.assignment_submissions("tiny")) == sorted(STUDENTS)


def _is_running_a_notebook(worker: psutil.Process) -> bool:
    """A grading worker (not a helper) whose notebook-runner zygote has a runner child right now."""
    try:
        return "kernel_runner" not in " ".join(worker.cmdline()) and any(
            "kernel_runner" in " ".join(child.cmdline()) and child.children() for child in worker.children())
    except psutil.Error:  # it ended while we looked
        return False


def test_a_full_disk_and_a_half_written_result_are_repaired_by_a_rerun(course_assignment, tmp_path, monkeypatch):
    import errno

    import grading.batch
    import harness.result
    from grading.batch import BatchError

    spec, submissions = course_assignment
    for name in ("cy", "dee"):
        (submissions / f"{name}.ipynb").unlink()
    out = tmp_path / "out"
    real_json, real_write, written = harness.result.json, grading.batch.write_json_atomic, []

    class DiskFillsUp:  # json as seen by write_json_atomic: half of the document reaches the disk, then ENOSPC
        @staticmethod
        def dump(data, stream, **kwargs):
            text = real_json.dumps(data, **kwargs)
            stream.write(text[:len(text) // 2])
            stream.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def second_result_hits_a_full_disk(path, data):
        written.append(path.name)
        if len(written) == 2:
            monkeypatch.setattr(harness.result, "json", DiskFillsUp)
        try:
            real_write(path, data)
        finally:
            monkeypatch.setattr(harness.result, "json", real_json)

    monkeypatch.setattr(grading.batch, "write_json_atomic", second_result_hits_a_full_disk)
    with pytest.raises(BatchError, match=r"could not record (ada|bob) in .* \(No space left on device\); 1 results "
                                         r"of this run are recorded\. Fix it and run the same command again"):
        grade_batch(spec, submissions, out, threads=1, progress=False)
    assert sorted(p.name for p in (out / "results").iterdir()) == [written[0]]  # no half file, no temp file
    monkeypatch.setattr(grading.batch, "write_json_atomic", real_write)

    repaired = grade_batch(spec, submissions, out, threads=1, progress=False)
    assert ([r["submission"] + ".json" for r in repaired.graded], repaired.skipped) == ([written[1]], 1)
    half = out / "results" / "ada.json"
    text = half.read_text()
    half.write_text(text[:len(text) // 2])  # a result cut short by something else than dlgrade's atomic writes
    again = grade_batch(spec, submissions, out, threads=1, progress=False)
    assert ([r["submission"] for r in again.graded], again.skipped) == (["ada"], 1)
    assert json.loads(half.read_text())["score"] == 5.0
    with gradebook(out / "course") as gb:
        assert sorted(s.student_id for s in gb.assignment_submissions("tiny")) == ["ada", "bob"]


def test_a_changed_assignment_is_never_mixed_with_results_graded_under_the_old_one(course_assignment, tmp_path,
                                                                                     capsys):
    spec, submissions = course_assignment
    (submissions / "dee.ipynb").unlink()
    out = tmp_path / "out"
    first = grade_batch(spec, submissions, out, threads=1, progress=False)
    assert {r["run"]["assignment_hash"] for r in first.graded} == {spec.hash}
    toml = spec.root / "assignment.toml"
    toml.write_text(toml.read_text().replace('kind = "output_shape"\npoints = 1', 'kind = "output_shape"\npoints = 3'))
    changed = load_spec(spec.root)
    assert changed.hash != spec.hash
    cy = out / "results" / "cy.json"  # as if cy had been graded under the new rules already
    cy.write_text(cy.read_text().replace(spec.hash, changed.hash))
    before = {p.name: p.read_bytes() for p in (out / "results").iterdir()}
    command = ["grade", str(spec.root), str(submissions), "--out", str(out), "--threads", "1", "--no-progress"]

    assert main(command) == 2
    assert capsys.readouterr().err == ("dlgrade grade: 2 results were graded with an older version of the assignment: "
                                       "re-run with --regrade-changed to regrade them, or --force to regrade all\n")
    assert {p.name: p.read_bytes() for p in (out / "results").iterdir()} == before  # nothing graded or written

    assert main([*command, "--regrade-changed"]) == 1  # bob is still below full marks
    assert "2 results graded with an older version of the assignment were regraded" in capsys.readouterr().out
    results = {p.stem: json.loads(p.read_text()) for p in (out / "results").glob("*.json")}
    assert {name: (r["run"]["assignment_hash"] == changed.hash, r["max_score"]) for name, r in results.items()} == {
        "ada": (True, 7.0), "bob": (True, 7.0), "cy": (True, 5.0)}  # cy kept: not graded again
    assert (out / "results" / "cy.json").read_bytes() == before["cy.json"]


def test_a_grader_bug_mid_batch_stops_it_with_exit_3_and_records_no_student(course_assignment, tmp_path, capsys,
                                                                             monkeypatch):
    """The coordinator's path with one local worker; the worker is a thread here so that the bug planted in a check
    function reaches it (forked worker processes would not see the monkeypatch)."""
    import grading.batch
    from harness.checks import CHECK_KINDS

    spec, submissions = course_assignment
    for name in ("cy", "dee"):
        (submissions / f"{name}.ipynb").unlink()
    out = tmp_path / "out"

    def grader_bug(check, evidence):
        raise KeyError("threshold")

    monkeypatch.setitem(CHECK_KINDS, "params", grader_bug)
    monkeypatch.setattr(grading.batch, "local_executor", lambda workers: concurrent.futures.ThreadPoolExecutor(1))
    command = ["grade", str(spec.root), str(submissions), "--out", str(out), "--workers", "1", "--threads", "1",
               "--no-progress"]
    assert main(command) == 3
    err = capsys.readouterr().err
    assert "KeyError: 'threshold'" in err  # the traceback, for the bug report
    assert re.search(r"dlgrade grade: internal error \(a bug in dlgrade, not in the notebook\): grading (ada|bob) "
                     r"failed in dlgrade's own code \(KeyError: 'threshold'\); nothing was recorded for it\. Once "
                     r"fixed, run the same command again: it resumes\.", err), err
    assert list((out / "results").iterdir()) == [] and not (out / "feedback").exists()
    assert not (out / "grades.csv").exists()
    with gradebook(out / "course") as gb:
        assert gb.assignment_submissions("tiny") == []

    monkeypatch.undo()
    assert main(command) == 1  # the re-run grades everyone; bob is below full marks
    results = {p.stem: json.loads(p.read_text()) for p in (out / "results").glob("*.json")}
    assert {name: (r["status"], r["score"]) for name, r in results.items()} == {"ada": ("graded", 5.0),
                                                                                 "bob": ("graded", 0.0)}
