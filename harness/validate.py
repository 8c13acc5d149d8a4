"""Every problem of an assignment, found before any notebook runs (`dlgrade validate`, and `load_spec` for every
command): unknown tables and keys (with the nearest valid name), options each check kind declares (required, types,
ranges), references between tables (extra models, the reference model, the backbone, the timing reference), and the
notebooks (harness/source_notebook.py). Each problem is one line naming the file, the table and the key.
"""
from __future__ import annotations

from pathlib import Path

from harness.checks import CHECK_KINDS, CHECK_OPTIONS, COMMON_OPTIONS
from harness.options import Option, suggestion, table_problems, value_problem
from harness.schema import EXTRA_MODEL_NAME, HARNESS_PARAMETERS, HARNESS_READ_PARAMETERS, MODEL_OPTIONS, TABLES
from harness.source_notebook import NotebookFacts, notebook_facts

TOML = "assignment.toml"
REFERENCE_MEASURES = ("activation_shapes", "activation_sizes", "params_by_module")  # answers measured on a model
_NUMBER = Option("at", float)


def assignment_problems(root: Path, data: dict) -> list[str]:
    problems = [f"{TOML}: {p}" for p in toml_problems(data)]
    meta = data.get("assignment") if isinstance(data.get("assignment"), dict) else {}
    notebook = root / str(meta.get("notebook", f"{meta.get('id', root.name)}.ipynb"))
    if not notebook.is_file():
        problems.append(f"{TOML}: [assignment] notebook: {notebook.name} not found in {root}")
        return problems
    notebook_problems, facts = notebook_facts(notebook)
    problems += notebook_problems
    problems += [f"{TOML}: {p}" for p in cross_problems(data, facts)]
    reference = _table(data, "timing").get("reference_notebook")
    if isinstance(reference, str) and not (root / reference).is_file():
        problems.append(f"{TOML}: [timing] reference_notebook: {reference} not found in {root}")
    elif isinstance(reference, str) and root / reference != notebook:
        problems += notebook_facts(root / reference, source=False)[0]
    return problems


def toml_problems(data: dict) -> list[str]:
    """The tables and their keys, each against its declaration."""
    problems = []
    for name, value in data.items():
        if name not in TABLES:
            problems.append(f"[{name}]: unknown table{suggestion(name, TABLES, '[{}]')}")
        elif name == "checks":
            problems += check_problems(value, data)
        elif not isinstance(value, dict):
            problems.append(f"[{name}]: expected a table ([{name}] followed by key = value lines), got {value!r}")
        elif TABLES[name] is not None:
            problems += table_problems(value, TABLES[name], f"[{name}]")
    if "assignment" not in data:
        problems.append("[assignment]: missing: it needs at least input_shape = [C, H, W]")
    return problems


def check_problems(checks, data: dict) -> list[str]:
    if not isinstance(checks, list) or not all(isinstance(c, dict) for c in checks):
        return ["[[checks]]: expected an array of tables, each starting with a [[checks]] line"]
    problems, seen = [], set()
    for number, raw in enumerate(checks, 1):
        label = f"[[checks]] '{raw['id']}'" if isinstance(raw.get("id"), str) else f"[[checks]] number {number}"
        kind, check_id = raw.get("kind"), raw.get("id")
        if isinstance(check_id, str) and check_id in seen:
            problems.append(f"{label} id: another check has this id: check ids must be unique")
        seen.add(check_id if isinstance(check_id, str) else None)
        if kind == "notebook_test":
            problems.append(f"{label} kind: notebook_test checks come from the notebook's nbgrader test cells; "
                            "they are not declared in assignment.toml")
        elif isinstance(kind, str) and kind in CHECK_KINDS:
            problems += table_problems(raw, {**COMMON_OPTIONS, **CHECK_OPTIONS[kind]}, label, "option",
                                       f"{kind} checks need it")
            problems += kind_problems(raw, label, data)
        else:  # without its kind, only the keys every check has can be judged
            if isinstance(kind, str):
                problems.append(f"{label} kind: unknown check kind '{kind}'{suggestion(kind, CHECK_KINDS)}")
            problems += table_problems({k: v for k, v in raw.items() if k in COMMON_OPTIONS}, COMMON_OPTIONS, label)
    return problems


def kind_problems(raw: dict, label: str, data: dict) -> list[str]:
    """Rules between a check's options and the rest of the assignment."""
    kind, problems = raw["kind"], []
    parameters, meta = _table(data, "parameters"), _table(data, "assignment")
    declared = CHECK_OPTIONS[kind]
    measure = raw.get("measure")
    if ("expected" in declared and raw.get("expected", "reference") == "reference") or measure in REFERENCE_MEASURES:
        problems += _reference_problems(raw.get("reference", meta.get("reference")), label)
    if measure in ("conv_output_size", "autograd"):
        problems += _case_problems(raw.get("cases"), measure, label)
    if kind in ("accuracy", "beats") and "dataset" not in parameters:
        problems.append(f"{label}: {kind} checks need a dataset: set [parameters] dataset = \"digits32\" (or "
                        "another harness.data dataset), or no accuracy is ever measured")
    if kind == "frozen_backbone" and "backbone" not in data:
        problems.append(f"{label}: a frozen_backbone check needs [backbone] name = ... (the pretrained backbone)")
    if kind == "time_ratio" and "reference_notebook" not in _table(data, "timing"):
        problems.append(f"{label}: a time_ratio check needs [timing] reference_notebook = ... (the reference "
                        "solution it is compared with)")
    extra = meta.get("extra_models", [])
    for option in MODEL_OPTIONS:
        name = raw.get(option)
        if isinstance(name, str) and name not in extra:
            problems.append(f"{label} {option}: '{name}' is not one of [assignment] extra_models "
                            f"({', '.join(map(str, extra)) or 'none declared'})")
    return problems


