"""Export a model with torch.export, batch dimension dynamic, ready to be measured elsewhere.

Used by `harness.submit` inside the student kernel and by `dlgrade profile` for models we build ourselves.
The exported program is data (a graph + weights), so the measuring process never imports student code.
"""
from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from harness.errors import BadInput

MIN_EXPORT_BATCH = 2  # torch.export specialises dimensions of size 1: export with >= 2 to keep batch dynamic


class ExportError(BadInput):
    """A model that torch.export cannot capture; the message says what to change (to the student in the kernel,
    to the user of `dlgrade profile file.py:factory`)."""


def example_batch(example_input: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The example input as a CPU batch of `dtype` with exactly MIN_EXPORT_BATCH rows, in storage of its own: the
    exported program keeps its example input, and `torch.save` writes a view's whole storage (a slice of the
    training set would carry the whole training set into model.pt2)."""
    if not isinstance(example_input, torch.Tensor):
        raise ExportError(
            f"example_input must be a torch.Tensor of shape (N, C, H, W), got {type(example_input).__name__}: "
            "pass one batch of your data, e.g. next(iter(train_loader))[0]"
        )
    if example_input.dim() < 2:
        raise ExportError(
            f"example_input must have a batch dimension, got shape {list(example_input.shape)}: "
            "use x.unsqueeze(0) for a single example"
        )
    x = example_input.detach().to("cpu", dtype).contiguous()
    if x.shape[0] < MIN_EXPORT_BATCH:
        x = x[:1].expand(MIN_EXPORT_BATCH, *x.shape[1:]).contiguous()
    return x[:MIN_EXPORT_BATCH].clone()


def export_model(model: nn.Module, example_input: torch.Tensor) -> torch.export.ExportedProgram:
    """Export a CPU, eval-mode copy of `model` with a dynamic batch dimension, in the model's own floating precision
    (a half-precision model stays half: the leaderboard's challenge score counts its bits).

    The student's model object is left untouched (device, mode and weights), so the notebook can go on using it.
    """
    if not isinstance(model, nn.Module):
        raise ExportError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    # torch.compile wraps the module; export the original one.
    model = getattr(model, "_orig_mod", model)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    x = example_batch(example_input, dtype)
    cpu_model = eval_mode(copy_of(model).to("cpu"))
    try:
        program = _export(cpu_model, x)
    except Exception as exc:  # torch raises many types here; all mean "not exportable"
        raise ExportError(explain_export_failure(exc, observers(cpu_model))) from exc
    opless = modules_without_ops(program)
    if not opless:
        return program
    try:  # again, keeping which tensor each op-less module returned: its activation shape (harness/measure.py)
        return _export(cpu_model, x, preserve_module_call_signature=opless)
    except Exception:  # the program above is complete; only those modules' activation shapes are lost
        return program


def _export(model: nn.Module, x: torch.Tensor, **options) -> torch.export.ExportedProgram:
    """torch.export with a dynamic batch dimension."""
    with warnings.catch_warnings():  # prune's forward pre-hook sets `weight` at every call: expected, not a bug
        warnings.filterwarnings("ignore", message="The tensor attributes .* were assigned during export")
        return torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},), **options)


def copy_of(model: nn.Module) -> nn.Module:
    """A deep copy, also of a model pruned with torch.nn.utils.prune: its `weight` is a computed (non-leaf) tensor
    that deepcopy refuses; the copy gets it detached, and prune's forward pre-hook recomputes it from `weight_orig`
    and `weight_mask` at every call."""
    memo = {id(value): value.detach().clone() for module in model.modules() for value in vars(module).values()
            if isinstance(value, torch.Tensor) and value.grad_fn is not None}
    return copy.deepcopy(model, memo)


def eval_mode(model: nn.Module) -> nn.Module:
    """model.eval(), or torchao's own way for a PT2E-quantized model, whose eval() raises NotImplementedError."""
    try:
        return model.eval()
    except NotImplementedError:
        from torchao.quantization.pt2e import move_exported_model_to_eval

        return move_exported_model_to_eval(model)


def modules_without_ops(program: torch.export.ExportedProgram) -> tuple[str, ...]:
    """Submodules the model calls that leave no node in the graph (nn.Identity, a forward that returns its input):
    torch.export.unflatten builds modules from the nodes' nn_module_stack, so these vanish from the unflattened
    program, and forward hooks cannot see them."""
    with_ops = {fqn for node in program.graph.nodes for fqn, _ in (node.meta.get("nn_module_stack") or {}).values()}
    return tuple(entry.fqn for entry in program.module_call_graph if entry.fqn and entry.fqn not in with_ops)


def observers(model: nn.Module) -> list[str]:
    """Names of the quantization observers and fake-quantize modules left in `model` (PyTorch's or torchao's:
    their classes derive from ObserverBase or FakeQuantizeBase): a model prepared for quantization, not converted."""
    return sorted(name for name, module in model.named_modules()
                  if any(cls.__name__ in ("ObserverBase", "FakeQuantizeBase") for cls in type(module).__mro__))


def explain_export_failure(exc: Exception, observer_names: list[str] | None = None) -> str:
    """Turn a torch.export failure into a message that says what to change in the model."""
    text = str(exc)
    first_line = next((line for line in text.splitlines() if line.strip()), type(exc).__name__)
    if observer_names:
        shown = ", ".join(observer_names[:3]) + (f" and {len(observer_names) - 3} more" if len(observer_names) > 3
                                                 else "")
        advice = (f"the model still holds quantization observers ({shown}): it was prepared for quantization but not "
                  "converted; after calibrating, submit `convert_pt2e(prepared)` (or `prepare_qat_pt2e` -> train -> "
                  "`convert_pt2e`)")
    elif "data-dependent" in text or "GuardOnDataDependent" in text or "DataDependent" in type(exc).__name__:
        advice = (
            "forward() branches on tensor values (e.g. `if x.sum() > 0:` or `.item()`), which torch.export cannot "
            "capture: use torch.where(...) for element-wise choices, or decide the branch from shapes/attributes"
        )
    elif "batch" in text and ("specializ" in text or "Constraints violated" in text):
        advice = (
            "forward() fixes the batch size (e.g. `x.view(64, -1)` or a tensor created with a fixed batch): use "
            "`x.flatten(1)` or `x.view(x.shape[0], -1)` and create tensors with `x.new_zeros(x.shape[0], ...)`"
        )
    elif "Unsupported" in type(exc).__name__ or "not supported" in text:
        advice = (
            "forward() calls something torch.export cannot trace (numpy, Python I/O, printing tensors, "
            "unsupported libraries): keep forward() to torch operations only"
        )
    else:
        advice = "keep forward() to torch operations on its input, with no Python logic that depends on tensor values"
    return f"torch.export could not capture your model ({type(exc).__name__}: {first_line[:300]}). {advice}."
