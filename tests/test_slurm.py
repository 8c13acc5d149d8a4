"""`dlgrade grade --slurm`: the workers are Slurm jobs of a real single-node Slurm (tests/slurm_daemons.py), the
grader an ordinary account (tests/accounts.py), as on a university cluster. Results equal local workers', every
kernel is in bubblewrap, and a worker job cancelled mid-batch (scancel) loses and duplicates nothing."""
from __future__ import annotations

import collections
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from tests import slurm_daemons
from tests.accounts import account_directory, run_as
from tests.conftest import MODEL, TOML, notebook

pytestmark = pytest.mark.slow
SLOW_CELL = "import time\nt = time.monotonic()\nwhile time.monotonic() - t < {s}:\n    pass"
# the submissions: name -> cells (before the submit cell), and the recorded (status, score) they must get
SUBMISSIONS = {
    "ada": ([MODEL], ("graded", 3.0)),
    "bob": ([MODEL.replace("10)", "9)")], ("graded", 0.0)),  # 441 params, output [9]: both checks fail
    "cy": ([MODEL, "raise ValueError('oops')"], ("graded", 3.0)),
    "dee": ([MODEL, "import os\nos._exit(1)"], ("crashed", 0.0)),
    "eve": ([MODEL, SLOW_CELL.format(s=8)], ("graded", 3.0)),
    "fay": ([MODEL, SLOW_CELL.format(s=8)], ("graded", 3.0)),
}
# one task thread per job, one CPU each: two jobs share the two cores of the test machine
JOB_SETTINGS = {"DASK_JOBQUEUE__SLURM__JOB_CPU": "1", "DASK_JOBQUEUE__SLURM__WALLTIME": "00:20:00"}


@pytest.fixture(scope="module")
def slurm(ordinary_account, tmp_path_factory):
    missing = slurm_daemons.missing_programs()
    assert not missing, f"Slurm is not installed ({missing}): apt install slurm-wlm munge (.ci/run does)"
    directory = Path("/tmp") / f"dlgrade-slurm-{time.monotonic_ns()}"
    env = slurm_daemons.start(directory)
    yield env
    slurm_daemons.stop(directory, env)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def batch(ordinary_account):
    """An assignment and the submissions in a directory of the account's; yields (directory, grade argv)."""
    base = account_directory(ordinary_account)
    assignment, submissions = base / "tiny", base / "submissions"
    for directory in (assignment, submissions):
        directory.mkdir()
    (assignment / "assignment.toml").write_text(TOML.format(timeout_s=120, cell_timeout_s=60, memory_gb=2))
    nbformat.write(notebook([MODEL]), assignment / "tiny.ipynb")
    for name, (cells, _) in SUBMISSIONS.items():
        nbformat.write(notebook(cells), submissions / f"{name}.ipynb")
    for path in (base, *base.rglob("*")):
        shutil.chown(path, ordinary_account.pw_name, ordinary_account.pw_name)
    grade = [str(Path(sys.executable).parent / "dlgrade"), "grade", str(assignment), str(submissions), "--no-progress"]
    yield base, grade
    shutil.rmtree(base, ignore_errors=True)


def outcomes(out: Path) -> dict[str, tuple]:
    """name -> what must not depend on where it was graded: status, score, error kind, each check, the metrics."""
    results = {p.stem: json.loads(p.read_text()) for p in (out / "results").glob("*.json")}
    return {name: (r["status"], r["score"], (r["error"] or {}).get("kind"),
                   [(c["id"], c["passed"], c["points"], c["got"]) for c in r["checks"]],
                   {k: r["metrics"].get(k) for k in ("params", "macs", "output_shape")})
            for name, r in results.items()}


def test_slurm_jobs_grade_as_local_workers_do_with_the_sandbox_in_every_job(slurm, ordinary_account, batch):
    base, grade = batch
    local = run_as(ordinary_account, [*grade, "--out", str(base / "local"), "--workers", "2"])
    assert local.returncode == 1, local.stdout + local.stderr  # exit 1: not every submission got full marks
    started = time.monotonic()
    on_slurm = run_as(ordinary_account, [*grade, "--out", str(base / "slurm"), "--slurm", "2"],
                      env={**slurm, **JOB_SETTINGS})
    print(f"--slurm 2: {time.monotonic() - started:.1f} s")
    assert on_slurm.returncode == 1, on_slurm.stdout + on_slurm.stderr
    assert "submitted 2 Slurm worker jobs" in on_slurm.stderr
    assert outcomes(base / "slurm") == outcomes(base / "local")
    assert {name: outcome[:2] for name, outcome in outcomes(base / "slurm").items()} == \
        {name: expected for name, (_, expected) in SUBMISSIONS.items()}
    results = [json.loads(p.read_text()) for p in (base / "slurm" / "results").glob("*.json")]
    assert {r["run"]["sandbox"]["mechanism"] for r in results} == {"bubblewrap"}
    graded_by = collections.Counter(r["run"]["slurm_job_id"] for r in results)
    print(f"results by Slurm job: {dict(graded_by)}")
    assert len(graded_by) == 2  # both jobs graded
    assert slurm_daemons.jobs(slurm, ordinary_account.pw_name) == []  # cancelled when the batch ended


def test_a_worker_job_cancelled_mid_batch_loses_and_duplicates_nothing(slurm, ordinary_account, batch):
    base, grade = batch
    out = base / "out"
    command = [*grade, "--out", str(out), "--slurm", "2"]
    env = {"HOME": ordinary_account.pw_dir, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", **slurm,
           **JOB_SETTINGS}
    process = subprocess.Popen(command, cwd=Path(__file__).resolve().parent.parent, env=env,
                               user=ordinary_account.pw_uid, group=ordinary_account.pw_gid, extra_groups=[],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while len(slurm_daemons.jobs(slurm, ordinary_account.pw_name)) < 2 or not list(out.glob("results/*.json")):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.5)
    victim = slurm_daemons.jobs(slurm, ordinary_account.pw_name)[0]
    recorded_before = len(list(out.glob("results/*.json")))
    subprocess.run(["scancel", victim], env={**slurm}, check=True)  # as root: the site's admin, or walltime
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 1, stdout + stderr
    results = {p.stem: json.loads(p.read_text()) for p in (out / "results").glob("*.json")}
    assert {name: (r["status"], r["score"]) for name, r in results.items()} == \
        {name: expected for name, (_, expected) in SUBMISSIONS.items()}  # one result each, none lost
    graded_by = collections.Counter(r["run"]["slurm_job_id"] for r in results.values() if "slurm_job_id" in r["run"])
    print(f"scancel {victim} with {recorded_before} of {len(SUBMISSIONS)} recorded; results by job: {dict(graded_by)}")
    assert recorded_before < len(SUBMISSIONS)  # it was cancelled mid-batch
    assert victim not in slurm_daemons.jobs(slurm, ordinary_account.pw_name)
    from grading.course import gradebook
    from harness.spec import load_spec

    spec = load_spec(base / "tiny")
    with gradebook(out / "course") as gb:
        assert sorted(s.student_id for s in gb.assignment_submissions(spec.id)) == sorted(SUBMISSIONS)
