"""Parent side of the execute step: run a prepared notebook in a sandbox and report what happened.

The notebook runs in `harness.kernel_runner` (papermill's client + a Jupyter kernel) in a fresh temporary directory,
in its own session, with a scrubbed environment. This process watches it:
- whole-run timeout: at the deadline the kernel is killed; the runner still reports the cells that ran;
- memory: resident memory of the whole process tree, polled (works with CUDA, unlike RLIMIT_AS);
- per-cell timeout: papermill's client (`timeout`) interrupts the cell;
- when the run ends, every process it started is killed (the runner is a child subreaper).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from harness.processes import kill_tree, tree_rss_bytes

POLL_S = 0.1
REPORT_GRACE_S = 15.0  # after killing the kernel, time the runner gets to send its report


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 600.0
    cell_timeout_s: float = 300.0
    memory_gb: float = 4.0
    start_timeout_s: float = 60.0
    measure_timeout_s: float = 120.0


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
        for sub in ("work", "out", "data", "home", "tmp"):
            (box.root / sub).mkdir()
        return box

    work = property(lambda self: self.root / "work")
    output_dir = property(lambda self: self.root / "out")
    data_dir = property(lambda self: self.root / "data")

    def env(self, threads: int) -> dict[str, str]:
        """A scrubbed environment: nothing of the grader's (tokens, paths to grading state) leaks in."""
        env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.root / "home"),
            "TMPDIR": str(self.root / "tmp"),
            "LANG": "C.UTF-8",
            "PYTHONNOUSERSITE": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "MPLBACKEND": "Agg",
            "DLGRADE_OUTPUT_DIR": str(self.output_dir),
        }
        if "CUDA_VISIBLE_DEVICES" in os.environ:  # the GPU this worker is pinned to
            env["CUDA_VISIBLE_DEVICES"] = os.environ["CUDA_VISIBLE_DEVICES"]
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
        return env

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class CellRun:
    index: int
    tags: list[str]
    state: str  # "executed" | "interrupted" | "not_run"
    duration_s: float | None
    error: dict | None = None  # {"ename", "evalue"} of the first error output
    exit_requested: bool = False  # sys.exit()/exit()/quit() in this cell


@dataclass
class ExecutionReport:
    outcome: str  # completed | timeout | cell_timeout | memory_limit | kernel_died | no_kernel | runner_failed
    message: str
    wall_s: float
    cells: list[CellRun] = field(default_factory=list)
    notebook: nbformat.NotebookNode | None = None
    peak_rss_gb: float = 0.0
    isolation: str = ""  # how masked paths were hidden from the kernel ("mount namespace", or "none: why")


def execute(nb: nbformat.NotebookNode, box: Sandbox, limits: Limits, kernel_name: str,
            threads: int, mask: list[Path] = ()) -> ExecutionReport:
    """Run `nb` in `box`; `mask` are paths (held-out data sources) the kernel must not be able to read."""
    read_fd, write_fd = os.pipe()
    stderr_path = box.root / "runner.stderr"
    started = time.monotonic()
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness.kernel_runner", str(write_fd)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr, cwd=box.work,
            env=box.env(threads), pass_fds=(write_fd,), start_new_session=True,
        )
    os.close(write_fd)
    chunks: list[bytes] = []
    reader = threading.Thread(target=_read_all, args=(read_fd, chunks), daemon=True)
    reader.start()
    try:
        job = {"notebook": nbformat.writes(nb), "kernel": kernel_name, "cell_timeout_s": limits.cell_timeout_s,
               "start_timeout_s": limits.start_timeout_s, "mask": [str(p) for p in mask]}
        proc.stdin.write(json.dumps(job).encode())
        proc.stdin.close()
        killed_for, peak = _watch(proc, limits, started)
        reader.join(timeout=REPORT_GRACE_S)
    finally:
        kill_tree(proc.pid)
        proc.wait()
    wall_s = time.monotonic() - started
    raw = b"".join(chunks)
    if not raw:
        tail = stderr_path.read_text(errors="replace")[-2000:]
        outcome = killed_for or "runner_failed"
        return ExecutionReport(outcome, _limit_message(killed_for, limits) or f"the notebook runner failed: {tail}",
                               wall_s, peak_rss_gb=peak)
    report = json.loads(raw)
    executed_nb = nbformat.reads(report["notebook"], as_version=4)
    outcome = killed_for or report["outcome"]
    message = _limit_message(killed_for, limits) or report["message"]
    return ExecutionReport(outcome, message, wall_s, _cell_runs(executed_nb, report), executed_nb, peak,
                           report["isolation"])


def _read_all(fd: int, chunks: list[bytes]) -> None:
    with os.fdopen(fd, "rb") as pipe:
        while block := pipe.read(1 << 16):
            chunks.append(block)


def _watch(proc: subprocess.Popen, limits: Limits, started: float) -> tuple[str | None, float]:
    """Wait for the runner; on a broken limit kill the kernel (not the runner, which then reports)."""
    deadline = started + limits.timeout_s
    memory_limit = limits.memory_gb * 1024**3
    peak = 0
    while proc.poll() is None:
        rss = tree_rss_bytes(proc.pid)
        peak = max(peak, rss)
        if rss > memory_limit or time.monotonic() > deadline:
            kill_tree(proc.pid, include_root=False)
            try:
                proc.wait(timeout=REPORT_GRACE_S)
            except subprocess.TimeoutExpired:
                pass
            return ("memory_limit" if rss > memory_limit else "timeout"), peak / 1024**3
        time.sleep(POLL_S)
    return None, peak / 1024**3


def _limit_message(killed_for: str | None, limits: Limits) -> str:
    if killed_for == "timeout":
        return f"the notebook did not finish within the whole-run limit of {limits.timeout_s:g} s"
    if killed_for == "memory_limit":
        return f"the notebook used more than the memory limit of {limits.memory_gb:g} GB"
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
        runs.append(CellRun(index, list(cell.metadata.get("tags", [])), state, duration, error, index in exits))
    return runs
