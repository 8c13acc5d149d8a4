"""`dlgrade leaderboard`: the recorded results of one assignment ranked on size, accuracy and training time.

Every number comes from the results JSON the grader wrote (measured by the harness, never by the student's kernel).
Outputs: leaderboard.csv, leaderboard.md, leaderboard.html (self-contained: inline CSS, JS and SVG plots) and, when
the table changed since the last run, a dated snapshot in history/ so instructors can show progress over the course.

The course's challenge score (lower is better), relative to ResNet18-CIFAR in half precision (5.6e6 parameters,
2.8e8 MACs):
    score = (1 - p_s - p_u) * (q_w / 32) * w / 5.6e6  +  (1 - p_s) * (max(q_w, q_a) / 32) * f / 2.8e8
w = params, f = MACs, q_w / q_a = bits of the weights / activations, p_u = unstructured sparsity, p_s = structured
sparsity (all measured from the exported model, harness/measure.py); it counts only at or above the accuracy gate.
The pages explain themselves: `legend` says what score, gate, rank, Pareto and the time column mean, from the
constants below, the same words in leaderboard.md and leaderboard.html.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from grading import leaderboard_html
from harness.errors import BadInput, SpecError
from harness.score import FULL_BITS, REFERENCE_MACS, REFERENCE_PARAMS, challenge_score, score_terms
from harness.spec import ASSIGNMENTS_DIR, AssignmentSpec, load_spec, resolve

RESNET18_CIFAR = (11_173_962, 556_651_520)  # its params and MACs (measured in tests/test_leaderboard.py)
METRICS = ["architecture", "time_basis", "params", "macs", "accuracy", "train_time_s", "train_cpu_s", "exec_time_s",
           "exec_cpu_s", "charged_train_s", "time_ratio", "latency_ms", "weights", "weight_bits", "activation_bits",
           "structured_sparsity", "unstructured_sparsity"]  # from results
NUMBERS = METRICS[2:]
TEXT_COLUMNS = ["submission", "architecture", "Pareto"]  # of display_table: left-aligned
BITS = {"weight bits": "weight_bits", "act. bits": "activation_bits", "struct. sparsity": "structured_sparsity",
        "unstr. sparsity": "unstructured_sparsity"}  # shown column: results' metric (shows_bits says when)
FRONTS = {"params": "pareto_params", "macs": "pareto_macs", "ranked_train_s": "pareto_time"}


class LeaderboardError(BadInput):
    """No results to rank, or results of several assignments mixed; the message says what to do."""


def _number(x: float) -> str:
    """5.6e6 rather than 5.6e+06."""
    return f"{x:g}".replace("e+0", "e").replace("e+", "e")


SCORE_FORMULA = (f"score = (1-(p_s+p_u))·(q_w/{FULL_BITS})·w/{_number(REFERENCE_PARAMS)} "
                 f"+ (1-p_s)·(max(q_w,q_a)/{FULL_BITS})·f/{_number(REFERENCE_MACS)}")  # challenge_score, as written


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


def results_assignment(results_dir: Path) -> AssignmentSpec:
    """The assignment the results name: an id under assignments/ (or a directory of that name here); elsewhere the
    instructor gives its directory with --assignment."""
    assignment = load_results(results_dir)[0]["assignment"]
    try:
        root = resolve(assignment)
    except SpecError:
        raise LeaderboardError(f"the results in {results_dir} are of assignment '{assignment}', which is not in "
                               f"{ASSIGNMENTS_DIR}: give the directory holding its assignment.toml with --assignment "
                               f"DIR (dlgrade leaderboard {results_dir} --out OUT --assignment DIR)") from None
    return load_spec(root)


def leaderboard_table(spec: AssignmentSpec, results: list[dict]) -> pd.DataFrame:
    """One row per submission, ranked by the assignment's rule; failed submissions last, with their status."""
    table = pd.DataFrame([{"submission": r["submission"], "status": r["status"],
                           **{key: r["metrics"].get(key) for key in METRICS},
                           "runs_per_gpu": r.get("run", {}).get("runs_per_gpu")} for r in results])
    table[NUMBERS] = table[NUMBERS].apply(pd.to_numeric, errors="coerce")
    table.insert(table.columns.get_loc("time_ratio"), "ranked_train_s", ranked_train_s(table))
    measured = (table["status"] == "graded") & table[["params", "macs"]].notna().all(axis=1)
    scored = measured & table[["weights", "weight_bits"]].notna().all(axis=1)
    terms = [score_terms(r.weights, r.macs, r.weight_bits, r.activation_bits, r.structured_sparsity or 0.0,
                         r.unstructured_sparsity or 0.0) if ok else (float("nan"), float("nan"))
             for ok, r in zip(scored, table.itertuples())]
    table["score_weight_term"] = [weight for weight, _ in terms]
    table["score_mac_term"] = [mac for _, mac in terms]
    table["challenge_score"] = table["score_weight_term"] + table["score_mac_term"]
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
    """The training time that ranks, on each result's time basis (CPU seconds where it is "cpu": the machine's load
    does not change them; wall seconds on GPU runners): `charged_train_s`, the grader's charge (the train cells, or
    the whole notebook less the reference's time outside its train cells when larger), else the whole notebook's
    time (results graded before the charge was recorded), never the train cells alone: training moved to untagged
    cells must not win."""
    whole = table["exec_cpu_s"].where(table["time_basis"] == "cpu", table["exec_time_s"])
    return table["charged_train_s"].where(table["charged_train_s"].notna(), whole)


