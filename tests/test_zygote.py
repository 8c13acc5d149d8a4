"""The helper zygotes (measuring process, notebook runner): one warm process per grading thread, a fresh child per job,
and neither a job's crash nor the zygote's death loses a later job."""
from __future__ import annotations

import nbformat
import psutil
import pytest
import torch
from torch import nn

from harness import measuring_process, zygote
from harness.errors import MeasureError
from harness.execute import RUNNER, Sandbox, execute
from harness.export import export_model
from harness.limits import Limits
from harness.prepare import inject_parameters


@pytest.fixture
def model_pt2(tmp_path):
    program = export_model(nn.Sequential(nn.Flatten(), nn.Linear(12, 3)), torch.randn(2, 3, 4))
    torch.export.save(program, tmp_path / "model.pt2")
    return tmp_path / "model.pt2"


def kill_and_wait(pid: int) -> None:
    process = psutil.Process(pid)
    process.kill()
    process.wait(timeout=10)  # reaped by its Zygote's Popen, or gone


def measure(path, tmp_path, timeout_s=60.0):
    return measuring_process.measure(path, (3, 4), timeout_s, threads=1, workdir=tmp_path)


def test_one_zygote_measures_many_models_each_in_a_fresh_child(model_pt2, tmp_path):
    first = measure(model_pt2, tmp_path)
    pid = zygote.shared(measuring_process.MODULE).pid
    (tmp_path / "crafted.pt2").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(MeasureError, match="could not be loaded as an exported program"):
        measure(tmp_path / "crafted.pt2", tmp_path)
    with pytest.raises(MeasureError, match=r"the measuring process died \(exit code 1\): FileNotFoundError"):
        measuring_process.measure(model_pt2, (3, 4), 60, threads=1, workdir=tmp_path / "missing")
    with pytest.raises(MeasureError, match="took longer than 0.01 s"):
        measure(model_pt2, tmp_path, timeout_s=0.01)
    assert measure(model_pt2, tmp_path) == first
    assert (first["params"], first["macs"]) == (39, 36)
    assert zygote.shared(measuring_process.MODULE).pid == pid  # neither the crash nor the timeout reached the zygote


def test_a_killed_measuring_zygote_is_started_again(model_pt2, tmp_path):
    measure(model_pt2, tmp_path)
    old = zygote.shared(measuring_process.MODULE).pid
    kill_and_wait(old)
    assert measure(model_pt2, tmp_path)["params"] == 39
    assert zygote.shared(measuring_process.MODULE).pid not in (None, old)


def test_a_killed_runner_zygote_is_started_again_for_the_next_notebook():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print(6 * 7)")]
    nb = inject_parameters(nb, {}, "dlgrade")
    runs = []
    for _ in range(2):
        box = Sandbox.create()
        try:
            report = execute(nb, box, Limits(threads=1), "dlgrade")
        finally:
            box.remove()
        runs.append((report.outcome, report.notebook.cells[-1].outputs[0]["text"]))
        kill_and_wait(zygote.shared(RUNNER).pid)
    assert runs == [("completed", "42\n")] * 2
