"""Broken and hostile submissions (issue 7): the whole matrix graded in one `dlgrade grade` batch next to well-behaved
ones. Every submission gets exactly one recorded result with the expected status, score and a message a student can
act on; the grader survives; no grading state outside the new results changes (docs/security.md)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sys
import threading
from pathlib import Path

import nbformat
import pytest

from grading.batch import grade_batch
from grading.course import gradebook
from harness.spec import load_spec
from tests.conftest import notebook

pytestmark = pytest.mark.slow

MODEL = """\
import torch
from torch import nn
model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
with torch.no_grad():  # always class 0: a known accuracy (the share of zeros in the test split), above 0.05
    model[1].weight.zero_(); model[1].bias.zero_(); model[1].bias[0] = 1.0"""
SUBMIT = "import harness\nharness.submit(model, torch.randn(2, 3, 32, 32))"
TOML = """\
[assignment]
id = "hostile"
notebook = "hostile.ipynb"
input_shape = [3, 32, 32]

[parameters]
dataset = "digits32"

[limits]
timeout_s = 60
cell_timeout_s = 30
memory_gb = 1
measure_timeout_s = 30
max_processes = 64
max_file_mb = 50
max_output_mb = 1

[[checks]]
id = "params"
kind = "params"
points = 2
expected = 30730

[[checks]]
id = "output"
kind = "output_shape"
points = 1
expected = [10]

