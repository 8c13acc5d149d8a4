"""GPU limits and timing, proved on CPU: the GPU memory limit with a fake usage reading (NVML's place) and a real
kernel; the per-cell wait for queued GPU work with a fake `torch.cuda` in a real kernel; the CPU-time limit on CUDA."""
from __future__ import annotations

import os
import subprocess
import sys
import types

import pytest

from harness import devices
from harness.execute import Sandbox, execute
from harness.kernel_runner import GPU_SYNC
from harness.limits import Limits
from harness.prepare import inject_parameters
from harness.processes import gpu_memory_by_pid, tree_gpu_bytes
from tests.conftest import notebook

GB = 1024**3


def test_cpu_time_limit_leaves_room_for_gpu_waits_on_cuda():
    assert Limits(timeout_s=600, threads=1).cpu_seconds() == 601
    assert Limits(timeout_s=600, threads=1).cpu_seconds("cpu") == 601
    assert Limits(timeout_s=600, threads=1).cpu_seconds("cuda") == 1801  # timeout x (1 + 2 waiting threads) + 1
    assert Limits(timeout_s=100, threads=2).cpu_seconds("cuda") == 401
    assert Limits(timeout_s=600, threads=1, cpu_time_s=50).cpu_seconds("cuda") == 51  # an explicit limit is kept


def test_gpu_memory_counts_the_kernel_tree_only():
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        usage = {os.getpid(): 2 * GB, child.pid: 1 * GB, 1: 4 * GB}  # pid 1 (init): another user of the GPU
        assert tree_gpu_bytes(os.getpid(), usage) == 3 * GB
        assert tree_gpu_bytes(child.pid, usage) == 1 * GB
    finally:
        child.communicate(b"")
    assert tree_gpu_bytes(child.pid, usage) == 0  # an ended process uses nothing


class FakeNvml(types.SimpleNamespace):
    """pynvml's calls that gpu_memory_by_pid makes, on 3 GPUs: index 0, index 1 and GPU-b (index 2)."""

    class NVMLError(Exception):
        pass

    PROCESSES = {0: [(10, 5 * GB)], 1: [(11, 1 * GB), (12, None)], 2: [(11, 2 * GB)]}  # (pid, usedGpuMemory)

    def nvmlDeviceGetCount(self):
        return 3

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def nvmlDeviceGetHandleByUUID(self, uuid):
        if uuid != "GPU-b":
            raise self.NVMLError("not found")
        return 2

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [types.SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in self.PROCESSES[handle]]


def test_gpu_memory_by_pid_sums_the_visible_gpus_only(monkeypatch):
    monkeypatch.setattr(devices, "_nvml", FakeNvml)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,GPU-b")
    # GPU 0 is not visible; pid 11 uses two visible GPUs; pid 12's use is "not available" (MIG, permissions): 0
    assert gpu_memory_by_pid() == {11: 3 * GB, 12: 0}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpu_memory_by_pid() == {}


def test_gpu_memory_by_pid_without_a_driver_is_empty(monkeypatch):
    monkeypatch.setattr(devices, "_nvml", lambda: None)
    assert gpu_memory_by_pid() == {}


def run(cells: list[str], limits: Limits, device: str = "cpu", fake_usage=None):
    """Execute `cells` in a real kernel; `fake_usage(box)` gives the GPU usage reading that replaces NVML's."""
    nb = inject_parameters(notebook(cells, submit=None), {}, "dlgrade")
    box = Sandbox.create()
    try:
        return execute(nb, box, limits, "dlgrade", device=device,
                       gpu_usage=fake_usage(box) if fake_usage else None)
    finally:
        box.remove()


def usage_written_by_the_kernel(box: Sandbox):
    """A GPU usage reading (NVML's place) that reports what the kernel wrote to `gpu` in its working directory:
    "pid bytes"."""

    def reading():
        try:
            pid, used = (box.work / "gpu").read_text().split()
            return {int(pid): int(used)}
        except (OSError, ValueError):  # not written yet, or half written
            return {}

    return reading


@pytest.mark.slow  # a real kernel
def test_gpu_memory_over_the_limit_crashes_the_run_at_that_cell():
    use_3_gb = ("import os, time\nopen('gpu', 'w').write(f'{os.getpid()} {3 * 2**30}')\n"
                "time.sleep(30)")
    report = run(["x = 1", use_3_gb, "y = 2"], Limits(gpu_memory_gb=2, threads=1),
                 fake_usage=usage_written_by_the_kernel)
    assert report.outcome == "gpu_memory_limit"
    assert report.message == ("the notebook used 3.00 GB of GPU memory, over the limit of 2 GB (as the driver counts "
                              "it: tensors, PyTorch's cached blocks and the CUDA context)")
    assert report.peak_gpu_gb == 3.0
    assert [c.state for c in report.cells[-3:]] == ["executed", "interrupted", "not_run"]
    assert report.wall_s < 20  # killed at the next poll, not at the end of the sleep


@pytest.mark.slow  # a real kernel
def test_gpu_memory_under_the_limit_is_recorded_as_the_peak():
    use_1_gb = "import os\nopen('gpu', 'w').write(f'{os.getpid()} {2**30}')\nimport time\ntime.sleep(0.5)"
    report = run([use_1_gb], Limits(gpu_memory_gb=2, threads=1), fake_usage=usage_written_by_the_kernel)
    assert report.outcome == "completed"
    assert report.peak_gpu_gb == 1.0


