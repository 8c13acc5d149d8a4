"""`dlgrade leaderboard`: the recorded results of one assignment ranked on size, accuracy and training time.

Every number comes from the results JSON the grader wrote (measured by the harness, never by the student's kernel).
Outputs: leaderboard.csv, leaderboard.md, leaderboard.html (self-contained: inline CSS, JS and SVG plots) and, when
the table changed since the last run, a dated snapshot in history/ so instructors can show progress over the course.

The course's challenge score (lower is better), relative to ResNet18-CIFAR in half precision (5.6e6 parameters,
2.8e8 MACs):
    score = (1 - p_s - p_u) * (q_w / 32) * w / 5.6e6  +  (1 - p_s) * (max(q_w, q_a) / 32) * f / 2.8e8
w = params, f = MACs, q_w / q_a = bits of the weights / activations, p_u = unstructured sparsity, p_s = structured
sparsity (all measured from the exported model, harness/measure.py); it counts only at or above the accuracy gate.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from grading import leaderboard_html
from harness.errors import BadInput
from harness.spec import AssignmentSpec

REFERENCE_PARAMS, REFERENCE_MACS = 5.6e6, 2.8e8  # ResNet18-CIFAR (11,173,962 params, ~5.55e8 MACs) at 16 bits
METRICS = ["architecture", "time_basis", "params", "macs", "accuracy", "train_time_s", "train_cpu_s", "time_ratio",
           "latency_ms", "weight_bits", "activation_bits", "structured_sparsity",
           "unstructured_sparsity"]  # from results
NUMBERS = METRICS[2:]
FRONTS = {"params": "pareto_params", "macs": "pareto_macs", "ranked_train_s": "pareto_time"}


class LeaderboardError(BadInput):
    """No results to rank, or results of several assignments mixed; the message says what to do."""


def challenge_score(params: float, macs: float, weight_bits: float, activation_bits: float,
                    structured_sparsity: float = 0.0, unstructured_sparsity: float = 0.0) -> float:
    p_s, p_u = structured_sparsity, unstructured_sparsity
    return ((1 - p_s - p_u) * (weight_bits / 32) * params / REFERENCE_PARAMS
            + (1 - p_s) * (max(weight_bits, activation_bits) / 32) * macs / REFERENCE_MACS)


def dominates(a: pd.Series, b: pd.Series, costs: list[str]) -> bool:
    """a is at least as good as b everywhere (accuracy up, costs down) and better somewhere."""
    at_least = a["accuracy"] >= b["accuracy"] and all(a[c] <= b[c] for c in costs)
    better = a["accuracy"] > b["accuracy"] or any(a[c] < b[c] for c in costs)
    return at_least and better


def pareto_flags(table: pd.DataFrame, costs: list[str]) -> pd.Series:
    """True for the rows no other row dominates; rows missing a value are never on the front."""
    complete = table[["accuracy", *costs]].notna().all(axis=1)
    rows = table[complete]
    on_front = pd.Series(False, index=table.index)
    for i, row in rows.iterrows():
        on_front[i] = not any(dominates(other, row, costs) for j, other in rows.iterrows() if j != i)
    return on_front


def pareto_ranks(table: pd.DataFrame, costs: list[str]) -> pd.Series:
    """Non-dominated sorting: 1 for the front, 2 for the front once the first is removed, ...; NA when incomplete."""
    ranks = pd.Series(pd.NA, index=table.index, dtype="Int64")
    remaining = table[table[["accuracy", *costs]].notna().all(axis=1)]
    level = 1
    while len(remaining):
        front = pareto_flags(remaining, costs)
        ranks[front[front].index] = level
        remaining = remaining[~front]
        level += 1
    return ranks


def load_results(results_dir: Path) -> list[dict]:
    results = []
    for path in sorted(Path(results_dir).glob("*.json")):
        try:
            result = json.loads(path.read_text())
        except ValueError as exc:
            raise LeaderboardError(f"{path} is not JSON ({exc}); remove it or grade again") from None
        if not isinstance(result, dict) or not {"assignment", "submission", "status", "metrics"} <= result.keys():
            raise LeaderboardError(f"{path} is not a dlgrade result file; remove it or grade again")
        results.append(result)
    if not results:
        raise LeaderboardError(f"no results in {results_dir}: run `dlgrade grade ID SUBMISSIONS --out DIR` and give "
                               "DIR/results")
    assignments = sorted({r["assignment"] for r in results})
    if len(assignments) > 1:
        raise LeaderboardError(f"{results_dir} mixes assignments ({', '.join(assignments)}): one leaderboard each")
    versions = {(r.get("run") or {}).get("assignment_hash") for r in results}
    if len(versions) > 1:  # two rule sets in one ranking: results of an edited assignment not graded again
        raise LeaderboardError(f"{results_dir} holds results graded with {len(versions)} versions of the assignment "
                               "(run.assignment_hash): grade again with `dlgrade grade ... --regrade-changed`")
    return results


def leaderboard_table(spec: AssignmentSpec, results: list[dict]) -> pd.DataFrame:
    """One row per submission, ranked by the assignment's rule; failed submissions last, with their status."""
    table = pd.DataFrame([{"submission": r["submission"], "status": r["status"],
                           **{key: r["metrics"].get(key) for key in METRICS},
                           "runs_per_gpu": r.get("run", {}).get("runs_per_gpu")} for r in results])
    table[NUMBERS] = table[NUMBERS].apply(pd.to_numeric, errors="coerce")
    table.insert(table.columns.get_loc("time_ratio"), "ranked_train_s", ranked_train_s(table))
    measured = (table["status"] == "graded") & table[["params", "macs"]].notna().all(axis=1)
    table["challenge_score"] = [
        challenge_score(r.params, r.macs, r.weight_bits, r.activation_bits, r.structured_sparsity or 0.0,
                        r.unstructured_sparsity or 0.0) if ok and pd.notna(r.weight_bits) else float("nan")
        for ok, r in zip(measured, table.itertuples())]
    table["above_gate"] = measured & (table["accuracy"] >= spec.leaderboard.accuracy_gate)
    ranked = table[measured]
    for cost, column in FRONTS.items():
        table[column] = pareto_flags(ranked, [cost]).reindex(table.index, fill_value=False)
    table["pareto_rank"] = pareto_ranks(ranked, list(FRONTS)).reindex(table.index)
    table = sort(table, measured, spec.leaderboard.rank)
    table.insert(0, "rank", pd.array(list(range(1, int(measured.sum()) + 1)) + [pd.NA] * int((~measured).sum()),
                                     dtype="Int64"))
    return table.reset_index(drop=True)


