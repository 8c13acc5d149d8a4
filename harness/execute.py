"""Parent side of the execute step: run a prepared notebook in a sandbox and report what happened.

The notebook runs in a runner forked by this thread's `harness.kernel_runner` zygote (papermill's client + a Jupyter
kernel) in a fresh temporary directory, in its own session, with a scrubbed environment. This process watches it:
- whole-run timeout: at the deadline the kernel is killed; the runner still reports the cells that ran;
- memory: resident memory of the whole process tree, polled (works with CUDA, unlike RLIMIT_AS);
- GPU memory (CUDA runs): what NVML reports for the processes of the tree, polled the same way;
- per-cell timeout: papermill's client (`timeout`) interrupts the cell;
- when the run ends, every process it started is killed (the runner is a child subreaper).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from harness import bubblewrap, isolation, zygote
from harness.limits import Limits
from harness.processes import gpu_memory_by_pid, kill_tree, scrubbed_env, tree_gpu_bytes, tree_memory_bytes

RUNNER = "harness.kernel_runner"
POLL_S = 0.1
REPORT_GRACE_S = 15.0  # after killing the kernel, time the runner gets to send its report
GpuUsage = Callable[[], Mapping[int, int]]  # a reading of pid -> bytes of GPU memory (processes.gpu_memory_by_pid)


def cpu_threads(workers: int = 1) -> int:
    """Threads for one run when `workers` runs share this machine's cores (never oversubscribe; at least 1).
    Pinned explicitly so that timings and seeded CPU results do not depend on what else the machine runs."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // max(1, workers))


@dataclass
class Sandbox:
    """A fresh directory tree for one run. The kernel's working directory is `work`."""

    root: Path

    @classmethod
    def create(cls) -> "Sandbox":
        box = cls(Path(tempfile.mkdtemp(prefix="dlgrade-run-")))
        for sub in ("work", "out", "data", "home", "tmp", "runtime", "staging"):
            (box.root / sub).mkdir()
        return box

    def hand_over(self, uid: int) -> None:
        """Give the kernel's own user the directories it writes (work, out, home, tmp, its Jupyter runtime dir);
        data and the run's root stay the grader's: readable, not writable (the root is not even listable)."""
        self.root.chmod(0o711)
        for sub in ("work", "out", "home", "tmp", "runtime"):
            os.chown(self.root / sub, uid, uid)
            (self.root / sub).chmod(0o700)
        for path in (self.data_dir, *self.data_dir.rglob("*")):
            path.chmod(0o755 if path.is_dir() else 0o644)

    work = property(lambda self: self.root / "work")
    output_dir = property(lambda self: self.root / "out")
    data_dir = property(lambda self: self.root / "data")

    def env(self, threads: int) -> dict[str, str]:
        """The kernel's scrubbed environment, with its home, temp and output directories in the sandbox."""
        return {**scrubbed_env(self.root / "home", self.root / "tmp", threads), "MPLBACKEND": "Agg",
                "DLGRADE_OUTPUT_DIR": str(self.output_dir), "JUPYTER_RUNTIME_DIR": str(self.root / "runtime")}

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class CellRun:
    index: int
    tags: list[str]
    state: str  # "executed" | "interrupted" | "not_run"
    duration_s: float | None  # wall clock (papermill's metadata)
    cpu_s: float | None  # user + system CPU of the kernel's process tree while the cell ran (read from /proc)
    error: dict | None = None  # {"ename", "evalue"} of the first error output
    exit_requested: bool = False  # sys.exit()/exit()/quit() in this cell


@dataclass
class ExecutionReport:
    outcome: str  # completed | timeout | cell_timeout | memory_limit | gpu_memory_limit | kernel_died | no_kernel |
    #               runner_failed
    message: str
    wall_s: float
    cells: list[CellRun] = field(default_factory=list)
    notebook: nbformat.NotebookNode | None = None
    peak_rss_gb: float = 0.0
    peak_gpu_gb: float | None = None  # None: GPU memory not watched (not a CUDA run)
    sandbox: dict = field(default_factory=dict)  # {"mechanism", "mounts", "network", "user"}: kernel_runner.isolate
    output_truncated_cell: int | None = None  # where the outputs passed max_output_mb


