"""Leaderboards: the course's challenge score, Pareto fronts, ranking rules, snapshots (hand-computed expectations)."""
from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil

import pandas as pd
import pytest
import torch
from torch import nn

from grading.cli import main
from grading.leaderboard import (
    SCORE_FORMULA,
    challenge_score,
    display_table,
    leaderboard_table,
    legend,
    pareto_flags,
    pareto_ranks,
    write_leaderboard,
)
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
    assert (profile["params"], profile["weights"], profile["macs"]) == (11_173_962, 11_173_962, 556_651_520)
    assert (profile["weight_bits"], profile["activation_bits"]) == (16, 16)
    assert profile["structured_sparsity"] == 0.0
    score = challenge_score(profile["weights"], profile["macs"], profile["weight_bits"], profile["activation_bits"],
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
    with torch.no_grad():  # float values in the other rows (all ones would be 1-bit weights: harness/compression.py)
        model[1].weight.copy_(torch.randn(4, 4, generator=torch.Generator().manual_seed(0)))
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
    """A result on a wall-clock runner whose training took `train_time_s` in its train cells (charged as is) and
    whose notebook took half a second more."""
    measured = status == "graded"
    return {"assignment": PROJECT.id, "submission": name, "status": status, "metrics": {
        "architecture": "Net" if measured else None, "params": params if measured else None,
        "weights": params if measured else None,
        "macs": macs if measured else None, "accuracy": accuracy if measured else None,
        "train_time_s": train_time_s if measured else None, "charged_train_s": train_time_s if measured else None,
        "exec_time_s": train_time_s + 0.5 if measured else None, "time_ratio": None, "latency_ms": None,
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
    waited["metrics"].update(train_cpu_s=1.0, charged_train_s=1.0, time_basis="cpu")
    busy["metrics"].update(train_cpu_s=3.0, charged_train_s=3.0, time_basis="cpu")
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
    assert "training time charged (CPU s)" in files.html.read_text()


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
    alone, shared, cpu = result("alone"), result("shared"), result("cpu")
    for r, share, ratio in ((alone, 1, 0.8), (shared, 2, 1.25), (cpu, None, 1.0)):
        r["metrics"].update(time_ratio=ratio, time_basis="cpu" if share is None else "wall")
        r["run"] = {"runs_per_gpu": share} if share else {}
    shown = display_table(leaderboard_table(PROJECT, [alone, shared, cpu])).set_index("submission")
    assert shown["time ratio"].to_dict() == {"alone": "0.80 (1/GPU)", "shared": "1.25 (2/GPU)", "cpu": "1.00"}


def test_the_legend_states_the_score_as_the_code_computes_it():
    assert SCORE_FORMULA == "score = (1-(p_s+p_u))·(q_w/32)·w/5.6e6 + (1-p_s)·(max(q_w,q_a)/32)·f/2.8e8"
    expression = SCORE_FORMULA.partition("=")[2].replace("·", "*")
    for w, f, q_w, q_a, p_s, p_u in [(11_173_962, 556_651_520, 16, 16, 0.0, 0.0), (1000, 10_000, 8, 16, 0.25, 0.1)]:
        assert eval(expression, {"max": max}, dict(w=w, f=f, q_w=q_w, q_a=q_a, p_s=p_s, p_u=p_u)) == pytest.approx(
            challenge_score(w, f, q_w, q_a, p_s, p_u), rel=1e-12)


def project_elsewhere(tmp_path):
    """Project 1 copied outside assignments/ as `my_project`, ranked by the challenge score with a gate per
    dataset (digits32 is its dataset); its accuracy check still asks 70%."""
    root = tmp_path / "my_project"
    source = PROJECT.root
    root.mkdir()
    for name in (PROJECT.notebook.name, "reference_solution.ipynb"):
        shutil.copy(source / name, root / name)
    toml = (source / "assignment.toml").read_text().replace('id = "project1_size_accuracy_time"', 'id = "my_project"')
    (root / "assignment.toml").write_text(toml + '\n[leaderboard]\nrank = "challenge"\n'
                                          "accuracy_gate = {digits32 = 0.95, cifar10 = 0.85}\n")
    return root


def test_the_cli_asks_for_the_assignments_directory_and_the_pages_explain_gate_score_and_bits(tmp_path, capsys):
    root = project_elsewhere(tmp_path)
    results, board = tmp_path / "results", tmp_path / "board"
    results.mkdir()
    passes = result("passes_not_gate", accuracy=0.93, params=1000, macs=10_000, bits=16)  # 93%: > 70%, < 95%
    pruned = result("pruned", accuracy=0.97, params=4000, macs=40_000)
    pruned["metrics"].update(weight_bits=24.5, activation_bits=16, structured_sparsity=0.25,
                             unstructured_sparsity=0.000434)
    for r in (passes, pruned, result("crashed", status="crashed")):
        (results / f"{r['submission']}.json").write_text(json.dumps({**r, "assignment": "my_project"}))

    assert main(["leaderboard", str(results), "--out", str(board)]) == 2
    assert capsys.readouterr().err == (
        f"dlgrade leaderboard: the results in {results} are of assignment 'my_project', which is not in "
        f"{PROJECT.root.parent}: give the directory holding its assignment.toml with --assignment DIR (dlgrade "
        f"leaderboard {results} --out OUT --assignment DIR)\n")

    assert main(["leaderboard", str(results), "--out", str(board), "--assignment", str(root)]) == 0
    console = capsys.readouterr().out
    assert ("Ranked by challenge score, lowest first, those at or above the 95% accuracy gate before those below. "
            f"{SCORE_FORMULA} (lower is better); accuracy gate 95%: the leaderboard's bar, not the assignment's "
            "accuracy check; train s: the training time charged.") in console
    table = pd.read_csv(board / "leaderboard.csv")
    assert table["submission"].tolist() == ["pruned", "passes_not_gate", "crashed"]  # the lower score ranks 2nd
    shown = display_table(table, "challenge").set_index("submission")
    weight_term, mac_term = 0.5 * 1000 / 5.6e6, 0.5 * 10_000 / 2.8e8  # 16 bits: half of each
    assert shown.loc["passes_not_gate", "score":"MAC term"].tolist() == [
        f"{weight_term + mac_term:.4g} (below gate)", f"{weight_term:.4g}", f"{mac_term:.4g}"]
    assert shown.loc["passes_not_gate", "score"] == "0.0001071 (below gate)"  # 4 significant digits
    assert shown.loc[:, "weight bits":"unstr. sparsity"].values.tolist() == [
        ["24.5", "16", "25%", "0.0434%"], ["16", "16", "0%", "0%"], ["", "", "", ""]]

    markdown = (board / "leaderboard.md").read_text()
    rows = [re.sub(" +", " ", line) for line in markdown.splitlines() if line.startswith("|")]
    assert rows[0] == ("| rank | submission | architecture | params | MACs | accuracy | score | weight term | MAC term "
                       "| weight bits | act. bits | struct. sparsity | unstr. sparsity | train s | time ratio "
                       "| latency ms | Pareto |")
    assert rows[3] == ("| 2 | passes_not_gate | Net | 1,000 | 10,000 | 93.0% | 0.0001071 (below gate) | 8.929e-05 | "
                       "1.786e-05 | 16 | 16 | 0% | 0% | 1.00 | | | params MACs |")
    assert f"- **score**: `{SCORE_FORMULA}`, lower is better: `w` the weights the layers use" in markdown
    assert ("- **weight term, MAC term**: the score's two terms, `(1-(p_s+p_u))·(q_w/32)·w/5.6e6` and "
            "`(1-p_s)·(max(q_w,q_a)/32)·f/2.8e8`: which one to work on.") in markdown
    gate = ("95% held-out accuracy (`[leaderboard] accuracy_gate` for digits32). A score counts only at or above "
            'it: a row under it shows "(below gate)" after its score and ranks after every row above it. The gate '
            "is the leaderboard's own bar, independent of the assignment's accuracy check (threshold 70%, which "
            "gives the points): a submission can pass the assignment and still sit below the gate.")
    assert f"- **accuracy gate**: {gate}\n" in markdown
    assert ('- **rank**: `[leaderboard] rank = "challenge"`: submissions at or above the gate by score, lowest '
            "first, then those below the gate by score.\n") in markdown
    page = (board / "leaderboard.html").read_text()
    assert f"<dt>score</dt><dd><code>{SCORE_FORMULA}</code>, lower is better" in page
    assert ("<dt>accuracy gate</dt><dd>95% held-out accuracy (<code>[leaderboard] accuracy_gate</code> for "
            "digits32). A score counts only at or above it: a row under it shows &#34;(below gate)&#34;") in page
    assert '<td class="" data-sort="0.000434">0.0434%</td>' in page  # sorts by the number


def test_bits_and_sparsity_show_for_pareto_only_when_a_submission_is_not_32_bit_dense():
    dense = [result("a"), result("b", params=2000)]
    table = leaderboard_table(PROJECT, dense)
    assert PROJECT.leaderboard.rank == "pareto" and "weight bits" not in display_table(table).columns
    assert dict(legend(PROJECT, table))["bits, sparsity"].startswith("not shown: every submission is 32-bit and dense")
    table = leaderboard_table(PROJECT, [*dense, result("half", bits=16)])
    assert display_table(table)["act. bits"].tolist() == ["32", "16", "32"]
    front = dict(legend(PROJECT, table))["rank"]
    assert "Front 1 holds the submissions that no other beats: no other submission is at least as good on every axis " \
           "(accuracy higher; params, MACs and training time lower) and better on one" in front


def test_training_moved_out_of_the_train_cells_does_not_win_on_time():
    # the same model; the cheat trains in an untagged cell: 0.01 s in its train cells, its notebook as long as the
    # honest one's. The grader charges max(train cells, notebook - the reference's 1 s outside its train cells).
    honest, cheat = result("honest", train_time_s=5.0), result("cheat", train_time_s=0.01)
    honest["metrics"].update(exec_time_s=6.0, charged_train_s=5.0)
    cheat["metrics"].update(exec_time_s=6.0, charged_train_s=5.0)
    table = leaderboard_table(PROJECT, [cheat, honest]).set_index("submission")
    assert table["ranked_train_s"].to_dict() == {"cheat": 5.0, "honest": 5.0}
    assert table["pareto_time"].all() and table["pareto_rank"].tolist() == [1, 1]  # a tie, not a win
    cheat["metrics"].update(exec_time_s=6.5, charged_train_s=5.5)
    assert leaderboard_table(PROJECT, [cheat, honest])["submission"].tolist() == ["honest", "cheat"]
    # results recorded before the charge: the whole notebook's time, never the train cells alone
    for r in (honest, cheat):
        del r["metrics"]["charged_train_s"]
    table = leaderboard_table(PROJECT, [cheat, honest])
    assert table["submission"].tolist() == ["honest", "cheat"] and table["ranked_train_s"].tolist() == [6.0, 6.5]
    assert "Results without a charge (charged_train_s empty: no reference time, or graded before it was recorded) " \
           "count their whole notebook's time." in dict(
        legend(PROJECT, table))["train s"]
