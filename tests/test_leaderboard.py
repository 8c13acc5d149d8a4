"""Leaderboards: the course's challenge score, Pareto fronts, ranking rules, snapshots (hand-computed expectations)."""
from __future__ import annotations

import dataclasses
import json
import math

import pandas as pd
import pytest
import torch
from torch import nn

from grading.leaderboard import challenge_score, leaderboard_table, pareto_flags, pareto_ranks, write_leaderboard
from harness.export import export_model
from harness.measure import profile_module, profile_program
from harness.spec import LeaderboardSpec, load_spec
from reference.models import build

PROJECT = load_spec("project1_size_accuracy_time")


def test_resnet18_cifar_in_half_precision_scores_about_two():
    # 0.5 * 11,173,962 / 5.6e6 + 0.5 * 556,651,520 / 2.8e8 = 0.997675 + 0.994021
    assert challenge_score(11_173_962, 556_651_520, 16, 16) == pytest.approx(1.991696, abs=1e-6)
    assert challenge_score(11_173_962, 556_651_520, 32, 32) == pytest.approx(2 * 1.991696, abs=2e-6)


def test_the_score_of_resnet18_comes_out_of_the_measuring_path():
    model = build("resnet18").half()
    profile = profile_module(model, (3, 32, 32))
    assert (profile["params"], profile["macs"]) == (11_173_962, 556_651_520)
    assert (profile["weight_bits"], profile["activation_bits"]) == (16, 16)
    assert profile["structured_sparsity"] == 0.0
    score = challenge_score(profile["params"], profile["macs"], profile["weight_bits"], profile["activation_bits"],
                            profile["structured_sparsity"], profile["unstructured_sparsity"])
    # fresh BatchNorm biases are exactly zero (4,800), and a few weights round to zero in half precision
    zeros = sum(int((p == 0).sum()) for p in model.parameters())
    assert 4_800 <= zeros < 4_900
    assert profile["unstructured_sparsity"] == round(zeros / 11_173_962, 6)
    assert score == pytest.approx(1.991696 - 0.5 * zeros / 5.6e6, abs=1e-5)
    assert round(score, 1) == 2.0


def test_half_the_weights_zeroed_halves_the_weight_term():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 4, bias=False))
    with torch.no_grad():
        model[1].weight.view(-1)[::2] = 0  # two zeros in every row: unstructured, no row is all zero
    profile = profile_program(export_model(model.half(), torch.randn(2, 4)))
    assert (profile["params"], profile["macs"]) == (16, 16)
    assert (profile["unstructured_sparsity"], profile["structured_sparsity"]) == (0.5, 0.0)
    assert (profile["weight_bits"], profile["activation_bits"]) == (16, 16)
    expected = (1 - 0.5) * (16 / 32) * 16 / 5.6e6 + (16 / 32) * 16 / 2.8e8
    assert challenge_score(16, 16, 16, 16, 0.0, 0.5) == pytest.approx(expected, rel=1e-12)
    # the same zeros as whole rows are structured pruning: they also leave the MAC term
    with torch.no_grad():
        model[1].weight.fill_(1)
        model[1].weight[:2] = 0
    pruned = profile_program(export_model(model.float(), torch.randn(2, 4)))
    assert (pruned["structured_sparsity"], pruned["unstructured_sparsity"], pruned["weight_bits"]) == (0.5, 0.0, 32)
    assert challenge_score(16, 16, 32, 32, 0.5, 0.0) == pytest.approx(0.5 * 16 / 5.6e6 + 0.5 * 16 / 2.8e8)


SYNTHETIC = pd.DataFrame({
    "submission": ["a", "b", "c", "d", "e", "f"],
    "accuracy": [0.90, 0.95, 0.85, 0.95, 0.99, float("nan")],
    "params": [100, 200, 150, 300, 1000, 50],
    "macs": [1000, 900, 800, 5000, 9000, 10],
})


def test_pareto_flags_and_fronts_on_a_small_table():
    assert pareto_flags(SYNTHETIC, ["params"]).tolist() == [True, True, False, False, True, False]
    # c is dominated by a (less accurate, more params), d by b; f has no accuracy
    assert pareto_ranks(SYNTHETIC, ["params"]).tolist() == [1, 1, 2, 2, 1, pd.NA]
    # with MACs as well, c (fewest MACs after f) is no longer dominated
    assert pareto_flags(SYNTHETIC, ["params", "macs"]).tolist() == [True, True, True, False, True, False]


def result(name, status="graded", accuracy=0.95, params=1000, macs=10_000, train_time_s=1.0, bits=32):
    measured = status == "graded"
    return {"assignment": PROJECT.id, "submission": name, "status": status, "metrics": {
        "architecture": "Net" if measured else None, "params": params if measured else None,
        "macs": macs if measured else None, "accuracy": accuracy if measured else None,
        "train_time_s": train_time_s if measured else None, "time_ratio": None, "latency_ms": None,
        "weight_bits": bits if measured else None, "activation_bits": bits if measured else None,
        "structured_sparsity": 0.0 if measured else None, "unstructured_sparsity": 0.0 if measured else None}}


RESULTS = [result("big", accuracy=0.99, params=100_000, macs=1_000_000, train_time_s=9.0),
           result("small_half", accuracy=0.93, params=1000, macs=10_000, train_time_s=2.0, bits=16),
           result("below_gate", accuracy=0.80, params=10, macs=100, train_time_s=1.0),
           result("crashed", status="crashed"),
           result("dominated", accuracy=0.92, params=2000, macs=20_000, train_time_s=3.0)]


