"""Readable console output for results and profiles."""
from __future__ import annotations

import textwrap

from tabulate import tabulate

from harness.result import STATUSES, SubmissionResult
from harness.score import challenge_score


def _fmt(value) -> str:
    return "-" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


def format_result(result: SubmissionResult) -> str:
    lines = [f"{result.assignment} / {result.submission}: {result.status}, score {result.score:g} / "
             f"{result.max_score:g}"]
    if result.error:
        lines.append(textwrap.fill(f"error ({result.error['kind']}): {result.error['message']}", 110,
                                   subsequent_indent="  "))
    rows = []
    for check in result.checks:
        mark = "PASS" if check.passed else "FAIL"
        rows.append([mark, check.id, f"{check.points:g}/{check.max_points:g}",
                     textwrap.fill(check.message, 80)])
    if rows and result.status == "graded":
        lines.append(tabulate(rows, headers=["", "check", "points", "message"], tablefmt="simple"))
    m = result.metrics
    sharing = result.run.get("runs_per_gpu")
    basis = ", ".join(filter(None, [f"{m['time_basis']} time" if m["time_basis"] else "",
                                    f"{sharing} run{'s' if sharing > 1 else ''} per GPU" if sharing else ""]))
    basis = f" ({basis})" if basis else ""
    lines.append(f"metrics: params {_fmt(m['params'])}, trainable {_fmt(m['trainable_params'])}, "
                 f"MACs {_fmt(m['macs'])}, accuracy {_fmt(m['accuracy'])}, train_time_s {_fmt(m['train_time_s'])}, "
                 f"train_cpu_s {_fmt(m['train_cpu_s'])}, charged {_fmt(m.get('charged_train_s'))}, "
                 f"time_ratio {_fmt(m['time_ratio'])}{basis}; run "
                 f"{result.run['wall_s']} s on {result.run['device']}")
    if m.get("latency_ms") is not None:
        where = f" on {m['latency_device']}" if m.get("latency_device") else ""
        speed = (f", throughput {m['throughput_per_s']:,.0f} examples/s at batch {m['throughput_batch']}{where}"
                 if m.get("throughput_per_s") else "")
        lines.append(f"  latency {m['latency_ms']:.3f} ms at batch 1{where}{speed}")
    if compressed(m):
        lines.append(f"  {compression_line(m)}")
    for name, extra in m.get("models", {}).items():
        lines.append(f"  extra model '{name}': params {_fmt(extra['params'])}, trainable "
                     f"{_fmt(extra['trainable_params'])}, MACs {_fmt(extra['macs'])}, "
                     f"accuracy {_fmt(extra['accuracy'])}" + (f"; {compression_line(extra)}" if compressed(extra)
                                                               else ""))
    lines += [textwrap.fill(f"note: {note}", 110, subsequent_indent="  ") for note in result.notes]
    return "\n".join(lines)


def compressed(m: dict) -> bool:
    """Whether the measured weights are anything but dense float32 (then the compression figures are shown)."""
    return m.get("weight_bits") is not None and (
        m["weight_bits"] != 32 or m.get("activation_bits") != 32 or bool(m.get("structured_sparsity"))
        or bool(m.get("unstructured_sparsity")))


def compression_line(m: dict) -> str:
    """'weights 20,234 at 16 bits, activations 16 bits, 49.6 % zero (0.0 % in whole filters), course score 0.00226'"""
    p_s, p_u = m.get("structured_sparsity") or 0.0, m.get("unstructured_sparsity") or 0.0
    score = challenge_score(m["weights"], m["macs"], m["weight_bits"], m["activation_bits"], p_s, p_u)
    return (f"weights {_fmt(m['weights'])} at {m['weight_bits']:g} bits, activations {m['activation_bits']} bits, "
            f"{p_s + p_u:.1%} zero ({p_s:.1%} in whole filters), course score {score:.3g}")


MODEL_OWN_FORWARD = "(model's own forward)"


def _enclosing(name: str, names: set[str]) -> str:
    """The closest module among `names` that holds `name` ('' = the model itself)."""
    while "." in name:
        name = name.rsplit(".", 1)[0]
        if name in names:
            return name
    return ""


