"""GPUs as this process may use them, found without ever initialising the CUDA driver.

Fork safety by construction: a process that has called `cuInit` (which `torch.cuda.is_available()`,
`device_count()` and any CUDA tensor do) hands a broken driver state to every child it forks, whose first CUDA call
then fails with "initialization error". The grader's long-lived processes (the coordinator, the local workers' fork
server and workers, the measuring zygote) fork per job, so they ask NVML, which the driver ships as a separate
library with no such state: `visible_gpus()` and `pick_device()` never touch CUDA. Only a forked measuring child, the
student's kernel (exec'd) and the reference's own training use CUDA itself.

`CUDA_VISIBLE_DEVICES` is kept exactly as the scheduler set it (Slurm's "2,3", MIG or GPU UUIDs): a worker is pinned
to one of its entries, never to a physical index of its own choosing.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass

NO_GPU_VALUES = {"", "-1", "NoDevFiles", "none"}  # values of CUDA_VISIBLE_DEVICES that hide every GPU


@dataclass(frozen=True)
class GpuInfo:
    """What run{} records about the GPU a run used (from NVML, without touching CUDA)."""

    name: str
    uuid: str
    memory_gb: float
    driver: str
    cuda_driver: str  # the newest CUDA version the driver supports, e.g. "13.0"


@functools.lru_cache(maxsize=1)
def _nvml():
    """The initialised pynvml module, or None when there is no NVIDIA driver (no library, no device nodes)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception:  # ImportError, NVMLError_LibraryNotFound, NVMLError_DriverNotLoaded, ...
        return None


def nvml_device_count() -> int:
    nvml = _nvml()
    if nvml is None:
        return 0
    try:
        return nvml.nvmlDeviceGetCount()
    except nvml.NVMLError:
        return 0


def parse_visible_devices(value: str | None, physical_count: int) -> list[str]:
    """The entries of a `CUDA_VISIBLE_DEVICES` value, as given (indices or UUIDs); unset means every device of the
    machine (NVML indices). Like CUDA, parsing stops at the first entry that names no device (e.g. "0,-1,1" is "0")."""
    if value is None:
        return [str(i) for i in range(physical_count)]
    if value.strip() in NO_GPU_VALUES:
        return []
    entries = []
    for entry in (e.strip() for e in value.split(",")):
        if not entry or entry.startswith("-"):
            break
        if entry.isdigit() and int(entry) >= physical_count:
            break
        entries.append(entry)
    return entries


def visible_gpus() -> list[str]:
    """The GPUs this process may use, each as `CUDA_VISIBLE_DEVICES` names it. [] without a driver."""
    count = nvml_device_count()
    return parse_visible_devices(os.environ.get("CUDA_VISIBLE_DEVICES"), count) if count else []


def pick_device() -> str:
    """"cuda" when this process sees a GPU, else "cpu"; never initialises CUDA (see the module's docstring)."""
    return "cuda" if visible_gpus() else "cpu"


def nvml_handle(entry: str):
    """NVML's handle of a GPU named as `CUDA_VISIBLE_DEVICES` names it: an index is the physical index, a UUID
    (GPU-…, MIG-…) is looked up. Raises NVMLError; needs a driver (`_nvml()` not None)."""
    nvml = _nvml()
    return nvml.nvmlDeviceGetHandleByIndex(int(entry)) if entry.isdigit() else nvml.nvmlDeviceGetHandleByUUID(entry)


def gpu_sharing(device: str, runs_per_gpu: int | None) -> int | None:
    """How many runs share a run's GPU (recorded as run.runs_per_gpu, part of the calibration key); None on the CPU."""
    return (runs_per_gpu or 1) if device == "cuda" else None


def gpu_info(entry: str | None = None) -> GpuInfo | None:
    """NVML's description of a visible GPU (the first one by default)."""
    nvml = _nvml()
    visible = visible_gpus()
    if nvml is None or not visible:
        return None
    entry = entry if entry is not None else visible[0]
    try:
        handle = nvml_handle(entry)
        name = nvml.nvmlDeviceGetName(handle)
        cuda = nvml.nvmlSystemGetCudaDriverVersion_v2()
        return GpuInfo(name=name if isinstance(name, str) else name.decode(),
                       uuid=str(nvml.nvmlDeviceGetUUID(handle)),
                       memory_gb=round(nvml.nvmlDeviceGetMemoryInfo(handle).total / 1024**3, 1),
                       driver=str(nvml.nvmlSystemGetDriverVersion()),
                       cuda_driver=f"{cuda // 1000}.{cuda % 1000 // 10}")
    except nvml.NVMLError:
        return None


def worker_gpus(workers: int | None, runs_per_gpu: int | None, visible: list[str]) -> list[str | None]:
    """The GPU (a `CUDA_VISIBLE_DEVICES` entry) each of a batch's local workers is pinned to, None on a machine
    without GPUs. One run per GPU unless `runs_per_gpu` shares each on purpose; `workers` defaults to every visible
    GPU times `runs_per_gpu` (1 without GPUs). More workers than that would put two runs on one GPU unasked (time
    ratios that depend on the neighbour, one run's out-of-memory landing on another): refused."""
    from harness.errors import UsageError

    if not visible:
        return [None] * (workers or 1)
    share = runs_per_gpu or 1
    capacity = len(visible) * share
    workers = workers or capacity
    if workers > capacity:
        runs = f"{share} run{'s' if share > 1 else ''} per GPU"
        raise UsageError(f"--workers {workers} with {len(visible)} visible GPU{'s' if len(visible) > 1 else ''} "
                         f"({','.join(visible)}) and {runs} would put more runs on a GPU than asked: use --workers "
                         f"{capacity}, or --runs-per-gpu {-(-workers // len(visible))} to share each GPU on purpose "
                         "(time ratios then depend on the neighbouring runs, and are marked so)")
    return [visible[slot % len(visible)] for slot in range(workers)]