def ranked_train_s(table: pd.DataFrame) -> pd.Series:
    """The training time that ranks: CPU seconds where the result's time basis is "cpu" (the machine's load does not
    change them), wall seconds otherwise (GPU runners, and results recorded before CPU time was)."""
    return table["train_cpu_s"].where(table["time_basis"] == "cpu", table["train_time_s"])


def time_column(table: pd.DataFrame) -> tuple[str, str, str]:
    """(column header, plot axis label, footnote) saying which training time ranks."""
    bases = set(table.loc[table["ranked_train_s"].notna(), "time_basis"].fillna("wall"))
    if bases == {"cpu"}:
        return ("train CPU s", "training time (CPU s)", "train CPU s: CPU seconds (user + system) of the cells tagged "
                "`train`, the kernel's whole process tree: unlike wall time they do not grow with the machine's load, "
                "so they rank. Wall-clock seconds: train_time_s in leaderboard.csv.")
    if bases <= {"wall"}:
        return ("train s", "training time (s)", "train s: wall-clock seconds of the cells tagged `train` (GPU runners: "
                "CPU time does not see the GPU's work). CPU seconds: train_cpu_s in leaderboard.csv.")
    return ("train s", "training time (s)", "train s: CPU seconds of the cells tagged `train` on CPU runners, "
            "wall-clock seconds on GPU runners (time_basis in leaderboard.csv): compare within one kind of runner.")