[[checks]]
id = "accuracy"
kind = "accuracy"
points = 2
threshold = 0.05
"""
BUSY_20S = "import time\nt = time.monotonic()\nwhile time.monotonic() - t < 20:\n    pass"  # < cell_timeout_s


def write_attempts(targets: dict[str, Path]) -> list[str]:
    """One cell per grading-state file the kernel tries to overwrite (each must raise)."""
    return [f"open({str(path)!r}, 'w').write('pwned')  # {what}" for what, path in targets.items()]


# how a write to grading state fails, by sandbox: the root one runs the kernel as a user without the right to write
# there; in bubblewrap those paths are not there at all, and everything outside the run is read-only
DENIED = {"root": {"absolute": "raised PermissionError", "relative": "raised PermissionError"},
          "bubblewrap": {"absolute": "raised FileNotFoundError", "relative": "raised OSError: [Errno 30] Read-only"}}


def expected_mechanism() -> str:
    return "root" if os.geteuid() == 0 and os.environ.get("DLGRADE_SANDBOX") != "bubblewrap" else "bubblewrap"


def cases(paths: dict[str, Path], port: int, mechanism: str) -> dict[str, tuple[list[str] | str, dict]]:
    """name -> (the notebook's cells, or a file's raw text; the expected recorded outcome)."""
    full = {"status": "graded", "score": 5.0}
    denied = DENIED[mechanism]
    return {
        "good_1": ([MODEL], full),
        "good_2": ([MODEL, "print('trained')"], full),
        "not_json": ("{not json", {"status": "invalid", "score": 0.0, "kind": "invalid_notebook",
                                   "says": "is not valid JSON"}),
        "json_not_notebook": ('{"a": 1}', {"status": "invalid", "score": 0.0, "kind": "invalid_notebook",
                                           "says": "is JSON but not a Jupyter notebook"}),
        "no_parameters_cell": ("no_parameters", {"status": "invalid", "score": 0.0, "kind": "invalid_notebook",
                                                 "says": "tagged 'parameters'"}),
        "syntax_error": ([MODEL.replace("nn.Sequential(", "nn.Sequential((")],
                         {"status": "failed", "score": 0.0, "kind": "cell_error",
                          "says": 'cell 2 ("import torch") raised SyntaxError', "cell": 1}),
        "exception_mid_notebook": ([MODEL, "raise ValueError('oops')", "x = 1"],
                                   {**full, "note": 'cell 3 ("raise ValueError(\'oops\')") raised ValueError: oops'}),
        "sys_exit": ([MODEL, "import sys\nsys.exit(0)"],
                     {"status": "failed", "score": 0.0, "kind": "stopped_early", "says": "calls sys.exit()",
                      "cell": 2}),
        "exit_builtin": ([MODEL, "exit()"],
                         {"status": "failed", "score": 0.0, "kind": "stopped_early", "says": "calls sys.exit()",
                          "cell": 2}),
        "os_exit": ([MODEL, "import os\nos._exit(1)"],
                    {"status": "crashed", "score": 0.0, "kind": "kernel_died", "says": "the Python kernel died",
                     "cell": 2}),
        "segfault": ([MODEL, "import ctypes\nctypes.string_at(0)"],
                     {"status": "crashed", "score": 0.0, "kind": "kernel_died", "says": "the Python kernel died",
                      "cell": 2}),
        "infinite_loop": ([MODEL, *[BUSY_20S] * 4],
                          {"status": "timeout", "score": 0.0, "kind": "timeout", "says": "whole-run limit of 60 s"}),
        "cell_past_timeout": ([MODEL, "import time\ntime.sleep(120)"],
                              {"status": "timeout", "score": 0.0, "kind": "cell_timeout",
                               "says": 'cell 3 ("import time")', "cell": 2}),
        "memory_bomb": ([MODEL, "hog = [bytearray(100 * 1024**2) for _ in range(40)]"],
                        {"status": "crashed", "score": 0.0, "kind": "memory_limit", "says": "memory limit of 1 GB",
                         "cell": 2}),
        "fork_bomb": ([MODEL, "import os, time\nwhile True:\n    if os.fork() == 0:\n        time.sleep(300)\n"
                              "        os._exit(0)"],
                      # fork fails at max_processes; its sleeping children still hold the limit, so the submit
                      # cell cannot start a thread: no model, and the message names the fork bomb's cell
                      {"status": "failed", "score": 0.0, "kind": "cell_error",
                       "says": 'cell 3 ("import os, time") raised BlockingIOError', "cell": 2}),
        "huge_file": ([MODEL, "open('big.bin', 'wb').write(b'x' * 60 * 1024**2)"],
                      {**full, "note": 'cell 3 ("open(\'big.bin\', \'wb\').write(b\'x\' * 60 * 1024**2)") '
                                       "raised OSError: [Errno 27] File too large"}),
        "output_flood": ([MODEL, "for _ in range(100):\n    print('x' * 1_000_000)"],
                         {**full, "note": "printed more than the 1 MB of output the grader keeps"}),
        "write_grading_state": ([MODEL, *write_attempts(paths)], {**full, "note": denied["absolute"]}),
        "write_relative_gradebook": ([MODEL, "open('../../../gradebook.db', 'w').write('pwned')"],
                                     {**full, "note": denied["relative"]}),
        "forge_result": ([MODEL, f"import json, os\nforged = {{'status': 'graded', 'score': 99.0}}\n"
                                 "open(os.path.join(output_dir, 'result.json'), 'w').write(json.dumps(forged))\n"
                                 f"open({str(paths['results'].parent / 'forged.json')!r}, 'w')"
                                 ".write(json.dumps(forged))"],
                         {**full, "note": denied["absolute"]}),
        "read_hidden": ([MODEL, "from sklearn.datasets import load_digits\nlabels = load_digits().target",
                         f"hidden_tests = open({str(paths['assignment notebook'])!r}).read()"],
                        {**full, "note": 'cell 3 ("from sklearn.datasets import load_digits") raised'}),
        "network": ([MODEL, f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3)",
                     "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=3)"],
                    {**full, "note": "raised ConnectionRefusedError"}),
        "patched_checker": ([MODEL.replace("32, 10)", "32, 7)"), "import harness.checks, harness.grade\n"
                             "harness.checks.run_check = lambda spec, evidence: None  # the grader's: elsewhere\n"
                             "harness.grade.MEASURED_METRICS = ()"],
                            {"status": "graded", "score": 0.0,
                             "check": ("output", "expected output shape [10], got [7]")}),
        "tampered_locked_cell": (([MODEL], "import harness\nfrom torch import nn\n"
                                           "harness.submit(nn.Linear(3072, 3), torch.randn(2, 3072))"), full),
        "nan_model": ([MODEL, "with torch.no_grad():\n    model[1].bias.fill_(float('nan'))"],
                      {"status": "graded", "score": 3.0, "check": ("accuracy", "NaN or infinite scores")}),
        "wrong_shape": ([MODEL.replace("32, 10)", "32, 7)")],
                        {"status": "graded", "score": 0.0, "check": ("output", "expected output shape [10], got [7]")}),
        "not_exportable": ([MODEL, "class Branchy(nn.Module):\n    def forward(self, x):\n"
                                   "        return x.flatten(1)[:, :10] if x.sum() > 0 else -x.flatten(1)[:, :10]\n"
                                   "model = Branchy()"],
                           {"status": "failed", "score": 0.0, "kind": "export_failed", "says": "torch.where"}),
        "slow_forward": ([MODEL, "class Slow(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                                 "        self.fc = nn.Linear(3072, 10)\n    def forward(self, x):\n"
                                 "        big = x.new_ones(4096, 4096)\n        for _ in range(100):\n"
                                 "            big = big @ big / 4096\n"
                                 "        return self.fc(x.flatten(1)) + big.sum() * 0\nmodel = Slow()"],
                         {"status": "failed", "score": 0.0, "kind": "measure_failed", "says": "took longer than 30 s"}),
        "crafted_model_file": ([MODEL, "torch.export.save = lambda program, f: open(f, 'wb').write(b'PK\\x03\\x04x')"],
                               {"status": "failed", "score": 0.0, "kind": "measure_failed",
                                "says": "could not be loaded as an exported program"}),
        "linked_model_file": ([MODEL, "import os\ntorch.export.save = lambda program, f: os.symlink("
                                      f"{str(paths['results'])!r}, f)"],
                              {"status": "failed", "score": 0.0, "kind": "not_a_file", "says": "not a regular file"}),
    }


def tree_digest(*roots: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for root in roots for p in sorted([root] if root.is_file() else root.rglob("*")) if p.is_file()}


@pytest.fixture
def listener():
    """A TCP server in the grader's network namespace, counting the connections it accepts."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def accept():
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1], accepted
    server.close()


