"""The result contract built in one place: the statuses, and the one constructor of a result that was not graded."""
from __future__ import annotations

import concurrent.futures
import json
from pathlib import Path

import pytest

from grading.batch import Submission, _outcome
from grading.console import format_batch_summary
from harness.errors import SpecError
from harness.result import STATUSES, SubmissionResult, empty_metrics, write_json_atomic
from harness.spec import load_spec


@pytest.fixture(scope="module")
def spec():
    return load_spec("shapes_params")


def test_statuses_are_the_contract_strings():
    assert STATUSES == ("graded", "failed", "timeout", "crashed", "invalid")


def test_a_not_graded_result_has_its_error_empty_metrics_and_every_check_not_graded(spec):
    result = SubmissionResult.not_graded(spec, "alice", "crashed", "worker_failed", "the worker died",
                                         run={"wall_s": None, "device": None, "torch": None,
                                              "started": "2025-01-01T00:00:00+00:00", "assignment_hash": "abc"})
    data = result.to_json()
    assert (data["status"], data["error"], data["score"]) == (
        "crashed", {"kind": "worker_failed", "message": "the worker died", "cell": None}, 0.0)
    assert data["max_score"] == sum(c.points for c in spec.checks)
    assert [(c["id"], c["passed"], c["points"], c["message"]) for c in data["checks"]] == [
        (c.id, False, 0.0, "not graded: the worker died") for c in spec.checks]
    assert data["run"] == {"wall_s": None, "device": None, "torch": None, "started": "2025-01-01T00:00:00+00:00",
                           "assignment_hash": "abc", "notes": []}
    assert data["metrics"] == empty_metrics()


def test_a_not_graded_result_starts_its_run_now_with_the_assignment_hash(spec):
    run = SubmissionResult.not_graded(spec, "bob", "failed", "no_submission", "no model").run
    assert (run["assignment_hash"], run["wall_s"], run["started"][:2], run["started"][-6:]) == (
        spec.hash, None, "20", "+00:00")


def test_a_worker_that_died_is_recorded_as_a_crash_through_the_one_constructor(spec):
    future = concurrent.futures.Future()
    future.set_exception(RuntimeError("worker lost"))
    outcome = _outcome(future, spec, Submission("carol", Path("carol.ipynb"), "0" * 64))
    data = outcome["result"]
    assert list(outcome) == ["result", "executed"]
    assert (data["submission"], data["status"], data["error"]["kind"], outcome["executed"]) == (
        "carol", "crashed", "worker_failed", None)
    assert data["error"]["message"] == "the grading worker failed (RuntimeError: worker lost); grade it again"
    assert list(data) == ["schema", "assignment", "submission", "status", "error", "score", "max_score", "checks",
                          "metrics", "run"]
    assert list(data["run"]) == ["wall_s", "device", "torch", "started", "assignment_hash", "notes"]


def test_dlgrade_errors_of_a_worker_still_stop_the_batch(spec):
    future = concurrent.futures.Future()
    future.set_exception(SpecError("assignment.toml: broken"))
    with pytest.raises(SpecError):
        _outcome(future, spec, Submission("dave", Path("dave.ipynb"), "0" * 64))


def test_the_batch_summary_counts_every_status_in_contract_order():
    results = [{"status": s, "score": 0, "max_score": 1, "error": None} for s in ("invalid", "graded", "graded")]
    table = format_batch_summary(results, skipped=1).split("\n\n")[0].splitlines()
    assert [line.split()[0] for line in table[2:]] == [*STATUSES, "already"]
    assert [line.split()[-1] for line in table[2:]] == ["2", "0", "0", "0", "1", "1"]


def test_every_key_of_a_measured_profile_is_declared_in_the_profile_type():
    from harness.measure import profile_module
    from harness.profile import Profile
    from reference.models import build

    profile = profile_module(build("lenet_seed"), (1, 28, 28))
    declared = set(Profile.__annotations__)
    assert set(profile) <= declared
    assert declared - set(profile) == {"accuracy", "accuracy_error", "latency_ms", "latency_device",
                                       "throughput_per_s", "throughput_batch", "backbone", "notes"}  # with data only


def test_written_json_is_its_owners_unless_a_mode_shares_it(tmp_path):
    write_json_atomic(tmp_path / "alice.json", {"score": 1})
    write_json_atomic(tmp_path / "calibration.json", {"train_cpu_s": 1.0}, mode=0o664)
    assert (tmp_path / "alice.json").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "calibration.json").stat().st_mode & 0o777 == 0o664
    assert json.loads((tmp_path / "calibration.json").read_text()) == {"train_cpu_s": 1.0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alice.json", "calibration.json"]  # no temporary file
