"""The kernel's bubblewrap sandbox (harness/bubblewrap.py): the exact command line, and what a kernel inside it can
reach (the hostile matrix runs inside it too, as an ordinary account: tests/test_hostile.py)."""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import bubblewrap
from harness.bubblewrap import LIMIT_THEN_EXEC, kernel_command


def test_only_the_system_what_the_kernel_runs_and_its_run_are_bound(tmp_path, monkeypatch):
    (tmp_path / "usr").mkdir()
    (tmp_path / "bin").symlink_to("usr/bin")
    monkeypatch.setattr(bubblewrap, "SYSTEM_DIRS", (str(tmp_path / "usr"), str(tmp_path / "bin"),
                                                    str(tmp_path / "lib32")))  # lib32: absent, skipped
    venv = tmp_path / "venv"
    hidden_dir = venv / "assignment"
    hidden_dir.mkdir(parents=True)
    hidden_file = venv / "digits.csv.gz"
    hidden_file.write_text("labels")
    run = "/tmp/dlgrade-run-x"
    command = kernel_command("/usr/bin/bwrap", ["python", "-m", "ipykernel_launcher", "-f", "k.json"], run,
                             [str(hidden_dir), str(hidden_file), str(venv / "absent"), str(tmp_path / "gradebook")],
                             64, ["/opt/python", str(venv)])
    assert command == [
        "/usr/bin/bwrap", "--tmpfs", "/tmp",
        "--ro-bind", f"{tmp_path}/usr", f"{tmp_path}/usr", "--symlink", "usr/bin", f"{tmp_path}/bin",
        "--ro-bind", "/opt/python", "/opt/python", "--ro-bind", str(venv), str(venv),
        "--dev", "/dev", "--proc", "/proc",
        "--bind", f"{run}/work", f"{run}/work", "--bind", f"{run}/out", f"{run}/out",
        "--bind", f"{run}/home", f"{run}/home", "--bind", f"{run}/tmp", f"{run}/tmp",
        "--bind", f"{run}/runtime", f"{run}/runtime", "--ro-bind", f"{run}/data", f"{run}/data",
        "--tmpfs", str(hidden_dir), "--remount-ro", str(hidden_dir),
        "--ro-bind", "/dev/null", str(hidden_file), "--remount-ro", "/tmp", "--remount-ro", "/",
        "--unshare-all", "--die-with-parent", "--new-session", "--unsetenv", "JPY_PARENT_PID",
        "--chdir", f"{run}/work", "--", sys.executable, "-c", LIMIT_THEN_EXEC, "64",
        "python", "-m", "ipykernel_launcher", "-f", "k.json"]


def test_the_kernel_needs_the_interpreter_the_venv_and_dlgrades_packages():
    needs = bubblewrap.kernel_needs()
    root = bubblewrap.os.path.dirname(bubblewrap.os.path.dirname(bubblewrap.__file__))
    assert f"{root}/harness" in needs and f"{root}/reference" in needs
    assert root not in needs  # the checkout itself (assignments, course directories) stays out
    assert sys.prefix in needs and bubblewrap.os.path.realpath(sys.base_prefix) in needs


PROBE = """
import os, socket, sys
def listing(path):
    try:
        return sorted(os.listdir(path))
    except OSError as exc:
        return type(exc).__name__
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
    network = "connected"
except OSError as exc:
    network = type(exc).__name__
def write(path):
    try:
        open(path, "w").write("x")
        return "written"
    except OSError as exc:
        return exc.strerror
print(repr({"home": listing(sys.argv[2]), "run": listing(sys.argv[3]), "tmp": listing("/tmp"),
            "bound": listing(sys.argv[7]),
            "writes": [write(p) for p in ("/gradebook.db", "/tmp/x", sys.argv[5] + "/x", sys.argv[6] + "/x")],
            "hidden": listing(sys.argv[4]), "network": network, "pid": os.getpid()}))
"""


