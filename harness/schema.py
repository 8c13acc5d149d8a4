"""What assignment.toml may hold: its tables and the options each declares, the names the harness reserves, and
the small records a [[checks]] or [leaderboard] table becomes.

Below both the checks (harness/checks.py declares each kind's own options and reads CheckSpec) and the validation
(harness/validate.py refuses anything not declared here), which harness/spec.py runs when it loads an assignment:
declarations at the bottom, so that no import goes back up (tests/test_architecture.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness.limits import Limits
from harness.options import Option, dataclass_options

HARNESS_PARAMETERS = ("output_dir", "data_dir", "device")  # set by the harness for every run, never overridable
EXTRA_MODEL_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")  # harness.submit(..., extra_models={name: module})
MODEL_OPTIONS = ("model", "baseline")  # check options that name an extra model
HARNESS_READ_PARAMETERS = ("dataset",)  # grading parameters the harness itself reads (the notebook need not)


@dataclass(frozen=True)
class CheckSpec:
    id: str
    kind: str
    points: float
    hidden: bool = False
    options: dict = field(default_factory=dict)  # every other key of the [[checks]] table


@dataclass(frozen=True)
class LeaderboardSpec:
    """[leaderboard]: how `dlgrade leaderboard` ranks (docs/architecture.md, Leaderboards)."""

    rank: str = "pareto"  # "pareto": non-dominated first | "challenge": the course's score, lowest first
    accuracy_gate: float = 0.90  # the challenge score counts only at or above this held-out accuracy


def _table(*options: Option) -> dict[str, Option]:
    return {o.name: o for o in options}


# What each table of assignment.toml may hold (harness/validate.py refuses anything else; [[checks]] options are
# declared by each kind in harness/checks.py). [parameters] and [selfcheck] hold the notebook's parameter names.
TABLES = {
    "assignment": _table(
        Option("id", str, doc="the assignment's id (default: its directory's name)"),
        Option("title", str),
        Option("notebook", str, doc="the nbgrader source notebook beside assignment.toml (default: <id>.ipynb)"),
        Option("input_shape", list[int], required=True, positive=True,
               doc="the shape of one example of the submitted model, without batch dim, e.g. [3, 32, 32]"),
        Option("reference", str, doc="the reference/models entry measured for expected = \"reference\""),
        Option("kernel", str, default="dlgrade", doc="the Jupyter kernel that runs the notebooks"),
        Option("extra_models", list[str], default=(), doc="other models the notebook submits, measured too")),
    "parameters": None,
    "selfcheck": None,
    "limits": dataclass_options(Limits, **{"*": {"positive": True}}),
    "timing": _table(
        Option("reference_notebook", str, doc="the reference solution beside assignment.toml, timed for time_ratio"),
        Option("runs", int, default=3, minimum=1, doc="runs of the reference; its times are their median")),
    "leaderboard": _table(
        Option("rank", ("pareto", "challenge"), default=LeaderboardSpec.rank),
        Option("accuracy_gate", (float, dict[str, float]), default=LeaderboardSpec.accuracy_gate, minimum=0,
               maximum=1, doc="an accuracy, or one per dataset: {cifar10 = 0.9, digits32 = 0.95}")),
    "backbone": _table(Option("name", str, required=True, doc="the pretrained backbone (reference/backbones.py)")),
    "runner": _table(
        Option("device", ("auto", "cuda", "cpu"), default="auto",
               doc="auto: the GPU when a kernel in the sandbox can use it, else the CPU with a note; cuda: refuse to "
                   "grade without a usable GPU; cpu: never a GPU (harness/preflight.py)")),
    "checks": None,  # [[checks]]: an array of tables
}
