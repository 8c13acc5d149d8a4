"""Stability of `time_ratio` on a busy machine: the same notebook graded 6 times in one batch.

`dlgrade grade` (grading.batch.grade_batch) with 2 local workers grades 6 copies of
lab1_pytorch_intro/submissions/correct.ipynb (8 epochs of a small CNN on digits32 in its `train` cell) while a third
process burns a core in a Python busy loop. The calibration cache is empty: the batch calibrates the reference
solution itself (3 runs, before the workers start), under the same busy loop, as an instructor's `dlgrade grade`
would. Two copies of the reference solution itself are graded in the same batch: their ratio would be 1.0 if the
calibration (the reference run alone) and the batch (2 workers) timed alike. Two ratios from the same results:
- wall: train_time_s / the reference's train_time_s, the `time_ratio` of main before CPU time was recorded;
- CPU: train_cpu_s / the reference's train_cpu_s (user + system CPU of the kernel's process tree in the train cells),
  the `time_ratio` on CPU runners since.
Spread = max / min over the 6 copies (target <= 1.15). The load average of the machine (other jobs included) is
printed before and after.
Usage: python benchmarks/timing_stability.py   (markdown on stdout; `make bench` writes timing_stability.md)
"""
from __future__ import annotations

import multiprocessing
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from grading.batch import grade_batch
from harness.spec import ASSIGNMENTS_DIR, load_spec

ASSIGNMENT, SUBMISSION, REFERENCE = "lab1_pytorch_intro", "correct.ipynb", "reference_solution.ipynb"
COPIES, REFERENCE_COPIES, WORKERS = 6, 2, 2


def burn() -> None:
    """The neighbour: a CPU-bound Python loop that never ends (terminated by the benchmark)."""
    x = 0
    while True:
        x = (x * 31 + 7) % 1_000_003


def load() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def ratio(result: dict, mine: str, reference: str) -> float | None:
    m = result["metrics"]
    return m[mine] / m[reference] if m.get(mine) is not None and m.get(reference) else None


def spread(values: list[float]) -> str:
    return f"{max(values) / min(values):.3f}" if values and min(values) > 0 else "n/a"


def graded_batch(work: Path) -> tuple[list[dict], float]:
    spec = load_spec(ASSIGNMENT)
    submissions = work / "submissions"
    submissions.mkdir()
    for i in range(COPIES):
        shutil.copy(ASSIGNMENTS_DIR / ASSIGNMENT / "submissions" / SUBMISSION, submissions / f"copy{i}.ipynb")
    for i in range(REFERENCE_COPIES):
        shutil.copy(ASSIGNMENTS_DIR / ASSIGNMENT / REFERENCE, submissions / f"reference{i}.ipynb")
    neighbour = multiprocessing.get_context("fork").Process(target=burn, daemon=True)
    neighbour.start()
    try:
        started = time.monotonic()
        report = grade_batch(spec, submissions, work / "out", workers=WORKERS, progress=False)
        return sorted(report.graded, key=lambda r: r["submission"]), time.monotonic() - started
    finally:
        neighbour.terminate()
        neighbour.join()


def main() -> None:
    before = load()
    with tempfile.TemporaryDirectory(prefix="dlgrade-timing-") as tmp:
        os.environ["DLGRADE_CACHE"] = str(Path(tmp) / "cache")  # calibrated by the batch, under the same load
        results, wall = graded_batch(Path(tmp))
    after = load()
    copies = [r for r in results if r["submission"].startswith("copy")]
    wall_ratios = [r for r in (ratio(x, "train_time_s", "reference_train_time_s") for x in copies) if r]
    cpu_ratios = [r for r in (ratio(x, "train_cpu_s", "reference_train_cpu_s") for x in copies) if r]
    first = results[0]["metrics"]
    print("# Timing stability: the same notebook graded 6 times in one loaded batch\n")
    print(f"{ASSIGNMENT}/{SUBMISSION} x {COPIES} (+ {REFERENCE} x {REFERENCE_COPIES}), `grade_batch` with "
          f"{WORKERS} local workers (1 CPU thread each) while a Python busy loop burns a core; the batch calibrates "
          "the reference itself (empty cache). "
          f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}. "
          f"Load average (1, 5, 15 min) before: {before}; after: {after}. Batch wall time {wall:.0f} s.\n")
    print(f"Reference (median of its calibration runs): train wall {first.get('reference_train_time_s')} s, "
          f"train CPU {first.get('reference_train_cpu_s', 'not recorded')} s; "
          f"`time_ratio` basis: {first.get('time_basis') or 'wall (not recorded)'}.\n")
    print("| copy | status | train wall s | train CPU s | wall ratio | CPU ratio | time_ratio |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        m = r["metrics"]
        cells = [m.get("train_time_s"), m.get("train_cpu_s"), ratio(r, "train_time_s", "reference_train_time_s"),
                 ratio(r, "train_cpu_s", "reference_train_cpu_s"), m.get("time_ratio")]
        print(f"| {r['submission']} | {r['status']} | " + " | ".join("" if v is None else f"{v:.3f}" for v in cells)
              + " |")
    print()
    for name, values in (("before: wall ratio (`time_ratio` up to commit 6df1678)", wall_ratios),
                         ("after: CPU ratio (`time_ratio` on CPU runners since)", cpu_ratios)):
        if values:
            print(f"- **{name}, {len(values)} copies: spread (max/min) {spread(values)}**, median "
                  f"{statistics.median(values):.3f}, range {min(values):.3f}-{max(values):.3f}")
        else:
            print(f"- {name}: not recorded")
    for name, mine, theirs in (("wall", "train_time_s", "reference_train_time_s"),
                               ("CPU", "train_cpu_s", "reference_train_cpu_s")):
        values = [ratio(r, mine, theirs) for r in results if r["submission"].startswith("reference")]
        if all(values):
            print(f"- the reference solution graded inside the batch, {name} ratio to its calibration (ideal 1.0): "
                  + ", ".join(f"{v:.3f}" for v in values))
    print("\nTarget: spread of `time_ratio` <= 1.15.")


if __name__ == "__main__":
    main()
