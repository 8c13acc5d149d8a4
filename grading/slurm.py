"""`dlgrade grade --slurm JOBS`: the batch's workers started as Slurm jobs (dask-jobqueue's SLURMCluster).

The coordinator (where `dlgrade grade` runs, e.g. a login node) starts a Dask scheduler, submits JOBS worker jobs
with `sbatch`, grades on them exactly as on any Dask cluster (grading/batch.py), and cancels them at the end. Each job
is one Dask worker with one task thread: one submission at a time, sandboxed on its node like a local run
(bubblewrap for an ordinary account). A job that ends mid-batch (scancel, walltime, a node failure) loses nothing:
Dask gives its task to another worker, and results are written by the coordinator alone.

Site settings (partition, account, walltime, GPUs, modules) come from dask-jobqueue's own configuration, the
`jobqueue.slurm` section (~/.config/dask/jobqueue.yaml or DASK_JOBQUEUE__SLURM__* variables: docs/instructor.md);
dlgrade fills in only what it must know and the site did not say.
"""
from __future__ import annotations

import sys
from pathlib import Path

from harness.spec import AssignmentSpec

MEASURING_GB = 2  # the measuring process and the worker itself, on top of the notebook's memory limit


def job_settings(spec: AssignmentSpec, log_directory: Path) -> dict:
    """SLURMCluster keyword arguments: one task thread per job, this venv's Python, memory and CPUs from the
    assignment's limits, job logs in the batch's output directory; any of them set in `jobqueue.slurm` wins."""
    import dask

    configured = dask.config.get("jobqueue.slurm")
    defaults = {"cores": 1, "processes": 1, "python": sys.executable,
                "memory": f"{spec.limits.memory_gb + MEASURING_GB:g}GB",
                "job_cpu": spec.limits.threads, "log_directory": str(log_directory)}
    return {key: value for key, value in defaults.items() if configured.get(key.replace("_", "-")) is None}


def start_cluster(spec: AssignmentSpec, jobs: int, out: Path):
    """A SLURMCluster asking for `jobs` worker jobs; the caller closes it (its jobs are then cancelled)."""
    from dask_jobqueue import SLURMCluster

    logs = out / "slurm-logs"
    logs.mkdir(parents=True, exist_ok=True)
    cluster = SLURMCluster(**job_settings(spec, logs))
    try:
        cluster.scale(jobs=jobs)
    except BaseException:
        cluster.close()
        raise
    return cluster
