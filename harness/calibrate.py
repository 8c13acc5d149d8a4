"""Reference timing: run an assignment's reference solution through the grading path on this runner, cache its times.

The cache key is (device name, torch version, hash of the reference notebook, the grading parameters), so a
different GPU, torch or recipe is calibrated again, on demand. Cache: $DLGRADE_CACHE or ~/.cache/dlgrade.
"""
from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path

from harness.result import write_json_atomic
from harness.spec import AssignmentSpec


class CalibrationError(Exception):
    """The reference solution did not run cleanly; the message says why."""


def cache_dir() -> Path:
    return Path(os.environ.get("DLGRADE_CACHE", Path.home() / ".cache" / "dlgrade")) / "calibration"


def calibration_key(spec: AssignmentSpec, parameters: dict, device: str, torch_version: str) -> str:
    notebook_hash = hashlib.sha256(spec.reference_notebook.read_bytes()).hexdigest()
    blob = json.dumps({"assignment": spec.id, "notebook": notebook_hash, "parameters": parameters, "device": device,
                       "torch": torch_version}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def calibrate(spec: AssignmentSpec, parameters: dict, data_source: str | None = None) -> dict:
    """Run the reference solution now and cache its times (the `dlgrade calibrate` command)."""
    from harness.grade import grade_one

    if spec.reference_notebook is None:
        raise CalibrationError(f"assignment '{spec.id}' has no [timing] reference_notebook")
    result = grade_one(spec.reference_notebook, spec, overrides=parameters, data_source=data_source, timing=False,
                       submission="reference")
    if result.status != "graded":
        raise CalibrationError(f"the reference solution of '{spec.id}' did not run cleanly ({result.status}): "
                               f"{result.error['message'] if result.error else ''}")
    entry = {
        "assignment": spec.id,
        "parameters": parameters,
        "device": result.run["device"],
        "torch": result.run["torch"],
        "train_time_s": result.metrics["train_time_s"],
        "exec_time_s": result.metrics["exec_time_s"],
        "accuracy": result.metrics["accuracy"],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    key = calibration_key(spec, parameters, entry["device"], entry["torch"])
    write_json_atomic(cache_dir() / f"{key}.json", entry)
    return entry


def reference_times(spec: AssignmentSpec, parameters: dict, device: str, torch_version: str,
                    data_source: str | None = None) -> dict:
    """Cached reference times for these parameters on this runner, calibrating on demand."""
    path = cache_dir() / f"{calibration_key(spec, parameters, device, torch_version)}.json"
    if path.is_file():
        return json.loads(path.read_text())
    return calibrate(spec, parameters, data_source)
