"""Training time against the reference solution timed on the same runner (calibrate, cache, time_ratio)."""
from __future__ import annotations

import json

import pytest

from grading.cli import main
from harness.calibrate import cache_dir
from harness.grade import grade_one
from tests.conftest import MODEL

pytestmark = pytest.mark.slow

TIMING = """
[timing]
reference_notebook = "reference.ipynb"

[[checks]]
id = "speed"
kind = "time_ratio"
points = 1
budget = 1.5
"""
SLEEP_1 = "import time\ntime.sleep(1.0)"
SLEEP_2 = "import time\ntime.sleep(2.0)"


@pytest.fixture
def timed(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("DLGRADE_CACHE", str(tmp_path / "cache"))
    return tiny(extra_toml=TIMING, reference_cells=([MODEL, SLEEP_1], {1: ["train"]}))


def test_time_ratio_compares_train_cells_with_the_calibrated_reference(timed):
    spec, write = timed
    result = grade_one(write([MODEL, SLEEP_2], tags={1: ["train"]}), spec)
    assert result.status == "graded", result.error
    assert 1.8 <= result.metrics["time_ratio"] <= 2.2  # 2 s of training against 1 s, plus cell overheads
    assert 1.0 < result.metrics["exec_ratio"] < result.metrics["time_ratio"]
    speed = next(c for c in result.checks if c.id == "speed")
    assert (speed.passed, speed.points) == (False, 0.0)
    assert speed.message.startswith(f"training took {result.metrics['time_ratio']:.2f}x the reference's time")
    entries = list(cache_dir().glob("*.json"))
    assert len(entries) == 1
    assert 0.9 <= json.loads(entries[0].read_text())["train_time_s"] <= 1.3


def test_reference_times_are_cached_per_parameters(timed, capsys):
    spec, write = timed
    assert main(["calibrate", str(spec.root)]) == 0
    assert "train_time_s" in capsys.readouterr().out
    (entry,) = cache_dir().glob("*.json")
    created = json.loads(entry.read_text())["created"]
    grade_one(write([MODEL, SLEEP_1], tags={1: ["train"]}), spec)  # uses the cache: no new calibration
    assert [p.name for p in cache_dir().glob("*.json")] == [entry.name]
    assert json.loads(entry.read_text())["created"] == created
    grade_one(write([MODEL, SLEEP_1], tags={1: ["train"]}), spec, overrides={"seed": 1})  # other parameters
    assert len(list(cache_dir().glob("*.json"))) == 2


def test_training_hidden_in_untagged_cells_is_caught_by_exec_ratio(timed):
    spec, write = timed
    # a tiny tagged cell, the real work in an untagged one
    result = grade_one(write([MODEL, "x = 1", SLEEP_2 + "\ntime.sleep(2.0)"], tags={1: ["train"]}), spec)
    assert result.metrics["time_ratio"] < 0.1
    assert result.metrics["exec_ratio"] > 1.5
    speed = next(c for c in result.checks if c.id == "speed")
    assert not speed.passed and "the whole notebook took" in speed.message
