"""Zygotes: long-lived helper processes that import once and fork a fresh child for every job.

The grading path starts two helpers per grading thread: the notebook runner (`harness.kernel_runner`, papermill and
jupyter_client imported) and the measuring process (`harness.measuring_process`, torch, fvcore and torch.export warmed
up).
Starting them afresh for every submission cost ~1.5 s and ~3.5 s of CPU; a zygote pays that once and forks a child
per job, so every job still starts from the same clean state and a job's crash never reaches the zygote.

Fork safety (docs/gpu.md): a zygote must not initialise the CUDA driver, or every child it forks fails its first CUDA
call ("initialization error"). torch.export's fake tensors ask `torch.cuda.is_available()` while the zygote warms up;
torch's default answer calls `cuInit`, and a "no" makes them ask the driver for its device count (another `cuInit`).
So a zygote asks NVML instead (`PYTORCH_NVML_BASED_CUDA_CHECK=1`) and sees GPU 0 alone, NVML's own index, whenever
the grader may use a GPU (torch's NVML check cannot read MIG UUIDs and would fall back to `cuInit`); each forked child
gets the grader's `CUDA_VISIBLE_DEVICES` back before it does anything. GPU work happens only in a measuring child, in
the kernel the runner execs, and in the reference's own training. Where no GPU is visible, torch may still call
`cuInit` in the zygote (on a machine with a driver); its children then never use CUDA. `tests/test_fork_safety.py`
proves it with a fake libcuda.so.1 that records who calls `cuInit`.

Protocol: one JSON object per line, requests on the zygote's stdin, messages back on its stdout. Children get
/dev/null for both (the protocol is the zygote's alone). Zygote and children die with their parent (Linux
PR_SET_PDEATHSIG), so killing a grader or a worker takes every helper with it.
"""
from __future__ import annotations

import atexit
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable

from harness.processes import die_with_parent, scrubbed_env

STARTUP_GRACE_S = 120.0  # the first job may wait for the zygote's imports and warm-up
CHILD_GPUS = "DLGRADE_CHILD_CUDA_VISIBLE_DEVICES"  # the grader's CUDA_VISIBLE_DEVICES, for the children (absent: unset)


class ZygoteDied(Exception):
    """The helper process ended; the message carries the end of its stderr.

    Internal only, outside the DlgradeError family on purpose: the execute and measure steps catch it where it is
    raised and turn it into the submission's outcome (kernel_died, measure_failed); it never reaches a caller."""


# zygote side -----------------------------------------------------------------------------------------------------

def serve(handle: Callable[[dict, Callable[[dict], None]], None], warm_up: Callable[[], None] | None = None) -> int:
    """Warm up, then read requests until stdin closes; `handle(request, reply)` answers each with messages."""
    die_with_parent()
    show_torch_gpu_0_only()
    if warm_up:
        warm_up()

    def reply(message: dict) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    while line := sys.stdin.readline():
        handle(json.loads(line), reply)
    return 0


def fork(child: Callable[[], int]) -> int:
    """Fork a child that runs `child()` and exits with its return code (1 and a traceback on stderr if it raises)."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        die_with_parent()
        restore_gpus()
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        code = child()
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def read_until_eof(fd: int, timeout_s: float | None = None) -> tuple[bytes, bool]:
    """Everything written to pipe `fd` until every writer closed it, or (what came so far, True) at the timeout."""
    chunks = []
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector, os.fdopen(fd, "rb", buffering=0) as pipe:
        selector.register(pipe, selectors.EVENT_READ)
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return b"".join(chunks), True
            if selector.select(left):
                block = pipe.read(1 << 16)
                if not block:
                    return b"".join(chunks), False
                chunks.append(block)


def exit_reason(status: int) -> str:
    """A waitpid status in words: 'killed by SIGSEGV', 'exit code 1'."""
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


def show_torch_gpu_0_only() -> None:
    """In a zygote, before it warms up: torch's availability check goes through NVML and sees one GPU (NVML's
    index 0) whenever this process may use any, none otherwise (see the module docstring)."""
    from harness.devices import visible_gpus

    if "CUDA_VISIBLE_DEVICES" in os.environ:
        os.environ[CHILD_GPUS] = os.environ["CUDA_VISIBLE_DEVICES"]
    os.environ["CUDA_VISIBLE_DEVICES"] = "0" if visible_gpus() else ""
    os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"


def restore_gpus() -> None:
    """In a forked child: the GPUs the grader may use again (the driver reads CUDA_VISIBLE_DEVICES at cuInit)."""
    gpus = os.environ.pop(CHILD_GPUS, None)
    if gpus is None:
        os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    else:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus


# grader side -----------------------------------------------------------------------------------------------------

class Zygote:
    """Grader side of `python -m MODULE`: a scrubbed environment, started on first use, restarted after it died."""

    def __init__(self, module: str):
        self.module = module
        self._proc: subprocess.Popen | None = None
        self._home: str | None = None
        self._stderr = None
        self._pending = b""

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self.close()
        self._home = tempfile.mkdtemp(prefix="dlgrade-zygote-")
        self._stderr = tempfile.TemporaryFile()
        env = scrubbed_env(self._home, self._home, threads=1)  # 1 thread: no thread pool exists when it forks
        self._proc = subprocess.Popen([sys.executable, "-m", self.module], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=self._stderr, env=env, cwd=self._home,
                                      start_new_session=True)

    def send(self, request: dict) -> None:
        self.start()
        try:
            self._proc.stdin.write((json.dumps(request) + "\n").encode())
            self._proc.stdin.flush()
        except BrokenPipeError:
            pass  # it died: the next receive() says why

    def receive(self, timeout_s: float) -> dict | None:
        """The next message, or None if none came within the timeout. Raises ZygoteDied if the process ended."""
        deadline = time.monotonic() + timeout_s
        with selectors.DefaultSelector() as selector:
            selector.register(self._proc.stdout, selectors.EVENT_READ)
            while b"\n" not in self._pending:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    return None
                block = os.read(self._proc.stdout.fileno(), 1 << 16)
                if not block:
                    why = self._stderr_tail()
                    self.close()
                    raise ZygoteDied(why)
                self._pending += block
        line, self._pending = self._pending.split(b"\n", 1)
        return json.loads(line)

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").strip()[-1000:]

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
            self._proc = None
        self._pending = b""
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        if self._home is not None:
            shutil.rmtree(self._home, ignore_errors=True)
            self._home = None


_per_thread = threading.local()


def shared(module: str) -> Zygote:
    """This thread's zygote of `module` (one per thread: a zygote dies with the thread that started it)."""
    if getattr(_per_thread, "pid", None) != os.getpid():
        _per_thread.pid, _per_thread.zygotes = os.getpid(), {}
    if module not in _per_thread.zygotes:
        zygote = _per_thread.zygotes[module] = Zygote(module)
        atexit.register(zygote.close)
    return _per_thread.zygotes[module]
