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
import shutil
import sys
import tempfile
import time
from pathlib import Path

from grading.batch import grade_batch
from grading.course import release
from harness.spec import ASSIGNMENTS_DIR, load_spec

SUBMISSIONS = 8


def timed_batch(spec, submissions: Path, course_template: Path, work: Path, workers: int) -> float:
    out = Path(tempfile.mkdtemp(prefix=f"w{workers}-", dir=work))
    shutil.copytree(course_template, out / "course")
    started = time.monotonic()
    report = grade_batch(spec, submissions, out, workers=workers, threads=1, progress=False)
    wall = time.monotonic() - started
    assert [r["score"] for r in report.graded] == [14.0] * SUBMISSIONS, [r["status"] for r in report.graded]
    return wall


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
        one, two = [], []
        for _ in range(rounds):
            one.append(timed_batch(spec, submissions, work / "course", work, 1))
            two.append(timed_batch(spec, submissions, work / "course", work, 2))
    best_one, best_two = min(one), min(two)
    print("# Batch scaling: `dlgrade grade` with 2 local workers vs 1\n")
    print(f"{SUBMISSIONS} submissions (shapes_params/correct.ipynb), 1 thread per worker; {platform.processor() or platform.machine()}, "
          f"{len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}; best of {rounds} round(s), "
          "interleaved.\n")
    print("| workers | wall s (each round) | per submission s |\n|---|---|---|")
    print(f"| 1 | {', '.join(f'{t:.1f}' for t in one)} | {best_one / SUBMISSIONS:.2f} |")
    print(f"| 2 | {', '.join(f'{t:.1f}' for t in two)} | {best_two / SUBMISSIONS:.2f} |")
    print(f"\n**speed-up 2 workers / 1 worker: {best_one / best_two:.2f}x** (target >= 1.8x)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