CHARGED = ("the cells tagged `train`, or the whole notebook less the reference solution's time outside its train "
           "cells when that is larger, so training moved to other cells still counts")


def time_column(table: pd.DataFrame) -> tuple[str, str, str]:
    """(column header, plot axis label, what it means) of the training time that ranks."""
    bases = set(table.loc[table["ranked_train_s"].notna(), "time_basis"].astype(object).fillna("wall"))
    uncharged = table["ranked_train_s"].notna() & table["charged_train_s"].isna()
    older = (" Results without a charge (charged_train_s empty: no reference time, or graded before it was recorded) "
             "count their whole notebook's time." if uncharged.any() else "")
    if bases == {"cpu"}:
        return ("train CPU s", "training time charged (CPU s)", "the training time charged, in CPU seconds (user + "
                "system, the kernel's whole process tree: unlike wall time they do not grow with the machine's load, "
                f"so they rank): {CHARGED}.{older} Wall-clock seconds of the train cells: train_time_s in "
                "leaderboard.csv.")
    if bases <= {"wall"}:
        return ("train s", "training time charged (s)", "the training time charged, in wall-clock seconds (GPU "
                f"runners: CPU time does not see the GPU's work): {CHARGED}.{older} CPU seconds of the train cells: "
                "train_cpu_s in leaderboard.csv.")
    return ("train s", "training time charged (s)", f"the training time charged: {CHARGED}; CPU seconds on CPU "
            "runners, wall-clock seconds on GPU runners (time_basis in leaderboard.csv): compare within one kind of "
            f"runner.{older}")


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
    (out / "leaderboard.html").write_text(leaderboard_html.page(
        spec, table, display_table(table, spec.leaderboard.rank), time_column=time_column(table), fronts=FRONTS,
        rule=ranking_rule(spec), legend=legend(spec, table)))
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


def percent(fraction: float) -> str:
    """0.9 -> 90%, 0.925 -> 92.5%, 0.000434 -> 0.0434% (4 significant digits)."""
    return f"{fraction * 100:.4g}%"


def shows_bits(table: pd.DataFrame, rank: str) -> bool:
    """The bits and sparsity columns: always where the challenge score ranks (they are in it), else only when some
    ranked row is not 32-bit dense (otherwise every cell would read 32, 32, 0%, 0%)."""
    ranked = table[table["rank"].notna()]
    dense = ((ranked["weight_bits"] == FULL_BITS) & (ranked["activation_bits"] == FULL_BITS)
             & (ranked["structured_sparsity"].fillna(0) == 0) & (ranked["unstructured_sparsity"].fillna(0) == 0))
    return rank == "challenge" or not dense.all()