# A fake torch whose CUDA queue holds 0.3 s of work: synchronize() spins on the CPU until it is done, as a CUDA wait
# does, and empties the queue. sys.modules is where the runner's GPU_SYNC looks for torch.
QUEUE_GPU_WORK = """import sys, time, types
queued = [0.3]
def synchronize(*args):
    started = time.process_time()
    while queued and time.process_time() - started < queued[0]:
        pass
    queued.clear()
sys.modules["torch"] = types.SimpleNamespace(cuda=types.SimpleNamespace(is_initialized=lambda: True,
                                                                        synchronize=synchronize))"""


@pytest.mark.slow  # a real kernel
def test_on_cuda_the_cell_that_queued_gpu_work_waits_for_it():
    report = run([QUEUE_GPU_WORK, "print(len(queued))"], Limits(threads=1), device="cuda")
    assert report.outcome == "completed", report.message
    queuing, next_cell = report.cells[-2:]
    assert queuing.duration_s >= 0.3 and queuing.cpu_s >= 0.3  # the wait (spinning) counts in the cell
    assert next_cell.duration_s < 0.3 and next_cell.cpu_s < 0.3  # and not in the next one
    assert report.notebook.cells[next_cell.index].outputs[0].text == "0\n"
    assert [c.error for c in report.cells] == [None] * len(report.cells)
    assert report.peak_gpu_gb == 0.0  # watched (NVML: no driver on this machine)


@pytest.mark.slow  # a real kernel
def test_on_cpu_no_gpu_wait_runs():
    report = run([QUEUE_GPU_WORK, "print(len(queued))"], Limits(threads=1), device="cpu")
    assert report.outcome == "completed", report.message
    queuing, next_cell = report.cells[-2:]
    assert queuing.duration_s < 0.3 and queuing.cpu_s < 0.3
    assert report.notebook.cells[next_cell.index].outputs[0].text == "1\n"  # synchronize never called
    assert report.peak_gpu_gb is None


@pytest.mark.slow  # a real kernel
def test_a_cuda_error_found_by_the_wait_is_the_error_of_the_cell_that_queued_the_work():
    failing = ("import sys, types\ndef synchronize(*args):\n    raise RuntimeError('CUDA error: device-side assert "
               "triggered')\nsys.modules['torch'] = types.SimpleNamespace(cuda=types.SimpleNamespace(\n"
               "    is_initialized=lambda: True, synchronize=synchronize))")
    report = run([failing, "sys.modules['torch'].cuda.synchronize = lambda: None"], Limits(threads=1),
                 device="cuda")
    assert report.outcome == "completed", report.message
    assert [c.error for c in report.cells[-2:]] == [
        {"ename": "RuntimeError", "evalue": "CUDA error: device-side assert triggered"}, None]


def test_the_gpu_wait_never_imports_torch_nor_initialises_cuda():
    check = f"import sys\n{GPU_SYNC}\nprint('torch' in sys.modules)\nimport torch\n{GPU_SYNC}\n" \
            "print(torch.cuda.is_initialized())"
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True).stdout
    assert out == "False\nFalse\n"


def test_gpu_memory_gb_is_an_optional_positive_limits_key():
    from harness.options import table_problems
    from harness.spec import TABLES

    assert Limits().gpu_memory_gb is None  # not limited: one run per GPU
    assert table_problems({"gpu_memory_gb": 8}, TABLES["limits"], "[limits]") == []
    assert table_problems({"gpu_memory_gb": 0}, TABLES["limits"], "[limits]") == [
        "[limits] gpu_memory_gb: must be above 0, got 0"]


@pytest.mark.slow  # a real kernel, through grade_one
def test_a_run_over_its_gpu_memory_limit_is_crashed_with_a_message_the_student_can_act_on(tiny, monkeypatch):
    import dataclasses

    from harness import grade

    spec, write = tiny()
    spec = dataclasses.replace(spec, limits=dataclasses.replace(spec.limits, gpu_memory_gb=2))
    monkeypatch.setattr(grade, "execute", lambda nb, box, *args, **kwargs: execute(
        nb, box, *args, **kwargs, gpu_usage=usage_written_by_the_kernel(box)))
    use_3_gb = "import os, time\nopen('gpu', 'w').write(f'{os.getpid()} {3 * 2**30}')\ntime.sleep(30)"
    result = grade.grade_one(write(["x = 1", use_3_gb]), spec)
    assert (result.status, result.error["kind"], result.error["cell"]) == ("crashed", "gpu_memory_limit", 2)
    assert result.error["message"] == (
        "the notebook used 3.00 GB of GPU memory, over the limit of 2 GB (as the driver counts it: tensors, "
        "PyTorch's cached blocks and the CUDA context) (while running cell 3 (\"import os, time\")): use smaller "
        "batches or a smaller "
        "model, and keep no tensors you no longer need (e.g. keep loss.item(), not loss)")
    assert result.run["gpu_peak_memory_gb"] == 3.0
    assert result.score == 0