def execute(nb: nbformat.NotebookNode, box: Sandbox, limits: Limits, kernel_name: str,
            mask: list[Path] = (), device: str = "cpu", gpu_usage: GpuUsage | None = None) -> ExecutionReport:
    """Run `nb` in `box` with `limits.threads` CPU threads; `mask` are paths (held-out data sources) the kernel must
    not be able to read (made absolute here: the runner masks them after changing to the run's directory). On a
    `device` "cuda" run, each cell's queued GPU work is waited for in that cell and the tree's GPU memory is watched
    through `gpu_usage` (default NVML; a test passes its own reading)."""
    if gpu_usage is None and device.startswith("cuda"):
        gpu_usage = gpu_memory_by_pid
    started = time.monotonic()
    stderr_path = box.root / "runner.stderr"
    runner = zygote.shared(RUNNER)
    mask = [os.path.abspath(p) for p in mask]
    how, _ = isolation.mechanism()
    uid = isolation.kernel_user() if how == "root" else None
    wrap = {"bwrap": bubblewrap.bwrap_path()[0], "run_root": str(box.root),
            "needs": bubblewrap.kernel_needs()} if how == "bubblewrap" else None
    if uid is not None:
        box.hand_over(uid)
    runner.send({"notebook": nbformat.writes(nb), "kernel": kernel_name, "cell_timeout_s": limits.cell_timeout_s,
                 "start_timeout_s": limits.start_timeout_s, "mask": mask,
                 "workdir": str(box.work), "env": box.env(limits.threads), "stderr": str(stderr_path),
                 "kernel_user": uid, "staging": str(box.root / "staging"), "max_processes": limits.max_processes,
                 "max_file_bytes": int(limits.max_file_mb * 1024**2), "cpu_time_s": limits.cpu_seconds(device),
                 "max_output_bytes": int(limits.max_output_mb * 1024**2), "sync_gpu": device.startswith("cuda"),
                 "bubblewrap": wrap})
    try:
        hello = runner.receive(zygote.STARTUP_GRACE_S)
        if hello is None:
            raise zygote.ZygoteDied("it did not answer")
        killed_for, peak, peak_gpu, ended = _watch(runner, hello["pid"], limits, started, gpu_usage)
    except zygote.ZygoteDied as exc:
        runner.close()
        return ExecutionReport("runner_failed", f"the notebook runner failed: {exc}", time.monotonic() - started)
    wall_s = time.monotonic() - started
    if not ended["report"]:
        tail = stderr_path.read_text(errors="replace")[-2000:] if stderr_path.exists() else ""
        outcome = killed_for or "runner_failed"
        message = (_limit_message(killed_for, limits, peak_gpu)
                   or f"the notebook runner failed ({ended['exit']}): {tail}")
        return ExecutionReport(outcome, message, wall_s, peak_rss_gb=peak, peak_gpu_gb=peak_gpu)
    report = json.loads(ended["report"])
    executed_nb = nbformat.reads(report["notebook"], as_version=4)
    outcome = killed_for or report["outcome"]
    message = _limit_message(killed_for, limits, peak_gpu) or report["message"]
    return ExecutionReport(outcome, message, wall_s, _cell_runs(executed_nb, report), executed_nb, peak, peak_gpu,
                           report["sandbox"], report["output_truncated_cell"])


def _watch(runner: zygote.Zygote, pid: int, limits: Limits, started: float,
           gpu_usage: GpuUsage | None) -> tuple[str | None, float, float | None, dict]:
    """Wait for the runner's end; on a broken limit kill the kernel (not the runner, which then reports).
    Returns (limit broken or None, peak memory GB, peak GPU memory GB or None when `gpu_usage` is None, the zygote's
    message about the runner's end)."""
    deadline = started + limits.timeout_s
    memory_limit = limits.memory_gb * 1024**3
    gpu_limit = float("inf") if limits.gpu_memory_gb is None else limits.gpu_memory_gb * 1024**3
    peak = peak_gpu = 0
    while (ended := runner.receive(POLL_S)) is None:
        used = tree_memory_bytes(pid)
        used_gpu = tree_gpu_bytes(pid, gpu_usage()) if gpu_usage is not None else 0
        peak, peak_gpu = max(peak, used), max(peak_gpu, used_gpu)
        broken = ("memory_limit" if used > memory_limit else "gpu_memory_limit" if used_gpu > gpu_limit else
                  "timeout" if time.monotonic() > deadline else None)
        if broken:
            kill_tree(pid, include_root=False)
            ended = runner.receive(REPORT_GRACE_S)
            if ended is None:  # the runner did not report in time: stop it too
                kill_tree(pid)
                ended = runner.receive(REPORT_GRACE_S)
            if ended is None:
                raise zygote.ZygoteDied("the runner could not be stopped")
            return broken, peak / 1024**3, _gb(peak_gpu, gpu_usage), ended
    return None, peak / 1024**3, _gb(peak_gpu, gpu_usage), ended


def _gb(used: int, gpu_usage: GpuUsage | None) -> float | None:
    return None if gpu_usage is None else round(used / 1024**3, 3)


def _limit_message(killed_for: str | None, limits: Limits, peak_gpu_gb: float | None = None) -> str:
    if killed_for == "timeout":
        return f"the notebook did not finish within the whole-run limit of {limits.timeout_s:g} s"
    if killed_for == "memory_limit":
        return f"the notebook used more than the memory limit of {limits.memory_gb:g} GB"
    if killed_for == "gpu_memory_limit":
        return (f"the notebook used {peak_gpu_gb:.2f} GB of GPU memory, over the limit of {limits.gpu_memory_gb:g} GB "
                "(as the driver counts it: tensors, PyTorch's cached blocks and the CUDA context)")
    return ""


def _cell_runs(nb: nbformat.NotebookNode, report: dict) -> list[CellRun]:
    executed = set(report["executed_cells"])
    exits = set(report["exit_cells"])
    runs = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if index in executed:
            state = "executed"
        elif index == report["interrupted_cell"]:
            state = "interrupted"
        else:
            state = "not_run"
        error = next(({"ename": o.get("ename", ""), "evalue": o.get("evalue", "")}
                      for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)
        if error and error["ename"] == "SystemExit":
            exits.add(index)
        duration = cell.metadata.get("papermill", {}).get("duration") if state == "executed" else None
        cpu = report["cpu_s"].get(str(index)) if state == "executed" else None  # JSON keys are strings
        runs.append(CellRun(index, list(cell.metadata.get("tags", [])), state, duration, cpu, error, index in exits))
    return runs
