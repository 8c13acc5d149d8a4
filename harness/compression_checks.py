"""Check kinds of the compression labs and the challenge (issue 18): bits, sparsity and the course's score, from the
measuring process's figures (harness/compression.py), never from anything the notebook printed."""
from __future__ import annotations

from harness.check_registry import CheckResult, Evidence, _result, check_kind
from harness.options import Option
from harness.schema import CheckSpec
from harness.score import challenge_score

AT_MOST = Option("at_most", float, required=True, minimum=0, doc="the largest figure that passes")


def _layers(profile: dict) -> str:
    """'conv2d 8 (integer storage), linear 32 (dtype)': how each layer's bits were decided."""
    return ", ".join(f"{layer['op']} {layer['bits']} ({layer['rule']})" for layer in profile.get("compression", []))


@check_kind("weight_bits", AT_MOST)
def check_weight_bits(spec: CheckSpec, evidence: Evidence) -> CheckResult:
    """Bits per weight (weighted by size) at most `at_most`: 16 for half precision, 8 for int8, 1 for binary."""
    limit, got = float(spec.options["at_most"]), evidence.profile.get("weight_bits")
    if got is None:
        return _result(spec, 0.0, limit, None, "no weights were measured: the model has no parameters.")
    if got <= limit:
        return _result(spec, 1.0, limit, got, f"weights at {got:g} bits per weight, at most {limit:g}.")
    return _result(spec, 0.0, limit, got,
                   f"weights at {got:g} bits per weight, above {limit:g} (per layer: {_layers(evidence.profile)}): "
                   "the grader measures what the exported weights are, so quantize the model you submit (its "
                   "weights as stored, or their values on at most 2^bits levels per output channel).")


@check_kind("activation_bits", AT_MOST)
def check_activation_bits(spec: CheckSpec, evidence: Evidence) -> CheckResult:
    """Bits of the activations the layers take at most `at_most` (dequantized integers, or the float dtype)."""
    limit, got = float(spec.options["at_most"]), evidence.profile.get("activation_bits")
    if got is not None and got <= limit:
        return _result(spec, 1.0, limit, got, f"activations at {got:g} bits, at most {limit:g}.")
    return _result(spec, 0.0, limit, got,
                   f"activations at {got} bits, above {limit:g}: the layers take {got}-bit inputs; quantize the "
                   "activations in the model you export (quantize/dequantize around each layer, or a half-precision "
                   "model and input).")


@check_kind("sparsity",
            Option("unstructured", float, default=0.0, minimum=0, maximum=1,
                   doc="the share of weights that must be zero, whole filters included (e.g. 0.5)"),
            Option("structured", float, default=0.0, minimum=0, maximum=1,
                   doc="the share of weights that must lie in all-zero output channels (filters)"))
def check_sparsity(spec: CheckSpec, evidence: Evidence) -> CheckResult:
    """Zero weights of the exported model as its layers use them (prune's weight_orig x weight_mask counts)."""
    profile = evidence.profile
    structured = profile.get("structured_sparsity") or 0.0
    zero = structured + (profile.get("unstructured_sparsity") or 0.0)
    need_zero, need_structured = float(spec.options.get("unstructured", 0.0)), float(spec.options.get("structured",
                                                                                                      0.0))
    expected = {"zero": need_zero, "structured": need_structured}
    got = {"zero": round(zero, 6), "structured": round(structured, 6)}
    if zero >= need_zero and structured >= need_structured:
        return _result(spec, 1.0, expected, got, f"{zero:.1%} of the weights are zero ({structured:.1%} in whole "
                                                 "filters).")
    short = []
    if zero < need_zero and zero < need_zero / 10:
        short.append(f"{zero:.1%} of the weights are zero, {need_zero:.1%} needed: the model you submit is "
                     "(almost) dense. Prune it (torch.nn.utils.prune, global magnitude) and keep the masks while "
                     "fine-tuning: after prune.remove the zeros train back")
    elif zero < need_zero:
        short.append(f"{zero:.1%} of the weights are zero, {need_zero:.1%} needed: prune more (global magnitude "
                     "pruning), then fine-tune")
    if structured < need_structured:
        short.append(f"{structured:.1%} lie in all-zero filters, {need_structured:.1%} needed: prune whole output "
                     "channels (torch.nn.utils.prune.ln_structured, dim=0)")
    return _result(spec, 0.0, expected, got, "; ".join(short) + ".")


@check_kind("challenge_score", AT_MOST,
            Option("gate", float, default=0.9, minimum=0, maximum=1, doc="the held-out accuracy the score needs"))
def check_challenge_score(spec: CheckSpec, evidence: Evidence) -> CheckResult:
    """The course's score (harness/score.py) at most `at_most`, counted only at or above the accuracy `gate`."""
    limit, gate = float(spec.options["at_most"]), float(spec.options.get("gate", 0.9))
    p, accuracy = evidence.profile, evidence.metrics.get("accuracy")
    if accuracy is None or accuracy < gate:
        shown = "not measured" if accuracy is None else f"{accuracy:.2%}"
        return _result(spec, 0.0, limit, None, f"accuracy on the held-out split {shown}, below the gate of "
                                               f"{gate:.0%}: the score counts only at or above it.")
    score = challenge_score(p["weights"], p["macs"], p["weight_bits"], p["activation_bits"],
                            p.get("structured_sparsity") or 0.0, p.get("unstructured_sparsity") or 0.0)
    if score <= limit:
        return _result(spec, 1.0, limit, round(score, 6), f"score {score:.4f}, at most {limit:g}.")
    return _result(spec, 0.0, limit, round(score, 6),
                   f"score {score:.4f}, above {limit:g} (w {p['weights']:,}, f {p['macs']:,}, q_w {p['weight_bits']:g},"
                   f" q_a {p['activation_bits']:g}): fewer parameters and MACs, fewer bits, or more pruning.")
