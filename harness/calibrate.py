"""Reference timing: run an assignment's reference solution through the grading path on this runner, cache its times.

One calibration = `runs` runs of the reference solution (default 3, `[timing] runs`); the cached times (wall and CPU
time, of the train cells and of all cells) are their medians, so one run slowed by a neighbour does not set the bar.
The cache key is everything a time depends on: device name, torch version, CPU threads, the grading parameters, and
hashes of the reference notebook and of the reference recipe it imports (reference/train.py, reference/models).
Changing any of them calibrates again, on demand.
Cache: $DLGRADE_CACHE or ~/.cache/dlgrade.
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import json
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path

from harness.cache import cache_root, recipe_hash
from harness.errors import BadInput
from harness.grade import Assets, grade_one
from harness.result import write_json_atomic
from harness.spec import AssignmentSpec

TIMES = ("train_time_s", "exec_time_s", "train_cpu_s", "exec_cpu_s")  # wall and CPU, cached per calibration
ENTRY_VERSION = 2  # 2: CPU times recorded too; older entries lack them, so they are calibrated again


class CalibrationError(BadInput):
    """The reference solution did not run cleanly; the message says why."""


def cache_dir() -> Path:
    return cache_root() / "calibration"


def calibration_key(spec: AssignmentSpec, parameters: dict, device: str, torch_version: str, threads: int,
                    runs_per_gpu: int | None = None) -> str:
    sharing = {"runs_per_gpu": runs_per_gpu} if runs_per_gpu else {}  # GPU runs only; CPU keys stay as they were
    blob = json.dumps({"entry": ENTRY_VERSION, "assignment": spec.id, "parameters": parameters, "device": device,
                       "torch": torch_version, "threads": threads, **sharing,
                       "notebook": hashlib.sha256(spec.reference_notebook.read_bytes()).hexdigest(),
                       "recipe": recipe_hash()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def calibrate(spec: AssignmentSpec, parameters: dict, data_source: str | None = None, threads: int | None = None,
              runs: int | None = None, runs_per_gpu: int | None = None) -> dict:
    """Run the reference solution now, `runs` times, and cache the median times (the `dlgrade calibrate` command).
    On a GPU shared by `runs_per_gpu` runs, the reference runs that many at a time on this process's first GPU, so
    that it is timed under the same sharing as the students. The reference is graded like a student, with the same
    backbone and no reference times of its own to compare with."""
    from reference.backbones import ensure_backbone

    if spec.reference_notebook is None:
        raise CalibrationError(f"assignment '{spec.id}' has no [timing] reference_notebook")
    share = runs_per_gpu or 1
    runs = -(-(runs or spec.calibration_runs) // share) * share  # whole rounds: every run shares the GPU alike

    assets = Assets(backbone=ensure_backbone(spec.backbone) if spec.backbone else None)

    def run_reference(_):
        return grade_one(spec.reference_notebook, spec, overrides=parameters, data_source=data_source,
                         threads=threads, submission="reference", runs_per_gpu=runs_per_gpu, assets=assets)

    at_a_time = f", {share} at a time on one GPU" if share > 1 else ""
    plural = "s" if runs > 1 else ""
    print(f"calibrating '{spec.id}': timing its reference solution before grading ({runs} run{plural}{at_a_time}, "
          f"each as long as the whole reference notebook; once per runner, then cached in {cache_dir()}; "
          f"`dlgrade calibrate {spec.id}` does it ahead of time)", file=sys.stderr, flush=True)
    with concurrent.futures.ThreadPoolExecutor(share) as pool:
        futures = [pool.submit(run_reference, i) for i in range(runs)]
        for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
            run = future.result()
            print(f"  reference run {done}/{runs}: {run.status} in {run.run['wall_s']:.1f} s", file=sys.stderr,
                  flush=True)
        measured = [future.result() for future in futures]
    for result in measured:
        if result.status != "graded":
            raise CalibrationError(f"the reference solution of '{spec.id}' did not run cleanly ({result.status}): "
                                   f"{result.error['message'] if result.error else ''}")
    first = measured[0]
    entry = {
        "assignment": spec.id,
        "parameters": parameters,
        "device": first.run["device"],
        "torch": first.run["torch"],
        "threads": first.run["threads"],
        **{key: _median(r.metrics[key] for r in measured) for key in TIMES},
        "accuracy": first.metrics["accuracy"],
        "runs": [{key: r.metrics[key] for key in TIMES} for r in measured],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    sharing = first.run.get("runs_per_gpu")  # GPU runs only: what the students' runs look the entry up by
    if sharing:
        entry["runs_per_gpu"] = sharing
    key = calibration_key(spec, parameters, entry["device"], entry["torch"], entry["threads"], sharing)
    write_json_atomic(cache_dir() / f"{key}.json", entry, mode=0o664)  # a shared cache's group reads it
    return entry


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def reference_times(spec: AssignmentSpec, parameters: dict, device: str, torch_version: str, threads: int,
                    data_source: str | None = None, runs_per_gpu: int | None = None,
                    measure_threads: int | None = None) -> dict:
    """Cached reference times for these parameters on this runner (kernel `threads`, GPU sharing), calibrating on
    demand (`measure_threads`: the measuring process's threads while it does)."""
    path = cache_dir() / f"{calibration_key(spec, parameters, device, torch_version, threads, runs_per_gpu)}.json"
    if path.is_file():
        return json.loads(path.read_text())
    return calibrate(spec, parameters, data_source, measure_threads, runs_per_gpu=runs_per_gpu)
