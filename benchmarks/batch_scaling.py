"""Batch grading on 2 local workers against 1, measured side by side in one run.

8 copies of the `shapes_params` example `correct.ipynb` (a small CNN: notebook run, torch.export, measuring
process, 14 graded items) are graded by `dlgrade grade` with --workers 1, then --workers 2, each into a fresh
output directory (course released beforehand, outside the timed region), 1 CPU thread per worker. The wall time
covers the whole batch: workers grading and the coordinator writing the gradebook, feedback pages and results.
Usage: python benchmarks/batch_scaling.py [ROUNDS]   (markdown on stdout; `make bench` writes batch_scaling.md)
"""
from __future__ import annotations

import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from grading.batch import grade_batch
from grading.course import release
from harness.spec import ASSIGNMENTS_DIR, load_spec

SUBMISSIONS = 8


def cpu_seconds() -> float:
    """CPU time of this process and of every finished descendant (workers, runners, kernels, measuring processes)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def timed_batch(spec, submissions: Path, course_template: Path, work: Path, workers: int) -> tuple[float, float]:
    """(wall s, CPU s) of one batch."""
    out = Path(tempfile.mkdtemp(prefix=f"w{workers}-", dir=work))
    shutil.copytree(course_template, out / "course")
    started, cpu = time.monotonic(), cpu_seconds()
    report = grade_batch(spec, submissions, out, workers=workers, threads=1, progress=False)
    wall = time.monotonic() - started
    assert [r["score"] for r in report.graded] == [14.0] * SUBMISSIONS, [r["status"] for r in report.graded]
    return wall, cpu_seconds() - cpu


def main(rounds: int = 1) -> None:
    spec = load_spec("shapes_params")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        submissions = work / "submissions"
        submissions.mkdir()
        for i in range(SUBMISSIONS):
            shutil.copy(ASSIGNMENTS_DIR / "shapes_params" / "submissions" / "correct.ipynb",
                        submissions / f"student{i}.ipynb")
        release(spec, work / "course")
        timed_batch(spec, submissions, work / "course", work, 2)  # warm-up: file cache, kernelspec, imports
        one, two = [], []  # (wall, cpu) per round
        for _ in range(rounds):
            one.append(timed_batch(spec, submissions, work / "course", work, 1))
            two.append(timed_batch(spec, submissions, work / "course", work, 2))
    best_one, best_two = min(w for w, _ in one), min(w for w, _ in two)
    print("# Batch scaling: `dlgrade grade` with 2 local workers vs 1\n")
    print(f"{SUBMISSIONS} submissions (shapes_params/correct.ipynb), 1 thread per worker; "
          f"{platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores, Python "
          f"{platform.python_version()}; best of {rounds} round(s), interleaved. CPU = this process + every finished "
          "descendant; cores busy = CPU / wall.\n")
    print("| workers | wall s (each round) | per submission s | CPU s per submission | cores busy |\n|---|---|---|---|---|")
    for workers, runs in ((1, one), (2, two)):
        wall, cpu = min(runs)
        print(f"| {workers} | {', '.join(f'{w:.1f}' for w, _ in runs)} | {wall / SUBMISSIONS:.2f} | "
              f"{cpu / SUBMISSIONS:.2f} | {cpu / wall:.2f} |")
    print(f"\n**speed-up 2 workers / 1 worker: {best_one / best_two:.2f}x** (target >= 1.8x)")
    one_busy = min(one)[1] / min(one)[0]
    print(f"\nCeiling on this machine: one worker already keeps {one_busy:.2f} of the 2 cores busy (its measuring "
          f"process warms up while the notebook runs), so 2 workers can gain at most 2 / {one_busy:.2f} = "
          f"{2 / one_busy:.2f}x.")

if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