def display_table(table: pd.DataFrame, rank: str = "pareto") -> pd.DataFrame:
    """The columns a reader compares, formatted (markdown, HTML and the console); `rank` the assignment's rule."""
    def num(value, fmt):
        return "" if pd.isna(value) else format(value, fmt)

    bits = {header: [("" if pd.isna(v) else percent(v) if "sparsity" in column else f"{v:g}")
                     for v in table[column]] for header, column in BITS.items()} if shows_bits(table, rank) else {}
    scores = [("" if pd.isna(s) else f"{s:.4g}" + ("" if ok else " (below gate)"))
              for s, ok in zip(table["challenge_score"], table["above_gate"])]
    if rank == "challenge":  # the score that ranks, and what it is made of, right after the accuracy
        after_accuracy = {"score": scores, "weight term": [num(v, ".4g") for v in table["score_weight_term"]],
                          "MAC term": [num(v, ".4g") for v in table["score_mac_term"]], **bits}
        at_end = {}
    else:
        after_accuracy, at_end = {}, {**bits, "score": scores}
    shown = pd.DataFrame({
        "rank": table["rank"].astype("string").fillna(""),
        "submission": table["submission"],
        "architecture": table["architecture"].fillna(""),
        "params": [num(v, ",.0f") for v in table["params"]],
        "MACs": [num(v, ",.0f") for v in table["macs"]],
        "accuracy": [num(v, ".1%") for v in table["accuracy"]],
        **after_accuracy,
        time_column(table)[0]: [num(v, ".2f") for v in table["ranked_train_s"]],
        "time ratio": [num(v, ".2f") + (f" ({share:g}/GPU)" if pd.notna(share) and num(v, ".2f") else "")
                       for v, share in zip(table["time_ratio"], table["runs_per_gpu"])],
        "latency ms": [num(v, ".3f") for v in table["latency_ms"]],
        **at_end,
        "Pareto": [" ".join(name for name, col in (("params", "pareto_params"), ("MACs", "pareto_macs"),
                                                   ("time", "pareto_time")) if row[col])
                   for _, row in table.iterrows()],
    })
    shown.loc[table["rank"].isna(), "architecture"] = table.loc[table["rank"].isna(), "status"]
    return shown


def ranking_rule(spec: AssignmentSpec) -> str:
    if spec.leaderboard.rank == "challenge":
        return (f"challenge score, lowest first, those at or above the {percent(spec.leaderboard.accuracy_gate)} "
                "accuracy gate before those below")
    return "Pareto front first (accuracy up; params, MACs, training time down), then accuracy"