def sort(table: pd.DataFrame, measured: pd.Series, rule: str) -> pd.DataFrame:
    """challenge: above the gate by score (lowest first), then below the gate by score; pareto: by front, then
    accuracy. Unmeasured (failed) submissions last, by name."""
    if rule == "challenge":
        keys, ascending = ["above_gate", "challenge_score", "submission"], [False, True, True]
    else:
        keys, ascending = ["pareto_rank", "accuracy", "submission"], [True, False, True]
    ranked = table[measured].sort_values(keys, ascending=ascending, na_position="last")
    return pd.concat([ranked, table[~measured].sort_values("submission")])


# outputs ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LeaderboardFiles:
    csv: Path
    markdown: Path
    html: Path
    snapshot: Path | None  # written when the table changed since the last snapshot
    table: pd.DataFrame


def write_leaderboard(spec: AssignmentSpec, results_dir: Path, out: Path) -> LeaderboardFiles:
    table = leaderboard_table(spec, load_results(results_dir))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv_text = table.to_csv(index=False)
    (out / "leaderboard.csv").write_text(csv_text)
    (out / "leaderboard.md").write_text(markdown(spec, table))
    (out / "leaderboard.html").write_text(leaderboard_html.page(spec, table, display_table(table), time_column(table),
                                                                FRONTS))
    return LeaderboardFiles(out / "leaderboard.csv", out / "leaderboard.md", out / "leaderboard.html",
                            snapshot(out / "history", csv_text), table)


def snapshot(history: Path, csv_text: str) -> Path | None:
    """history/leaderboard-<UTC time>.csv, unless the latest snapshot already holds this table."""
    history.mkdir(exist_ok=True)
    previous = sorted(history.glob("leaderboard-*.csv"))
    if previous and previous[-1].read_text() == csv_text:
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H%M%SZ")
    path, n = history / f"leaderboard-{stamp}.csv", 1
    while path.exists():  # two changes within a second
        n += 1
        path = history / f"leaderboard-{stamp}-{n}.csv"
    path.write_text(csv_text)
    return path


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """The columns a reader compares, formatted (markdown and the console)."""
    def num(value, fmt):
        return "" if pd.isna(value) else format(value, fmt)

    shown = pd.DataFrame({
        "rank": table["rank"].astype("string").fillna(""),
        "submission": table["submission"],
        "architecture": table["architecture"].fillna(""),
        "params": [num(v, ",.0f") for v in table["params"]],
        "MACs": [num(v, ",.0f") for v in table["macs"]],
        "accuracy": [num(v, ".1%") for v in table["accuracy"]],
        time_column(table)[0]: [num(v, ".2f") for v in table["ranked_train_s"]],
        "time ratio": [num(v, ".2f") + (f" ({share:g}/GPU)" if pd.notna(share) and num(v, ".2f") else "")
                       for v, share in zip(table["time_ratio"], table["runs_per_gpu"])],
        "latency ms": [num(v, ".3f") for v in table["latency_ms"]],
        "score": [("" if pd.isna(s) else f"{s:.4f}" + ("" if ok else " (below gate)"))
                  for s, ok in zip(table["challenge_score"], table["above_gate"])],
        "Pareto": [" ".join(name for name, col in (("params", "pareto_params"), ("MACs", "pareto_macs"),
                                                   ("time", "pareto_time")) if row[col])
                   for _, row in table.iterrows()],
    })
    shown.loc[table["rank"].isna(), "architecture"] = table.loc[table["rank"].isna(), "status"]
    return shown


def markdown(spec: AssignmentSpec, table: pd.DataFrame) -> str:
    rule = ("challenge score, lowest first (counts at accuracy >= "
            f"{spec.leaderboard.accuracy_gate:.0%})" if spec.leaderboard.rank == "challenge"
            else "Pareto front first (accuracy up; params, MACs, training time down), then accuracy")
    return (f"# Leaderboard: {spec.title}\n\nRanked by {rule}. Failed submissions are listed last with their "
            f"status.\n\n{display_table(table).to_markdown(index=False)}\n\n{time_column(table)[2]}\n")


def format_console(table: pd.DataFrame) -> str:
    return display_table(table).to_string(index=False)
