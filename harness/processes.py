"""Process-tree bookkeeping for the sandbox: memory (host and GPU), CPU time, killing every descendant, dying with the
parent."""
from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

import psutil

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def prctl(option: int, value: int) -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def scrubbed_env(home: str | Path, tmp: str | Path, threads: int) -> dict[str, str]:
    """The environment of every process the grader starts: nothing of the grader's own (tokens, paths to grading
    state) leaks in; only the GPU this worker is pinned to, the library path and a pinned CPU thread count."""
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "LANG": "C.UTF-8",
        # a user name without a passwd lookup: the kernel's own uid has no passwd entry, and torch 2.11 calls
        # getpass.getuser() when torch.export imports torch._dynamo (2.14 catches the KeyError; 2.11 fails the export)
        "USER": "dlgrade",
        "LOGNAME": "dlgrade",
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
    }
    # where the CUDA driver and toolkit libraries are: a cluster's `module load cuda`, Apptainer's --nv
    # (/.singularity.d/libs) put them only on LD_LIBRARY_PATH
    for name in ("CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def die_with_parent() -> None:
    """SIGKILL this process when the thread that started it exits (Linux; elsewhere a no-op)."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def tree(pid: int) -> list[psutil.Process]:
    """A process and all its descendants ([] once it has ended)."""
    try:
        return [psutil.Process(pid), *descendants(pid)]
    except psutil.NoSuchProcess:
        return []


def tree_memory_bytes(pid: int) -> int:
    """Memory of a process and all its descendants: the sum of their proportional set sizes (PSS), so pages they
    share (copy-on-write after fork, libraries) count once, not once per process as summed RSS would (64 forks of a
    torch kernel are not 64 x its memory). RSS where PSS cannot be read.

    Resident memory, not address space: CUDA reserves huge virtual ranges at initialisation, so RLIMIT_AS would break
    it, while resident memory is what actually exhausts the machine.
    """
    return sum(_pss_bytes(proc) for proc in tree(pid))


def tree_gpu_bytes(pid: int, usage: Mapping[int, int]) -> int:
    """GPU memory of a process and all its descendants, from `usage` (pid -> bytes, e.g. `gpu_memory_by_pid()`):
    processes of other runs or users on the same GPU are not counted."""
    return sum(usage.get(proc.pid, 0) for proc in tree(pid))


def gpu_memory_by_pid() -> dict[int, int]:
    """pid -> bytes of GPU memory that NVML reports for each compute process on the GPUs this process may use
    (`CUDA_VISIBLE_DEVICES`), summed over those GPUs; {} without a driver. Never initialises CUDA (harness.devices).

    What the driver counts: the tensors, PyTorch's cached blocks and the CUDA context (~0.3-0.5 GB per process).
    Caveats: NVML reports pids of the host's PID namespace, so in a container with its own PID namespace (docker
    without --pid=host) no pid matches the kernel's tree and nothing is counted; on MIG slices or without the
    permission to read other users' processes, used memory may be "not available" (None), counted as 0.
    """
    from harness import devices

    nvml = devices._nvml()
    usage: dict[int, int] = {}
    if nvml is None:
        return usage
    for entry in devices.visible_gpus():
        try:
            processes = nvml.nvmlDeviceGetComputeRunningProcesses(devices.nvml_handle(entry))  # the _v3 call
        except nvml.NVMLError:
            continue
        for proc in processes:
            usage[proc.pid] = usage.get(proc.pid, 0) + (proc.usedGpuMemory or 0)
    return usage


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by every descendant of `pid`, read from /proc by the caller, so the
    processes measured cannot change it: each live or zombie descendant's own time (all its threads, ended ones
    included) plus its children's that it waited for, plus the children `pid` itself waited for (the sandbox runner
    is a subreaper: the kernel's orphans end up there).

    Unlike wall time, this does not grow when other processes compete for the cores. A process that is reaped
    between the listing and the reading of its parent is missed; at cell boundaries the kernel is idle, so this
    costs at most the last few milliseconds of a child that ends exactly then.
    """
    try:
        own = psutil.Process(pid).cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    total = own.children_user + own.children_system
    for proc in descendants(pid):
        try:
            times = proc.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def _pss_bytes(proc: psutil.Process) -> int:
    try:
        with open(f"/proc/{proc.pid}/smaps_rollup", "rb") as rollup:
            for line in rollup:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return proc.memory_info().rss
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0


def kill_tree(pid: int, include_root: bool = True, rounds: int = 20) -> None:
    """SIGKILL every descendant of `pid` (repeatedly: a fork loop may race us), then `pid` itself.

    The sandbox runner is a child subreaper, so orphans of the kernel are re-parented to it and stay visible here.
    """
    for _ in range(rounds):
        procs = descendants(pid)
        if not procs:
            break
        for proc in procs:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=1)
    if include_root:
        try:
            root = psutil.Process(pid)
            root.kill()
            root.wait(timeout=5)
        except (psutil.NoSuchProcess, psutil.TimeoutExpired):
            pass
