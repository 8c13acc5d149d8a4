"""`dlgrade audit`: is every verdict of an assignment a measurement with a margin?

Grades the reference solution and every example submission under several seeds (`-p seed=N` overrides of the
grading parameters) and kernel thread counts (`[limits] threads` 1 and 2: the order of float reductions changes with
the thread count, as it does between machines), and prints, per notebook and check, the verdicts, the measured
values, their spread and the margin to the threshold. A check is **fragile** when its verdict flips between runs,
or when its smallest margin is not larger than the spread of the margins (one more seed or machine could flip it).

Time ratios compare each run with the reference solution's run at the same seed and thread count, made in the same
audit: the calibration cache is neither read nor written.

The audit's header names the hash of its inputs (`audit_inputs`): the committed audits in docs/audit/ are checked
against the bundled assignments by a test, so an assignment changed without a new audit fails `make test`.
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness.assets import prepare_assignment
from harness.checks import CheckResult, Evidence, run_check
from harness.grade import grade_one, time_ratios
from harness.result import SubmissionResult
from harness.spec import AssignmentSpec

THREAD_COUNTS = (1, 2)


@dataclass
class Run:
    notebook: str
    seed: int | None
    threads: int
    result: SubmissionResult


@dataclass
class CheckAudit:
    """One check of one notebook over all the runs."""

    notebook: str
    check: str
    kind: str
    passed: list[bool] = field(default_factory=list)
    values: list[float] = field(default_factory=list)  # the measured number the verdict rests on
    margins: list[float] = field(default_factory=list)  # signed distance to the threshold, > 0 on the passing side

    @property
    def verdict(self) -> str:
        return "pass" if all(self.passed) else "fail" if not any(self.passed) else "FLIPS"

    @property
    def spread(self) -> float | None:
        return max(self.margins) - min(self.margins) if self.margins else None

    @property
    def margin(self) -> float | None:
        """The smallest distance to the threshold over the runs (on whichever side the verdict is)."""
        return min(abs(m) for m in self.margins) if self.margins else None

    @property
    def fragile(self) -> str | None:
        if self.verdict == "FLIPS":
            return f"verdict flips: passed {sum(self.passed)} of {len(self.passed)} runs"
        if self.margins and self.margin <= self.spread:
            return f"margin {self.margin:.3g} not above the spread {self.spread:.3g}"
        if self.margins and len(self.margins) != len(self.passed):
            return f"no number measured in {len(self.passed) - len(self.margins)} of {len(self.passed)} runs"
        return None


def audit_notebooks(spec: AssignmentSpec) -> dict[str, Path]:
    """The source solution, the timing reference when it is another notebook, then every example."""
    notebooks = {"solution": spec.notebook}
    if spec.reference_notebook is not None and spec.reference_notebook.resolve() != spec.notebook.resolve():
        notebooks["reference"] = spec.reference_notebook
    for path in sorted(spec.submissions_dir.glob("*.ipynb")):
        notebooks[f"example {path.stem}"] = path
    return notebooks


def audit_inputs(spec: AssignmentSpec) -> str:
    """What an audit's verdicts depend on: the assignment hash (assignment.toml, the source notebook, the reference
    solution, dlgrade's version) and every notebook the audit grades. 16 hex digits of a sha256."""
    digest = hashlib.sha256(spec.hash.encode())
    for name, path in audit_notebooks(spec).items():
        digest.update(b"\0" + name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def run_audit(spec: AssignmentSpec, seeds: int, thread_counts=THREAD_COUNTS, data_source: str | None = None,
              workers: int = 1, log=sys.stderr) -> list[Run]:
    """Grade every audit notebook at every (seed, thread count), `workers` at a time (grading threads, each with its
    own helper zygotes); then time checks against the reference's own run under the same seed and thread count."""
    seed_values = list(range(seeds)) if "seed" in spec.parameters else [None]
    assets = prepare_assignment(spec, timed=False, data_source=data_source)  # the backbone; times: the reference's run
    jobs = [(name, path, seed, threads) for seed in seed_values for threads in thread_counts
            for name, path in audit_notebooks(spec).items()]

    def grade(job) -> Run:
        name, path, seed, threads = job
        threaded = replace(spec, limits=replace(spec.limits, threads=threads))
        overrides = {} if seed is None else {"seed": seed}
        return Run(name, seed, threads, grade_one(path, threaded, overrides, submission=name, threads=threads,
                                                  data_source=data_source, assets=assets))

    runs, started = [], time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for future in concurrent.futures.as_completed([pool.submit(grade, job) for job in jobs]):
            run = future.result()
            runs.append(run)
            print(f"[{len(runs)}/{len(jobs)}] {run.notebook}, seed {run.seed}, {run.threads} thread(s): "
                  f"{run.result.status} ({time.monotonic() - started:.0f} s)", file=log, flush=True)
    order = {job[:1] + job[2:]: i for i, job in enumerate(jobs)}
    runs.sort(key=lambda r: order[(r.notebook, r.seed, r.threads)])
    for seed in seed_values:
        for threads in thread_counts:
            retime(spec, [r for r in runs if (r.seed, r.threads) == (seed, threads)])
    return runs


def retime(spec: AssignmentSpec, batch: list[Run]) -> None:
    """Make the time checks of runs of one (seed, threads) against the reference notebook's run among them."""
    time_checks = [c for c in spec.checks if c.kind == "time_ratio"]
    reference_name = "reference" if any(r.notebook == "reference" for r in batch) else "solution"
    reference = next(r.result for r in batch if r.notebook == reference_name)
    if not time_checks or reference.status != "graded":
        return
    for run in batch:
        if run.result.status != "graded":
            continue
        run.result.metrics.update(time_ratios(run.result.metrics, reference.metrics))
        evidence = Evidence({}, {}, None, None, run.result.metrics)
        remade = {c.id: run_check(c, evidence) for c in time_checks}
        run.result.checks = [remade.get(c.id, c) for c in run.result.checks]


def signed_margin(kind: str, check: CheckResult) -> float | None:
    """Distance of the measured value to the threshold, positive on the passing side; None where the verdict is not
    a number against a threshold (shapes, counts, test cells), where the figure is structural (weight and activation
    bits follow from dtypes and levels, as counts do: `at_most = 16` for fp16 is exact, not a margin of 0), or where
    nothing was measured."""
    if kind in ("accuracy", "beats") and isinstance(check.got, (int, float)) and isinstance(check.expected,
                                                                                          (int, float)):
        return check.got - check.expected  # beats: strictly above, so a margin of 0 fails (and is fragile)
    if kind == "time_ratio" and isinstance(check.got, dict) and check.got.get("time_ratio") is not None:
        return min(check.expected[key] - value for key, value in check.got.items() if value is not None)
    if kind == "challenge_score" and isinstance(check.got, (int, float)):
        return check.expected - check.got
    if kind == "sparsity" and isinstance(check.got, dict):
        return min(_sparsity_margins(check).values(), default=None)
    return None


def measured_value(kind: str, check: CheckResult) -> float | None:
    if kind == "time_ratio":
        return (check.got or {}).get("time_ratio")
    if kind == "sparsity" and isinstance(check.got, dict):  # the share the tighter requirement is on
        margins = _sparsity_margins(check)
        return check.got[min(margins, key=margins.get)] if margins else None
    return check.got if isinstance(check.got, (int, float)) and not isinstance(check.got, bool) else None


def _sparsity_margins(check: CheckResult) -> dict[str, float]:
    """Zero share - required, for each share the check requires (`zero`, `structured`)."""
    return {key: check.got[key] - need for key, need in check.expected.items() if need > 0}


def summarize(spec: AssignmentSpec, runs: list[Run]) -> list[CheckAudit]:
    kinds = {c.id: c.kind for c in spec.checks}
    table: dict[tuple[str, str], CheckAudit] = {}
    for run in runs:
        for check in run.result.checks:
            row = table.setdefault((run.notebook, check.id), CheckAudit(run.notebook, check.id, kinds[check.id]))
            row.passed.append(check.passed)
            value, margin = measured_value(row.kind, check), signed_margin(row.kind, check)
            if value is not None:
                row.values.append(value)
            if margin is not None:
                row.margins.append(margin)
    return list(table.values())


def format_audit(spec: AssignmentSpec, rows: list[CheckAudit], runs: list[Run], seeds: int) -> str:
    seed_text = f"seeds 0-{seeds - 1}" if "seed" in spec.parameters else "no seed parameter"
    threads = sorted({r.threads for r in runs})
    lines = [f"## `dlgrade audit {spec.id}`: {seed_text} x kernel threads {', '.join(map(str, threads))} "
             f"({len(runs)} runs)", "", f"Inputs `{audit_inputs(spec)}` (`audit_inputs`: the assignment and every "
             "notebook audited).", "",
             "| notebook | check | verdict | measured (min - max) | spread | margin | |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        measured = (f"{_number(min(row.values))} - {_number(max(row.values))}" if row.values else "")
        spread = _number(row.spread) if row.spread is not None else ""
        margin = _number(row.margin) if row.margin is not None else ""
        flag = f"**FRAGILE**: {row.fragile}" if row.fragile else "ok"
        lines.append(f"| {row.notebook} | {row.check} | {row.verdict} | {measured} | {spread} | {margin} | {flag} |")
    fragile = [row for row in rows if row.fragile]
    statuses = sorted({f"{r.notebook}: {r.result.status}" for r in runs if r.result.status != "graded"})
    lines += ["", f"{len(rows)} verdicts audited, {len(fragile)} fragile."
              + (f" Not graded: {'; '.join(statuses)}." if statuses else "")]
    return "\n".join(lines)


def _number(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer() and abs(value) >= 1000:
        return f"{int(value):,}"
    return f"{value:.3g}" if 0 < abs(value) < 0.01 else f"{value:.3f}"  # challenge scores: 0.00159