def _table(data: dict, name: str) -> dict:
    value = data.get(name, {})
    return value if isinstance(value, dict) else {}


def _reference_problems(name, label: str) -> list[str]:
    from reference.models import REGISTRY

    if name is None:
        return [f"{label} expected: missing, and there is no reference model to measure it on: set expected = ..., "
                "or reference = \"<a reference/models name>\" here or in [assignment]"]
    if isinstance(name, str) and name not in REGISTRY:
        return [f"{label} reference: unknown reference model '{name}'{suggestion(name, REGISTRY)}"]
    return []


def _case_problems(cases, measure: str, label: str) -> list[str]:
    if cases is None:
        return [f"{label} cases: missing, answers checks measuring {measure} need it"]
    if not isinstance(cases, list):
        return []  # its type is reported by the declaration
    problems = []
    for number, case in enumerate(cases, 1):
        if measure == "conv_output_size":
            if not (isinstance(case, list) and len(case) == 4 and all(type(v) is int and v >= 0 for v in case)):
                problems.append(f"{label} cases: case {number} is {case!r}, expected [W, F, P, S] (4 whole numbers)")
            continue
        if not (isinstance(case, list) and len(case) == 2 and isinstance(case[0], str)
                and value_problem(_NUMBER, case[1]) is None):
            problems.append(f"{label} cases: case {number} is {case!r}, expected [\"expression in x\", at]")
            continue
        try:
            compile(case[0], "<case>", "eval")
        except SyntaxError as exc:
            problems.append(f"{label} cases: case {number} expression {case[0]!r}: SyntaxError: {exc.msg}")
    return problems


def cross_problems(data: dict, facts: NotebookFacts) -> list[str]:
    """assignment.toml against the source notebook and the rest of dlgrade (datasets, backbones, models)."""
    from harness.data import DATASETS
    from reference.backbones import BACKBONES

    problems, meta = [], _table(data, "assignment")
    notebook_names = facts.parameters | set(HARNESS_READ_PARAMETERS)
    for table in ("parameters", "selfcheck"):
        for name, value in _table(data, table).items():
            if name in HARNESS_PARAMETERS:
                problems.append(f"[{table}] {name}: set by the harness for every run; remove it")
            elif facts.parameters and name not in notebook_names:
                problems.append(f"[{table}] {name}: the notebook's parameters cell does not set {name}"
                                f"{suggestion(name, notebook_names)}")
            elif name == "dataset" and value not in DATASETS:
                problems.append(f"[{table}] dataset: unknown dataset {value!r}{suggestion(str(value), DATASETS)}")
    backbone = _table(data, "backbone").get("name")
    if isinstance(backbone, str) and backbone not in BACKBONES:
        problems.append(f"[backbone] name: unknown backbone '{backbone}'{suggestion(backbone, BACKBONES)}")
    if isinstance(meta.get("reference"), str):
        problems += _reference_problems(meta["reference"], "[assignment]")
    problems += _extra_model_problems(meta.get("extra_models", []), facts)
    problems += _answer_problems(data.get("checks"), facts)
    clashing = {c["id"] for c in _checks(data) if isinstance(c.get("id"), str)} & set(facts.grade_ids)
    problems += [f"[[checks]] '{check_id}' id: also the grade_id of a cell of the notebook: nbgrader needs unique "
                 "ids (each check becomes a grade cell); rename the check" for check_id in sorted(clashing)]
    return problems


def _checks(data: dict) -> list[dict]:
    checks = data.get("checks", [])
    return [c for c in checks if isinstance(c, dict)] if isinstance(checks, list) else []


def _extra_model_problems(names, facts: NotebookFacts) -> list[str]:
    if not isinstance(names, list):
        return []  # its type is reported by the declaration
    problems = [f"[assignment] extra_models: {name!r} is not a short lowercase identifier (e.g. 'scratch')"
                for name in names
                if not (isinstance(name, str) and EXTRA_MODEL_NAME.fullmatch(name)) or name == "model"]
    if facts.extra_models is not None:
        problems += [f"[assignment] extra_models: the notebook's harness.submit call does not submit '{name}': pass "
                     f"extra_models={{'{name}': <model>, ...}}" for name in names if name not in facts.extra_models]
    return problems


def _answer_problems(checks, facts: NotebookFacts) -> list[str]:
    """An answers check whose answer the submit cell never passes fails every student."""
    if facts.submit_keywords is None:
        return []
    return [f"[[checks]] '{c.get('id')}' answer: the notebook's harness.submit call passes no {c['answer']}=...: "
            f"add it to the locked submit cell{suggestion(c['answer'], facts.submit_keywords - {'extra_models'})}"
            for c in _checks({"checks": checks}) if c.get("kind") == "answers" and isinstance(c.get("answer"), str)
            and c["answer"] not in facts.submit_keywords]
