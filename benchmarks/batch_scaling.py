"""Batch grading on 2 local workers against 1, measured side by side in one run.

Two workloads of 8 identical small submissions each, graded by `dlgrade grade` (grading.batch.grade_batch) with
--workers 1, then --workers 2, each into a fresh output directory (course released and reference calibrated
beforehand, outside the timed region), 1 CPU thread per worker:
- shapes_params/correct.ipynb: no training (a small CNN defined, exported and measured): the grading overhead;
- lab1_pytorch_intro/correct.ipynb: trains a small CNN on digits32 for 8 epochs, accuracy on the held-out split.
The wall time covers the whole batch: workers starting, grading, and the coordinator writing the gradebook, feedback
pages and results.
Usage: python benchmarks/batch_scaling.py [ROUNDS]   (markdown on stdout; `make bench` writes batch_scaling.md)
"""
from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil

from grading.batch import grade_batch
from grading.course import release
from harness.assets import prepare_assignment
from harness.spec import ASSIGNMENTS_DIR, load_spec

SUBMISSIONS = 8
WORKLOADS = ("shapes_params", "lab1_pytorch_intro")


def cpu_seconds() -> float:
    """Busy CPU time of the whole machine (quiet otherwise): workers fork from a fork server, not from this process,
    so this process's rusage cannot see them."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def timed_batch(spec, submissions: Path, course_template: Path, work: Path, workers: int) -> tuple[float, float]:
    """(wall s, CPU s) of one batch."""
    out = Path(tempfile.mkdtemp(prefix=f"w{workers}-", dir=work))
    shutil.copytree(course_template, out / "course")
    started, cpu = time.monotonic(), cpu_seconds()
    report = grade_batch(spec, submissions, out, workers=workers, threads=1, progress=False)
    wall = time.monotonic() - started
    full = [r["max_score"] for r in report.graded]
    assert [r["score"] for r in report.graded] == full, [(r["status"], r["score"]) for r in report.graded]
    return wall, cpu_seconds() - cpu


def measure_workload(assignment: str, rounds: int, work: Path) -> dict[int, list[tuple[float, float]]]:
    spec = load_spec(assignment)
    submissions = work / assignment / "submissions"
    submissions.mkdir(parents=True)
    for i in range(SUBMISSIONS):
        shutil.copy(ASSIGNMENTS_DIR / assignment / "submissions" / "correct.ipynb", submissions / f"student{i}.ipynb")
    course = work / assignment / "course"
    release(spec, course)
    if spec.reference_notebook is not None:
        prepare_assignment(spec)  # calibrates the reference (cached) before the timed batches
    timed_batch(spec, submissions, course, work, 2)  # warm-up: file cache, kernelspec, imports
    runs: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
    for _ in range(rounds):
        for workers in (1, 2):
            runs[workers].append(timed_batch(spec, submissions, course, work, workers))
    return runs


def main(rounds: int = 1) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        results = {assignment: measure_workload(assignment, rounds, Path(tmp)) for assignment in WORKLOADS}
    print("# Batch scaling: `dlgrade grade` with 2 local workers vs 1\n")
    print(f"{SUBMISSIONS} submissions per workload, 1 thread per worker; {platform.processor() or platform.machine()}, "
          f"{len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}; best of {rounds} round(s), "
          "1 and 2 workers interleaved. CPU = busy CPU time of the whole (otherwise quiet) machine; cores busy = CPU / "
          "wall.\n")
    print("| workload | workers | wall s (each round) | per submission s | CPU s per submission | cores busy |")
    print("|---|---|---|---|---|---|")
    for assignment, runs in results.items():
        for workers in (1, 2):
            wall, cpu = min(runs[workers])
            print(f"| {assignment} | {workers} | {', '.join(f'{w:.1f}' for w, _ in runs[workers])} | "
                  f"{wall / SUBMISSIONS:.2f} | {cpu / SUBMISSIONS:.2f} | {cpu / wall:.2f} |")
    print()
    for assignment, runs in results.items():
        (one, one_cpu), (two, two_cpu) = min(runs[1]), min(runs[2])
        print(f"- **{assignment}: speed-up 2 workers / 1 worker {one / two:.2f}x** (target >= 1.8x); one worker "
              f"keeps {one_cpu / one:.2f} cores busy, so 2 cores allow at most {2 * one / one_cpu:.2f}x at equal "
              f"CPU; 2 workers used {two_cpu / one_cpu:.2f}x the CPU of 1 (a second worker's two zygotes start, "
              "the coordinator's gradebook and feedback writes compete with the workers)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