def legend(spec: AssignmentSpec, table: pd.DataFrame) -> list[tuple[str, str]]:
    """(term, what it means) for the columns under the table, the same words in leaderboard.md and leaderboard.html
    (`code` in backticks)."""
    gate, challenge = spec.leaderboard.accuracy_gate, spec.leaderboard.rank == "challenge"
    dataset = spec.parameters.get("dataset")
    check = next((c for c in spec.checks if c.kind == "accuracy"), None)
    resnet = challenge_score(*RESNET18_CIFAR, 16, 16)
    header, _, time_meaning = time_column(table)
    items = [
        ("score", f"`{SCORE_FORMULA}`, lower is better: `w` the weights the layers use (whatever holds them; a "
                  "pruned weight counts), `f` MACs (multiply-accumulates for one example; a quantized or pruned "
                  "graph counts like its float original), `q_w` / `q_a` bits of the weights as the layers see them "
                  f"(averaged over `w`: {FULL_BITS} = float32, 16 = half precision, 8 = int8 storage, k = float "
                  "values on at most 2^k levels per output channel) / of the layers' inputs, `p_s` structured "
                  "sparsity (the share of `w` in all-zero output channels, which leave the MAC term too), `p_u` "
                  "unstructured sparsity (the share of the other weights that are exactly zero; prune's masks "
                  f"count). {_number(REFERENCE_PARAMS)} and "
                  f"{_number(REFERENCE_MACS)} are the course's reference figures (ResNet18-CIFAR: "
                  f"{RESNET18_CIFAR[0]:,} parameters, {RESNET18_CIFAR[1]:,} MACs; in half precision it scores "
                  f"{resnet:.2f}). Every number "
                  "is measured by the grader on the exported model."),
        ("accuracy gate", f"{percent(gate)} held-out accuracy (`[leaderboard] accuracy_gate`"
                          + (f" for {dataset}" if dataset else "") + "). A score counts only at or above it: a row "
                          'under it shows "(below gate)" after its score'
                          + (" and ranks after every row above it. " if challenge else
                             " (the pareto ranking does not use the gate). ")
                          + "The gate is the leaderboard's own bar, independent of the assignment's accuracy check"
                          + (f" (threshold {percent(check.options['threshold'])}, which gives the points)"
                             if check else "")
                          + ": a submission can pass the assignment and still sit below the gate."),
        ("rank", "`[leaderboard] rank = \"challenge\"`: submissions at or above the gate by score, lowest first, "
                 "then those below the gate by score." if challenge else
                 "`[leaderboard] rank = \"pareto\"`: by Pareto front, then accuracy (highest first). Front 1 holds "
                 "the submissions that no other beats: no other submission is at least as good on every axis "
                 "(accuracy higher; params, MACs and training time lower) and better on one; front 2 is front 1 of "
                 "the rest, and so on."),
        ("Pareto", "the plots (params, MACs, time) on whose front the submission lies, accuracy against that one "
                   "cost: no other submission has at least its accuracy and at most its cost, better on one of the "
                   "two. The plot's line is that front."),
        (header, time_meaning),
        ("time ratio", "the training time charged / the reference solution's training time, what the assignment's "
                       "time check compares (k/GPU: k runs shared one GPU)."),
    ]
    if challenge:
        weight_term, mac_term = SCORE_FORMULA.removeprefix("score = ").split(" + ")
        items.append(("weight term, MAC term", f"the score's two terms, `{weight_term}` and `{mac_term}`: which "
                                               "one to work on."))
    if shows_bits(table, spec.leaderboard.rank):
        items.append((", ".join(BITS), "`q_w`, `q_a`, `p_s`, `p_u` of the score, as in leaderboard.csv (shown "
                                       "wherever the score ranks, and elsewhere when a submission is not 32-bit "
                                       "dense)."))
    else:
        items.append(("bits, sparsity", f"not shown: every submission is {FULL_BITS}-bit and dense (`q_w` = `q_a` = "
                                        f"{FULL_BITS}, `p_s` = `p_u` = 0); they are in leaderboard.csv."))
    return items + [("not ranked", "submissions without measurements (failed, timeout...) are listed last, with "
                                   "their status in the architecture column.")]


def markdown(spec: AssignmentSpec, table: pd.DataFrame) -> str:
    shown = display_table(table, spec.leaderboard.rank)
    shown = shown.to_markdown(index=False, disable_numparse=True,  # as formatted: 1.00 stays 1.00
                              colalign=["left" if c in TEXT_COLUMNS else "right" for c in shown.columns])
    explained = "\n".join(f"- **{term}**: {text}" for term, text in legend(spec, table))
    return (f"# Leaderboard: {spec.title}\n\nRanked by {ranking_rule(spec)}. Failed submissions are listed last with "
            f"their status.\n\n{shown}\n\n## What the columns mean\n\n{explained}\n")


def format_console(table: pd.DataFrame, spec: AssignmentSpec | None = None) -> str:
    """The table and, given the assignment, a short legend (the whole one is under the table in leaderboard.md and
    .html)."""
    if spec is None:
        return display_table(table).to_string(index=False)
    return (f"{display_table(table, spec.leaderboard.rank).to_string(index=False)}\n\nRanked by "
            f"{ranking_rule(spec)}. {SCORE_FORMULA} (lower is better); accuracy gate "
            f"{percent(spec.leaderboard.accuracy_gate)}: the leaderboard's bar, not the assignment's accuracy check; "
            f"{time_column(table)[0]}: the training time charged. Every column is explained in leaderboard.md.")
