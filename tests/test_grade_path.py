"""The grading path end to end on tiny notebooks: real kernels, real sandbox, real measuring process."""
from __future__ import annotations

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


def test_sys_exit_zero_is_not_a_success(tiny):
    spec, write = tiny()
    result = grade_one(write(["import sys; sys.exit(0)", MODEL]), spec)
    assert result.status == "failed"
    assert result.error["kind"] == "stopped_early"
    assert result.error["cell"] == 1
    assert "stopped early" in result.error["message"]
    assert result.score == 0.0
    assert [c.passed for c in result.checks] == [False, False]


def test_exit_builtin_is_not_a_success(tiny):
    spec, write = tiny()
    result = grade_one(write([MODEL, "exit()"]), spec)
    assert (result.status, result.error["kind"], result.error["cell"]) == ("failed", "stopped_early", 2)


def test_error_in_a_middle_cell_does_not_stop_grading(tiny):
    spec, write = tiny()
    result = grade_one(write([MODEL, "1 / 0"]), spec)
    assert (result.status, result.score) == ("graded", 3.0)
    assert result.notes == ["cell 3 raised ZeroDivisionError: division by zero"]


def test_crash_before_the_model_names_the_cell(tiny):
    spec, write = tiny()
    result = grade_one(write(["import torch\nundefined_name"]), spec)
    assert result.status == "failed"
    assert result.error["kind"] == "cell_error"
    assert result.error["cell"] == 1
    assert result.error["message"].startswith("cell 2 raised NameError: name 'undefined_name' is not defined")


def test_deleted_submit_cell_is_no_submission(tiny):
    spec, write = tiny()
    result = grade_one(write([MODEL], submit=None), spec)
    assert (result.status, result.error["kind"]) == ("failed", "no_submission")
    assert "harness.submit" in result.error["message"]
    assert result.notes == ["locked cell 'submit' of the assignment is missing from this notebook"]


def test_locked_submit_cell_is_restored_from_the_assignment(tiny):
    spec, write = tiny()
    # the student edited the locked cell to submit a different model: the assignment's cell runs instead
    tampered = "import harness\nfrom torch import nn\nharness.submit(nn.Linear(48, 3), torch.randn(2, 48))"
    result = grade_one(write([MODEL], submit=tampered), spec)
    assert (result.status, result.score, result.metrics["params"]) == ("graded", 3.0, 490)


def test_data_dependent_model_gets_an_export_message(tiny):
    spec, write = tiny()
    model = MODEL + "\nclass Branchy(nn.Module):\n    def forward(self, x):\n        return x.flatten(1)[:, :10] if " \
                    "x.sum() > 0 else -x.flatten(1)[:, :10]\nmodel = Branchy()"
    result = grade_one(write([model]), spec)
    assert (result.status, result.error["kind"]) == ("failed", "export_failed")
    assert "torch.where" in result.error["message"]


def test_cell_timeout_is_a_timeout_naming_the_cell(tiny):
    spec, write = tiny(cell_timeout_s=3)
    result = grade_one(write([MODEL, "import time; time.sleep(60)"]), spec)
    assert (result.status, result.error["kind"], result.error["cell"]) == ("timeout", "cell_timeout", 2)
    assert result.run["wall_s"] < 30


def test_whole_run_timeout_stops_a_loop_spread_over_cells(tiny):
    spec, write = tiny(timeout_s=12, cell_timeout_s=60)
    sleepy = "import time\ntime.sleep(5)"
    result = grade_one(write([MODEL, sleepy, sleepy, sleepy, sleepy]), spec)
    assert (result.status, result.error["kind"]) == ("timeout", "timeout")
    assert "12 s" in result.error["message"]
    assert result.run["wall_s"] < 40


def test_kernel_death_is_a_crash(tiny):
    spec, write = tiny()
    result = grade_one(write([MODEL, "import os; os._exit(1)"]), spec)
    assert (result.status, result.error["kind"], result.error["cell"]) == ("crashed", "kernel_died", 2)


def test_memory_limit_counts_resident_memory(tiny):
    spec, write = tiny(memory_gb=1.5)
    result = grade_one(write([MODEL, "import numpy as np\nhog = np.ones(2 * 1024**3 // 8)"]), spec)
    assert (result.status, result.error["kind"], result.error["cell"]) == ("crashed", "memory_limit", 2)


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


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not valid JSON"),
    ('{"a": 1}', "is JSON but not a Jupyter notebook"),
])
def test_invalid_files_are_recorded_as_invalid(tiny, tmp_path, content, message):
    spec, _ = tiny()
    bad = tmp_path / "bad.ipynb"
    bad.write_text(content)
    result = grade_one(bad, spec)
    assert (result.status, result.error["kind"], result.score) == ("invalid", "invalid_notebook", 0.0)
    assert message in result.error["message"]


def test_notebook_without_parameters_cell_is_invalid(tiny, tmp_path):
    import nbformat

    spec, write = tiny()
    nb = nbformat.read(write([MODEL]), as_version=4)
    nb.cells[0].metadata["tags"] = []
    path = tmp_path / "noparams.ipynb"
    nbformat.write(nb, path)
    result = grade_one(path, spec)
    assert (result.status, result.error["kind"]) == ("invalid", "invalid_notebook")
    assert "tagged 'parameters'" in result.error["message"]
