"""[limits] of assignment.toml: what one run of a notebook may use (docs/security.md says what each one stops).

Apart from the sandbox (harness/execute.py) so that reading a spec, as the student's kernel does through
`harness.submit`, loads neither the sandbox modules nor psutil.
"""
from __future__ import annotations

from dataclasses import dataclass

# Threads of a CUDA kernel that can keep a core busy besides its `threads` compute threads: the thread waiting for the
# GPU spins (the CUDA runtime's default while it has a core to itself), PyTorch runs the backward pass of CUDA tensors
# in its own device thread, DataLoader's pin-memory thread copies batches. A 1-thread CUDA run can so use more than
# one CPU second per second, and RLIMIT_CPU = timeout x threads would kill it before its wall-clock timeout.
GPU_WAIT_THREADS = 2


@dataclass(frozen=True)
class Limits:
    """[limits] of assignment.toml (docs/security.md says what each one stops)."""

    timeout_s: float = 600.0  # whole run
    cell_timeout_s: float = 300.0
    memory_gb: float = 4.0  # resident memory of the kernel and everything it starts
    start_timeout_s: float = 60.0
    measure_timeout_s: float = 120.0
    max_processes: int = 256  # processes + threads of the kernel's own user (root graders only): fork bombs
    max_file_mb: float = 2048  # largest file the kernel may write
    max_output_mb: float = 20  # cell outputs kept in the executed notebook; later ones are dropped
    cpu_time_s: float | None = None  # CPU seconds per kernel process; default: cpu_seconds()
    # GPU memory of the kernel's process tree as the driver counts it (tensors, PyTorch's cache, CUDA contexts);
    # default none: a run has its GPU to itself (one run per GPU), where CUDA's own out-of-memory error is the limit
    gpu_memory_gb: float | None = None
    # CPU threads of the kernel (OMP/MKL, torch's intra-op pool) on every runner, whatever the worker count or
    # --threads: a float reduction's order depends on the thread count, so seeded training gives the same
    # model, and so the same verdict, only at a fixed count
    threads: int = 1

    def cpu_seconds(self, device: str = "cpu") -> int:
        """RLIMIT_CPU of each kernel process: `cpu_time_s`, or what its threads can use in the whole run (on CUDA,
        GPU_WAIT_THREADS more)."""
        if self.cpu_time_s is not None:
            return int(self.cpu_time_s) + 1
        busy_threads = max(1, self.threads) + (GPU_WAIT_THREADS if device.startswith("cuda") else 0)
        return int(self.timeout_s * busy_threads) + 1
