"""`harness.submit(model, example_input, **answers)`: what the locked last cell of every notebook calls.

Under the grader (DLGRADE_OUTPUT_DIR set) it writes `model.pt2` (torch.export, dynamic batch), one `<name>.pt2` per
extra model (e.g. the from-scratch baseline of a transfer-learning lab) and `answers.json` to the run's output
directory; nothing else leaves the kernel, and even these are only data to the grader (which reads only the extra
models its assignment declares).
In plain Jupyter it writes to ./dlgrade_out/ and prints a quick local profile.
"""
from __future__ import annotations

import json
import numbers
import os
from pathlib import Path

import torch
from torch import nn

from harness.errors import BadInput
from harness.export import ExportError, export_model
from harness.schema import EXTRA_MODEL_NAME

LOCAL_OUTPUT_DIR = "dlgrade_out"


class SubmissionError(BadInput):
    """An answer that cannot be submitted; the message says how to fix it."""


def submit(model: nn.Module, example_input: torch.Tensor, extra_models: dict[str, nn.Module] | None = None,
           **answers) -> Path:
    """Export `model` (and each of `extra_models`, name -> module) and save the exercise `answers` for grading.
    Returns the output directory. Every model is exported before anything is written."""
    graded = "DLGRADE_OUTPUT_DIR" in os.environ
    out = Path(os.environ.get("DLGRADE_OUTPUT_DIR", LOCAL_OUTPUT_DIR))
    out.mkdir(parents=True, exist_ok=True)
    plain_answers = {name: to_plain(value, name) for name, value in answers.items() if value is not None}
    programs = {"model": export_model(model, example_input)}  # ExportError says what to change
    for name, extra in (extra_models or {}).items():
        if not EXTRA_MODEL_NAME.fullmatch(str(name)) or name == "model":
            raise SubmissionError(f"extra model name {name!r}: use a short lowercase identifier such as 'scratch'")
        try:
            programs[name] = export_model(extra, example_input)
        except ExportError as exc:
            raise ExportError(f"extra model '{name}': {exc}") from exc
    for name, program in programs.items():
        torch.export.save(program, out / f"{name}.pt2")
    (out / "answers.json").write_text(json.dumps(plain_answers, indent=1))
    if not graded:
        print_local_profile(programs["model"], plain_answers, out, list(programs))
    return out


def to_plain(value, name: str):
    """Answers as JSON values: numbers, strings, lists and dicts (tuples, torch.Size and scalars converted)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, (list, tuple, torch.Size)):
        return [to_plain(v, name) for v in value]
    if isinstance(value, dict):
        return {str(k): to_plain(v, name) for k, v in value.items()}
    raise SubmissionError(
        f"answer '{name}' must be made of numbers, strings, lists, tuples and dicts, not {type(value).__name__}"
        + (": use .tolist()" if isinstance(value, torch.Tensor) else "")
    )


def print_local_profile(program, answers: dict, out: Path, names) -> None:
    from harness.measure import profile_program

    profile = profile_program(program)
    print(f"saved {', '.join(str(out / f'{name}.pt2') for name in names)} and {out / 'answers.json'} "
          f"(answers: {', '.join(answers) or 'none'})")
    print(f"parameters {profile['params']:,} (trainable {profile['trainable_params']:,}), "
          f"MACs {profile['macs']:,} for one {tuple(profile['input_shape'])} input, "
          f"output {tuple(profile['output_shape'])}")
    for name, shape in profile["activation_shapes"].items():
        print(f"  {name:<24} {str(tuple(shape)):<20} {profile['params_by_module'].get(name, 0):>10,} params")
    print("This is a local preview: grades come from `dlgrade check NOTEBOOK --assignment ID`.")


__all__ = ["submit", "SubmissionError", "ExportError"]