def test_the_hostile_matrix_in_one_batch(tmp_path, listener):
    port, accepted = listener
    root = tmp_path / "hostile"
    root.mkdir()
    source = notebook([MODEL], submit=SUBMIT)
    nbformat.write(source, root / "hostile.ipynb")
    (root / "assignment.toml").write_text(TOML)
    spec = load_spec(root)
    submissions, out = tmp_path / "submissions", tmp_path / "out"
    submissions.mkdir()
    nbformat.write(notebook([MODEL], submit=SUBMIT), submissions / "alice.ipynb")
    first = grade_batch(spec, submissions, out, workers=2, progress=False)  # graded earlier: must not change
    assert [r["score"] for r in first.graded] == [5.0]
    paths = {"gradebook": first.course / "gradebook.db", "results": first.results_dir / "alice.json",
             "another student's submission": submissions / "alice.ipynb", "assignment notebook": root / "hostile.ipynb",
             "assignment spec": root / "assignment.toml"}
    mechanism = expected_mechanism()
    matrix = cases(paths, port, mechanism)
    assert len(matrix) >= 20
    for name, (content, _) in matrix.items():
        path = submissions / f"{name}.ipynb"
        if isinstance(content, str) and content == "no_parameters":
            nb = notebook([MODEL], submit=SUBMIT)
            nb.cells[0].metadata["tags"] = []
            nbformat.write(nb, path)
        elif isinstance(content, str):
            path.write_text(content)
        elif isinstance(content, tuple):  # (cells, a tampered submit cell)
            nbformat.write(notebook(content[0], submit=content[1]), path)
        else:
            nbformat.write(notebook(content, submit=SUBMIT), path)
    protected = [root, submissions / "alice.ipynb", first.results_dir / "alice.json", first.feedback_dir / "alice.html"]
    before = tree_digest(*protected)
    alice_in_gradebook = _gradebook_grades(spec, first.course)["alice"]
    assert [(name, auto) for name, auto, _, _ in alice_in_gradebook] == [("accuracy", 2.0), ("output", 1.0),
                                                                        ("params", 2.0)]

    report = grade_batch(spec, submissions, out, workers=2, progress=False)

    assert report.skipped == 1  # alice, recorded before
    results = {p.stem: json.loads(p.read_text()) for p in report.results_dir.glob("*.json")}
    assert sorted(results) == sorted([*matrix, "alice"])  # exactly one result each
    for name, (_, expected) in matrix.items():
        result = results[name]
        notes = result["run"]["notes"]
        where = f"{name}: {result['status']} {result['score']} {result['error']} {notes}"
        assert (result["status"], result["score"]) == (expected["status"], expected["score"]), where
        if "kind" in expected:
            assert result["error"]["kind"] == expected["kind"], where
            assert expected["says"] in result["error"]["message"], where
            if "cell" in expected:  # 0-based, in the submitted notebook (a whole-run timeout depends on speed)
                assert result["error"]["cell"] == expected["cell"], where
        else:
            assert result["error"] is None, where
        if "note" in expected:
            assert any(expected["note"] in note for note in notes), where
        if "check" in expected:
            check_id, says = expected["check"]
            assert says in next(c["message"] for c in result["checks"] if c["id"] == check_id), where
    for name in matrix:  # the recorded outcomes, for the log
        r = results[name]
        why = (r["error"] or {}).get("message") or "; ".join(r["run"]["notes"])
        print(f"{name:<26} {r['status']:<8} {r['score']:>4g}/{r['max_score']:g}  "
              f"{(r['error'] or {}).get('kind', '-'):<15} {why[:110]}")
    assert accepted == []  # no connection from any kernel
    assert tree_digest(*protected) == before  # sources, other students' files and results untouched
    assert _gradebook_grades(spec, report.course)["alice"] == alice_in_gradebook
    assert not (report.results_dir / "forged.json").exists()
    sandboxes = {json.dumps(r["run"]["sandbox"]) for r in results.values() if r["status"] != "invalid"}
    assert [json.loads(held)["mechanism"] for held in sandboxes] == [mechanism], sandboxes


def test_the_hostile_matrix_as_an_ordinary_account(ordinary_account):
    """The same matrix with the grader an unprivileged account (CI runs as root): its kernels are in bubblewrap,
    and every outcome, the untouched grading state and the unreached server included, is asserted as above."""
    from tests.accounts import account_directory, run_as

    base = account_directory(ordinary_account)
    try:
        run = run_as(ordinary_account, [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-s",
                                        "--basetemp", str(base / "pytest"),
                                        "tests/test_hostile.py::test_the_hostile_matrix_in_one_batch"])
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(run.stdout[-6000:])
    failure = "\n".join(line for line in run.stdout.splitlines() if line.startswith(("E ", ">")))  # pytest's own
    assert run.returncode == 0, (failure or run.stdout[-6000:]) + run.stderr[-3000:]
    assert "1 passed" in run.stdout


def _gradebook_grades(spec, course: Path) -> dict[str, list]:
    """student -> every grade of the submission (cell, auto score, manual score, max), as nbgrader stores it."""
    with gradebook(course) as gb:
        return {s.student_id: sorted((g.name, g.auto_score, g.manual_score, g.max_score)
                                     for nb in s.notebooks for g in nb.grades)
                for s in gb.assignment_submissions(spec.id)}
