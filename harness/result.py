"""Record step: the SubmissionResult of docs/architecture.md ("Contracts"), written atomically."""
from __future__ import annotations

import json
import os
import tempfile
import typing
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from harness.checks import CheckResult, not_graded
from harness.spec import AssignmentSpec

SCHEMA = 1
# The statuses of the contract (docs/architecture.md), defined here only: the JSON holds these strings.
Status = typing.Literal["graded", "failed", "timeout", "crashed", "invalid"]
STATUSES: tuple[Status, ...] = typing.get_args(Status)


@dataclass
class SubmissionResult:
    assignment: str
    submission: str
    status: Status
    error: dict | None  # {"kind", "message", "cell"}; cell = index in the submitted notebook, or None
    checks: list[CheckResult]
    metrics: dict
    run: dict  # {"wall_s", "device", "torch", "started", "threads", "sandbox"}
    notes: list[str] = field(default_factory=list)  # what the run noticed (cells that raised, dropped output...)
    executed: object = None  # the executed notebook (nbformat), for nbgrader's gradebook and feedback; not in JSON

    @classmethod
    def not_graded(cls, spec: AssignmentSpec, submission: str, status: Status, kind: str, message: str,
                   cell: int | None = None, checks: list[CheckResult] | None = None,
                   run: dict | None = None) -> SubmissionResult:
        """A submission that was not graded, and why: `error` {kind, message, cell}, empty metrics, and each check
        of the assignment "not graded: <message>" unless `checks` says otherwise (test cells that ran keep their
        points); `run` defaults to new_run(spec)."""
        checks = [not_graded(c, message) for c in spec.checks] if checks is None else checks
        return cls(spec.id, submission, status, {"kind": kind, "message": message, "cell": cell}, checks,
                   empty_metrics(), new_run(spec) if run is None else run)

    @property
    def score(self) -> float:
        return round(sum(c.points for c in self.checks), 4)

    @property
    def max_score(self) -> float:
        return round(sum(c.max_points for c in self.checks), 4)

    @property
    def full_marks(self) -> bool:
        return self.status == "graded" and all(c.passed for c in self.checks)

    def to_json(self) -> dict:
        return {
            "schema": SCHEMA,
            "assignment": self.assignment,
            "submission": self.submission,
            "status": self.status,
            "error": self.error,
            "score": self.score,
            "max_score": self.max_score,
            "checks": [asdict(c) for c in self.checks],
            "metrics": self.metrics,
            "run": {**self.run, "notes": self.notes},  # notes inside `run`: the contract's top-level keys are fixed
        }


def new_run(spec: AssignmentSpec, started: str | None = None) -> dict:
    """`run` of a result before the run: when it started (default: now, UTC) and the assignment's hash."""
    started = started or datetime.now(timezone.utc).isoformat(timespec="seconds")
    return {"wall_s": None, "device": None, "torch": None, "started": started, "assignment_hash": spec.hash}


def empty_metrics() -> dict:
    """The contract's metrics first, then additions: the training time charged (which time_ratio compares and the
    leaderboard ranks), latency, whole-notebook time and its ratio, CPU times and which time the ratios compare,
    and what the leaderboard's challenge score needs (architecture label, the weights w, their bits and sparsity); where
    latency was measured and the batch-N throughput beside it."""
    return {"params": None, "trainable_params": None, "macs": None, "accuracy": None,
            "train_time_s": None, "time_ratio": None, "activation_shapes": {}, "charged_train_s": None,
            "latency_ms": None, "exec_time_s": None, "exec_ratio": None, "reference_train_time_s": None,
            "train_cpu_s": None, "exec_cpu_s": None, "reference_train_cpu_s": None, "time_basis": None,
            "architecture": None, "weights": None, "weight_bits": None, "activation_bits": None,
            "structured_sparsity": None, "unstructured_sparsity": None, "latency_device": None,
            "throughput_per_s": None, "throughput_batch": None}


def write_json_atomic(path: Path, data: dict, mode: int = 0o600) -> None:
    """Write to a temporary file in the same directory, fsync, rename: readers never see half a file. `mode`: the
    file's permissions (default: its owner only, as a student's result should be)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