def test_challenge_ranking_puts_the_gate_first_and_failures_last():
    spec = dataclasses.replace(PROJECT, leaderboard=LeaderboardSpec("challenge", 0.90))
    table = leaderboard_table(spec, RESULTS)
    assert table["submission"].tolist() == ["small_half", "dominated", "big", "below_gate", "crashed"]
    assert table["rank"].tolist() == [1, 2, 3, 4, pd.NA]
    assert table["above_gate"].tolist() == [True, True, True, False, False]
    assert table.loc[0, "challenge_score"] == pytest.approx(0.5 * 1000 / 5.6e6 + 0.5 * 10_000 / 2.8e8)
    assert math.isnan(table.loc[4, "challenge_score"]) and table.loc[4, "status"] == "crashed"


def test_pareto_ranking_puts_the_non_dominated_first():
    spec = dataclasses.replace(PROJECT, leaderboard=LeaderboardSpec("pareto", 0.90))
    table = leaderboard_table(spec, RESULTS).set_index("submission")
    assert table.index.tolist() == ["big", "small_half", "below_gate", "dominated", "crashed"]
    assert table["pareto_rank"].tolist() == [1, 1, 1, 2, pd.NA]
    assert table["pareto_params"].tolist() == [True, True, True, False, False]


def test_a_new_result_makes_a_dated_snapshot_and_an_unchanged_table_does_not(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    for r in RESULTS[:3]:
        (results / f"{r['submission']}.json").write_text(json.dumps(r))
    first = write_leaderboard(PROJECT, results, tmp_path / "board")
    again = write_leaderboard(PROJECT, results, tmp_path / "board")
    (results / "crashed.json").write_text(json.dumps(RESULTS[3]))
    third = write_leaderboard(PROJECT, results, tmp_path / "board")
    assert first.snapshot is not None and again.snapshot is None and third.snapshot not in (None, first.snapshot)
    assert sorted(p.name for p in (tmp_path / "board" / "history").iterdir()) == sorted(
        [first.snapshot.name, third.snapshot.name])
    assert pd.read_csv(third.snapshot)["submission"].tolist()[-1] == "crashed"  # listed, at the bottom
    assert "| crashed" in third.markdown.read_text()
    page = third.html.read_text()
    assert page.count("<svg") == 3 and 'id="leaderboard"' in page and "http" not in page.split("<svg")[0]


def test_cpu_seconds_rank_on_cpu_runners_and_the_pages_say_so(tmp_path):
    # the same model twice: one waited 9 s on a busy machine for 1 s of CPU, the other used 3 s of CPU in 2 s
    waited, busy = result("waited", train_time_s=9.0), result("busy", train_time_s=2.0)
    waited["metrics"].update(train_cpu_s=1.0, time_basis="cpu")
    busy["metrics"].update(train_cpu_s=3.0, time_basis="cpu")
    results = tmp_path / "results"
    results.mkdir()
    for r in (waited, busy):
        (results / f"{r['submission']}.json").write_text(json.dumps(r))
    files = write_leaderboard(dataclasses.replace(PROJECT, leaderboard=LeaderboardSpec("pareto", 0.90)), results,
                              tmp_path / "board")
    table = files.table.set_index("submission")
    assert table.index.tolist() == ["waited", "busy"]
    assert table["ranked_train_s"].tolist() == [1.0, 3.0] and table["pareto_time"].tolist() == [True, False]
    assert pd.read_csv(files.csv).set_index("submission")["train_time_s"].tolist() == [9.0, 2.0]  # wall, kept
    markdown = files.markdown.read_text()
    assert " train CPU s |" in markdown and "do not grow with the machine's load" in markdown
    assert "training time (CPU s)" in files.html.read_text()


def test_results_of_two_assignments_or_a_stray_file_are_refused_with_the_reason(tmp_path):
    from grading.leaderboard import LeaderboardError, load_results

    (tmp_path / "a.json").write_text(json.dumps(RESULTS[0]))
    (tmp_path / "b.json").write_text(json.dumps({**RESULTS[1], "assignment": "shapes_params"}))
    with pytest.raises(LeaderboardError, match="mixes assignments"):
        load_results(tmp_path)
    (tmp_path / "b.json").write_text(json.dumps({"grades": [1, 2]}))
    with pytest.raises(LeaderboardError, match="b.json is not a dlgrade result file"):
        load_results(tmp_path)
    with pytest.raises(LeaderboardError, match="no results in"):
        load_results(tmp_path / "empty")
    (tmp_path / "b.json").write_text(json.dumps({**RESULTS[1], "run": {"assignment_hash": "an older version"}}))
    with pytest.raises(LeaderboardError, match=r"holds results graded with 2 versions of the assignment "
                                               r"\(run.assignment_hash\): grade again with `dlgrade grade \.\.\. "
                                               r"--regrade-changed`"):
        load_results(tmp_path)


def test_a_time_ratio_measured_on_a_shared_gpu_says_how_it_was_shared():
    from grading.leaderboard import display_table

    alone, shared, cpu = result("alone"), result("shared"), result("cpu")
    for r, share, ratio in ((alone, 1, 0.8), (shared, 2, 1.25), (cpu, None, 1.0)):
        r["metrics"].update(time_ratio=ratio, time_basis="cpu" if share is None else "wall")
        r["run"] = {"runs_per_gpu": share} if share else {}
    shown = display_table(leaderboard_table(PROJECT, [alone, shared, cpu])).set_index("submission")
    assert shown["time ratio"].to_dict() == {"alone": "0.80 (1/GPU)", "shared": "1.25 (2/GPU)", "cpu": "1.00"}
