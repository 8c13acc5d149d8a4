"""The grading path end to end on tiny notebooks: real kernels, real sandbox, real measuring process."""
from __future__ import annotations

import dataclasses
import os
import time
import uuid

import psutil
import pytest

from harness.grade import grade_one
from tests.conftest import MODEL

pytestmark = pytest.mark.slow


def test_correct_notebook_gets_full_score(tiny):
    spec, write = tiny()
    result = grade_one(write([MODEL]), spec)
    assert (result.status, result.error, result.score, result.max_score) == ("graded", None, 3.0, 3.0)
    assert result.metrics["params"] == 490
    assert result.metrics["macs"] == 480
    assert result.metrics["activation_shapes"] == {"0": [48], "1": [10]}


def test_crash_before_the_model_names_the_cell(tiny):
    spec, write = tiny()
    result = grade_one(write(["import torch\nundefined_name"]), spec)
    assert result.status == "failed"
    assert result.error["kind"] == "cell_error"
    assert result.error["cell"] == 1
    assert result.error["message"].startswith(
        'cell 2 ("import torch") raised NameError: name \'undefined_name\' is not defined')


def test_deleted_submit_cell_is_no_submission(tiny):
    spec, write = tiny()
    result = grade_one(write([MODEL], submit=None), spec)
    assert (result.status, result.error["kind"]) == ("failed", "no_submission")
    assert "harness.submit" in result.error["message"]
    assert result.notes == ["locked cell 'submit' of the assignment is missing from this notebook"]


def test_no_process_of_the_run_outlives_it(tiny):
    spec, write = tiny()
    token = f"{uuid.uuid4().int % 10**6 + 10**6}"  # a sleep length no other process on the machine uses
    spawn = ("import subprocess, os\n"
             f"subprocess.Popen(['sleep', '{token}'], start_new_session=True)\n"
             "if os.fork() == 0:\n"
             f"    os.setsid(); os.execvp('sleep', ['sleep', '{token}'])")
    result = grade_one(write([MODEL, spawn]), spec)
    assert result.status == "graded"
    time.sleep(0.5)
    survivors = [p for p in psutil.process_iter(["cmdline"]) if token in (p.info["cmdline"] or [])]
    assert survivors == []


def test_kernel_environment_is_scrubbed(tiny, monkeypatch):
    monkeypatch.setenv("GRADER_SECRET_TOKEN", "s3cret")
    spec, write = tiny()
    probe = ("import os\n"
             "assert 'GRADER_SECRET_TOKEN' not in os.environ, 'leaked'\n"
             "assert os.environ['HOME'] != %r, 'real home'\n"
             "assert os.getcwd().endswith('/work'), os.getcwd()") % os.environ["HOME"]
    result = grade_one(write([MODEL, probe]), spec)
    assert (result.status, result.notes) == ("graded", [])


def test_train_time_is_the_sum_of_cells_tagged_train(tiny):
    spec, write = tiny()
    result = grade_one(write([MODEL, "import time; time.sleep(1.0)", "import time; time.sleep(0.5)"],
                             tags={1: ["train"], 2: ["train"]}), spec)
    assert result.status == "graded"
    assert 1.5 <= result.metrics["train_time_s"] < 2.5


def test_the_kernel_trains_with_the_assignments_threads_whatever_the_grader_has(tiny):
    """[limits] threads (default 1) pins the kernel's thread count; --threads only sets the measuring process."""
    spec, write = tiny()
    probe = "import torch\nassert torch.get_num_threads() == {n}, torch.get_num_threads()"
    result = grade_one(write([MODEL, probe.format(n=1)]), spec, threads=2)
    assert (result.status, result.notes) == ("graded", [])
    assert (result.run["threads"], result.run["measure_threads"]) == (1, 2)
    two = dataclasses.replace(spec, limits=dataclasses.replace(spec.limits, threads=2))
    result = grade_one(write([MODEL, probe.format(n=2)]), two, threads=1)
    assert (result.status, result.notes) == ("graded", [])
    assert (result.run["threads"], result.run["measure_threads"]) == (2, 1)