def profile_rows(profile: dict) -> list[tuple[str, int, str, int, int, bool]]:
    """The profile table in tree order: (label, depth, activation shape, params, MACs, has no child row).

    A module's params and MACs include its children's. What a module computes outside its submodules (a functional
    call such as F.linear in its own forward) and the parameters it holds itself form a row "<name> (own forward)"
    after its children, and the model's own forward is the last row: the rows without children add up to `params`
    and `macs`."""
    shapes, own_params, macs = profile["activation_shapes"], profile["params_by_module"], profile["macs_by_module"]
    names = list(dict.fromkeys([*shapes, *own_params, *macs]))
    children: dict[str, list[str]] = {name: [] for name in ["", *names]}
    for name in names:
        children[_enclosing(name, set(names))].append(name)
    rows = []

    def add(name: str, depth: int) -> None:
        kids = children[name]
        params = sum(n for module, n in own_params.items() if module == name or module.startswith(name + "."))
        shape = str(tuple(shapes[name])) if name in shapes else "-"
        rows.append((name, depth, shape, params, macs.get(name, 0), not kids))
        for kid in kids:
            add(kid, depth + 1)
        own = (own_params.get(name, 0), macs.get(name, 0) - sum(macs.get(kid, 0) for kid in kids))
        if kids and any(own):
            rows.append((f"{name} (own forward)", depth + 1, "-", *own, True))

    for name in children[""]:
        add(name, 0)
    own = (profile["params"] - sum(own_params.values()), profile["macs"] - sum(macs.get(n, 0) for n in children[""]))
    if any(own):
        rows.append((MODEL_OWN_FORWARD, 0, "-", *own, True))
    return rows


def format_profile(profile: dict) -> str:
    rows = [["  " * depth + label, shape, _fmt(params), _fmt(macs)]
            for label, depth, shape, params, macs, _ in profile_rows(profile)]
    table = tabulate(rows, headers=["module", "activation (C,H,W)", "params", "MACs"], tablefmt="simple",
                     preserve_whitespace=True)
    check = "ok" if profile["flops_check_ok"] else "MISMATCH"
    unsupported = ", ".join(f"{op} x{n}" for op, n in profile["unsupported_ops"].items()) or "none"
    rule = ("MACs: 1 per multiply-add of conv/linear/matmul, 2 per element of eval BatchNorm; 0 for pooling (max, "
            f"average and adaptive alike), activations, elementwise ops and resampling; not counted: {unsupported}")
    return "\n".join([
        table,
        "a row includes the rows indented under it; '(own forward)': MACs outside any submodule (e.g. F.linear in a",
        "  forward) and parameters held directly; the rows with nothing indented under them add up to the totals",
        f"input {tuple(profile['input_shape'])} -> output {tuple(profile['output_shape'])}",
        f"params {profile['params']:,} (trainable {profile['trainable_params']:,})",
        f"MACs {profile['macs']:,} (fvcore, batch 1, eval); conv+linear {profile['macs_conv_linear']:,}",
        f"FlopCounterMode {profile['flops_check']:,} FLOPs = 2 x conv+linear MACs: {check}",
        textwrap.fill(rule, 110, subsequent_indent="  "),
    ])


def format_batch_summary(results: list[dict], skipped: int) -> str:
    """Counts per status and the mean score of a `dlgrade grade` run (+ the failed submissions and why)."""
    counts = [[s, sum(r["status"] == s for r in results)] for s in STATUSES]
    lines = [tabulate(counts + [["already recorded", skipped]], headers=["status", "submissions"],
                      tablefmt="simple")]
    if results:
        mean = sum(r["score"] for r in results) / len(results)
        lines.append(f"mean score {mean:.2f} / {results[0]['max_score']:g} over {len(results)} graded now")
    problems = [[r["submission"], r["status"], textwrap.shorten(r["error"]["message"], 90)]
                for r in results if r["error"]]
    if problems:
        lines.append(tabulate(problems, headers=["submission", "status", "reason"], tablefmt="simple"))
    return "\n\n".join(lines)