@pytest.mark.skipif(bubblewrap.bwrap_path()[0] is None, reason="bubblewrap cannot run here")
def test_inside_the_grader_files_other_runs_and_the_network_are_out_of_reach(tmp_path):
    """A real bwrap: the grader's home and sibling run directories are not there, the mask is empty, only the run's
    writable directories take writes, a server on the grader's loopback is unreachable, and the process is pid 2
    of its own PID namespace."""
    import socket

    run = tmp_path / "dlgrade-run-a"
    for sub in (*bubblewrap.WRITABLE, "data"):
        (run / sub).mkdir(parents=True)
    (tmp_path / "dlgrade-run-b").mkdir()  # another student's run
    course = tmp_path / "course"  # bound (like the venv), with a masked directory in it
    hidden = course / "assignment"
    hidden.mkdir(parents=True)
    (hidden / "solution.ipynb").write_text("{}")
    (course / "notes.txt").write_text("bound, under /tmp like a checkout can be")
    home = tmp_path / "grader-home"
    (home / ".ssh").mkdir(parents=True)
    server = socket.create_server(("127.0.0.1", 0))
    argv = [sys.executable, "-c", PROBE, str(server.getsockname()[1]), str(home), str(tmp_path), str(hidden),
            str(run / "work"), str(run / "data"), str(course)]
    needs = [*bubblewrap.kernel_needs(), str(course)]
    command = kernel_command(bubblewrap.bwrap_path()[0], argv, str(run), [str(hidden)], 64, needs)
    seen = ast.literal_eval(subprocess.run(command, capture_output=True, text=True, check=True, timeout=60).stdout)
    server.close()
    # the ways down to what is bound under /tmp: the run, and the checkout when it lies there (a CI clone)
    tmp = sorted({Path(p).relative_to("/tmp").parts[0] for p in (run, *needs) if Path(p).is_relative_to("/tmp")})
    assert seen == {"home": "FileNotFoundError", "run": ["course", "dlgrade-run-a"], "tmp": tmp, "hidden": [],
                    "bound": ["assignment", "notes.txt"],
                    "writes": ["Read-only file system", "Read-only file system", "written", "Read-only file system"],
                    "network": "ConnectionRefusedError", "pid": 2}


@pytest.mark.slow
def test_an_ordinary_user_without_bubblewrap_is_refused_unless_no_sandbox(ordinary_account):
    """Not root and no bwrap on PATH: `dlgrade grade` refuses before grading anything; with --no-sandbox it grades
    and the result records that no sandbox held."""
    import json

    import nbformat

    from tests.accounts import account_directory, run_as
    from tests.conftest import MODEL, TOML, notebook

    base = account_directory(ordinary_account)
    try:
        assignment, submissions, out = base / "tiny", base / "submissions", base / "out"
        for directory in (assignment, submissions):
            directory.mkdir()
        (assignment / "assignment.toml").write_text(TOML.format(timeout_s=120, cell_timeout_s=60, memory_gb=2))
        nbformat.write(notebook([MODEL]), assignment / "tiny.ipynb")
        nbformat.write(notebook([MODEL]), submissions / "alice.ipynb")
        for path in (base, *base.rglob("*")):
            os.chown(path, ordinary_account.pw_uid, ordinary_account.pw_gid)
        venv_bin = Path(sys.executable).parent
        grade = [str(venv_bin / "dlgrade"), "grade", str(assignment), str(submissions), "--out", str(out),
                 "--no-progress"]
        refused = run_as(ordinary_account, grade, env={"PATH": str(venv_bin)})  # no bwrap on it
        assert refused.returncode == 2, refused.stderr
        assert "cannot be sandboxed" in refused.stderr and "the grader is not root, and bubblewrap is not " \
            "installed" in refused.stderr and "--no-sandbox" in refused.stderr, refused.stderr
        assert not out.exists()  # nothing graded, nothing written
        graded = run_as(ordinary_account, [*grade, "--no-sandbox"], env={"PATH": str(venv_bin)})
        assert graded.returncode == 0, graded.stdout + graded.stderr
        result = json.loads((out / "results" / "alice.json").read_text())
        assert (result["status"], result["score"], result["run"]["sandbox"]["mechanism"]) == ("graded", 3.0, "none")
        assert any(note.startswith("graded without a sandbox") for note in result["run"]["notes"])
    finally:
        shutil.rmtree(base, ignore_errors=True)
