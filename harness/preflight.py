"""GPU preflight: before any student is graded, prove that a notebook kernel *in the real sandbox* (its user, its
namespaces, its scrubbed environment) can allocate on each GPU the runs will use.

The grader seeing a GPU is not enough: the kernel runs as its own user without supplementary groups (device nodes
`0660 root:video` are closed to it) and sees the sandbox's view of the file system. Then every notebook would
crash on its first CUDA call while `device = "cuda"` is injected into it. So each command that grades runs a
one-cell probe notebook through `harness.execute` first, and:

- `[runner] device = "cuda"` (the assignment needs a GPU): a failed probe refuses the command (exit 2), naming why;
- `"auto"` (the default): a failed probe falls back to CPU loudly (a warning now, a note in every result);
- `"cpu"`: GPUs are hidden from every run, no probe.

Falling back or hiding sets `CUDA_VISIBLE_DEVICES=""` in this process, so every run of the command (and the local
workers it starts) sees no GPU, and `DLGRADE_GPU_FALLBACK` carries the reason into each result's notes.
"""
from __future__ import annotations

import dataclasses
import os
import stat
import sys
from pathlib import Path

import nbformat

from harness import devices, isolation
from harness.errors import BadInput

FALLBACK_ENV = "DLGRADE_GPU_FALLBACK"
PROBE = """import torch
x = torch.ones(1024, device="cuda")
torch.cuda.synchronize()
print(torch.cuda.get_device_name(), float(x.sum()))"""


class GpuUnavailable(BadInput):
    """The assignment needs a GPU and a kernel in the sandbox cannot use one; the message says why."""


def prepare_device(spec) -> str:
    """The device of this command's runs ("cuda" or "cpu"), proven usable by a kernel in the sandbox. Call once per
    command, before any run and before local workers start (they inherit the decision)."""
    wanted = spec.device
    if wanted == "cpu":
        hide_gpus(None)
        return "cpu"
    gpus = devices.visible_gpus()
    if not gpus and wanted == "auto":
        return "cpu"
    problems = {gpu: kernel_gpu_problem(spec, gpu) for gpu in (gpus or [None])}
    failed = {gpu: problem for gpu, problem in problems.items() if problem}
    if not failed:
        return "cuda"
    reason = "; ".join(f"GPU {gpu}: {problem}" if gpu is not None else problem for gpu, problem in failed.items())
    if wanted == "cuda":
        raise GpuUnavailable(f"the assignment needs a GPU ([runner] device = \"cuda\" in assignment.toml) but a "
                             f"notebook kernel in the grading sandbox cannot use one: {reason}. Nothing was graded.")
    print(f"WARNING: grading on the CPU: a notebook kernel in the grading sandbox cannot use the GPU ({reason})",
          file=sys.stderr, flush=True)
    hide_gpus(f"graded on the CPU: the grader's GPU was not usable from the notebook's sandbox ({reason})")
    return "cpu"


def hide_gpus(reason: str | None) -> None:
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    if reason:
        os.environ[FALLBACK_ENV] = reason


def fallback_note() -> str | None:
    """The note every result of a command that fell back to the CPU carries."""
    return os.environ.get(FALLBACK_ENV) or None


def kernel_gpu_problem(spec, gpu: str | None) -> str | None:
    """None when a probe kernel, run exactly like a student's on `gpu` (a CUDA_VISIBLE_DEVICES entry; None: as this
    process sees them), allocated on it; else why not: the grader's diagnosis, then what the kernel said."""
    from harness.execute import Sandbox, execute
    from harness.prepare import inject_parameters

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(PROBE)])
    nb.metadata["kernelspec"] = {"name": spec.kernel, "display_name": spec.kernel, "language": "python"}
    limits = dataclasses.replace(spec.limits, timeout_s=180.0, cell_timeout_s=120.0, gpu_memory_gb=None)
    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    box = Sandbox.create()
    try:
        if gpu is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = gpu  # the probe's kernel inherits it, as a pinned worker's does
        report = execute(inject_parameters(nb, {}, spec.kernel), box, limits, spec.kernel, device="cuda")
    finally:
        box.remove()
        if saved is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved
    error = next((c.error for c in report.cells if c.error), None)
    if report.outcome == "completed" and error is None:
        return None
    said = f"{error['ename']}: {error['evalue'].strip().splitlines()[0] if error['evalue'].strip() else ''}" \
        if error else f"{report.outcome}: {report.message}"
    causes = diagnose(gpu, isolation.kernel_user())
    return "; ".join([*causes, f"the kernel's CUDA call failed with {said}"])


def diagnose(gpu: str | None, kernel_uid: int | None, dev: Path = Path("/dev")) -> list[str]:
    """What on this machine keeps a sandboxed kernel from the GPU, each cause with its fix (the grader's view)."""
    causes = []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") if gpu is None else gpu
    if visible is not None and not visible.strip():
        causes.append("CUDA_VISIBLE_DEVICES is empty: the scheduler gave this job no GPU")
    if devices.nvml_device_count() == 0:
        causes.append("no NVIDIA driver answers on this machine (NVML found no GPU)")
    if kernel_uid is not None:  # the kernel runs as its own user, with no supplementary groups
        for node in sorted(dev.glob("nvidia*")):
            if node.is_dir():
                continue
            mode = node.stat().st_mode
            if mode & (stat.S_IROTH | stat.S_IWOTH) != (stat.S_IROTH | stat.S_IWOTH):
                causes.append(f"{node} is {stat.filemode(mode)[1:]} ({oct(mode & 0o777)}): the kernel's own user "
                              f"(uid {kernel_uid}, no groups) cannot open it; make the NVIDIA device nodes "
                              "world read-writable (the driver's default, NVreg_DeviceFileMode=0666)")
    return causes
