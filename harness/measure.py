"""Measure an exported model: parameters, MACs (fvcore, cross-checked), activation shapes.

The grading path runs `measure_request` in a clean process (`harness.measuring_process`: a fresh child of a warmed-up
zygote)
that imports no student code and loads model.pt2 as data. `python -m harness.measure MODEL.pt2 --input-shape C,H,W`
does the same in a fresh process and prints one JSON object (the profile) on stdout.

Conventions (docs/architecture.md): batch 1, eval mode; `macs` is fvcore's total (one fused multiply-add = 1,
eval BatchNorm = 2 per element; pooling of every kind, activations, additions and resampling count 0, see
MAC_HANDLES); `flops_check` is torch's FlopCounterMode total (2 per MAC, conv/mm only) and must equal 2 *
`macs_conv_linear`.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Sequence

import torch
import torch.ao.quantization.fx._decomposed  # noqa: F401  registers quantized_decomposed: PT2E int8 programs load
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from harness.errors import MeasureError
from harness.model_audit import audit_program, model_warnings, with_warnings
from harness.profile import Profile

with warnings.catch_warnings():  # fvcore.nn warns about torch.jit.script on import
    warnings.simplefilter("ignore", FutureWarning)
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.flop_count import _DEFAULT_SUPPORTED_OPS
    from fvcore.nn.jit_handles import conv_flop_count, get_shape

CONV_LINEAR_OPS = ("conv", "_convolution_mode", "linear", "addmm", "matmul", "mm", "bmm", "einsum")
# One rule for weight-free ops: pooling of every kind, activations, elementwise arithmetic and resampling count 0
# MACs (and are listed in `unsupported_ops`). fvcore counts max/avg pooling, relu and add as 0 but has per-element
# handles for these four; they are dropped so that F.avg_pool2d and nn.AdaptiveAvgPool2d count the same (0).
WEIGHT_FREE_FVCORE_OPS = ("aten::adaptive_avg_pool2d", "aten::upsample_nearest2d", "aten::upsample_bilinear2d",
                          "aten::grid_sampler")


def load_program(path: str) -> torch.export.ExportedProgram:
    try:
        return torch.export.load(path)
    except Exception as exc:
        raise MeasureError(
            f"model.pt2 could not be loaded as an exported program ({type(exc).__name__}: {exc}); "
            "it must be written by harness.submit(model, example_input)"
        ) from exc


def program_input(ep: torch.export.ExportedProgram) -> torch.Tensor:
    """The example (fake) tensor recorded for the program's single tensor input."""
    user_inputs = [spec for spec in ep.graph_signature.input_specs if spec.kind.name == "USER_INPUT"]
    if len(user_inputs) != 1:
        raise MeasureError(f"the model must take exactly one tensor input, it takes {len(user_inputs)}")
    return next(n for n in ep.graph.nodes if n.op == "placeholder" and n.name == user_inputs[0].arg.name).meta["val"]


def program_input_shape(ep: torch.export.ExportedProgram) -> tuple[int, ...]:
    """Shape of one example (no batch dim) as recorded in the program's single tensor input."""
    return tuple(int(d) for d in program_input(ep).shape[1:])


def dtype_bits(dtype: torch.dtype) -> int:
    return torch.finfo(dtype).bits if dtype.is_floating_point else torch.iinfo(dtype).bits


def precision_and_sparsity(ep: torch.export.ExportedProgram) -> dict:
    """What the course's challenge score needs from the weights as the layers see them (harness/compression.py):
    `weights` w (what the layers use, whatever holds it; `params` counts registered parameters), `weight_bits` q_w
    (bits per weight, weighted by size), `activation_bits` q_a (of the layers' activations; of the program's input
    when no layer takes one), `structured_sparsity` p_s (weights in all-zero output channels) and
    `unstructured_sparsity` p_u (the other zero weights), both over w, and `compression`: per layer, its bits and
    the rule that decided them."""
    from harness.compression import activation_bits, compression_figures

    figures = compression_figures(ep)
    return {
        "weights": figures["params"],
        "weight_bits": figures["weight_bits"],
        "activation_bits": activation_bits(ep) or dtype_bits(program_input(ep).dtype),
        "structured_sparsity": figures["structured_sparsity"],
        "unstructured_sparsity": figures["unstructured_sparsity"],
        "compression": figures["layers"],
    }


def architecture(ep: torch.export.ExportedProgram) -> str | None:
    """Class name of the exported model (e.g. 'ResNet'): a label for leaderboards, never graded."""
    return stack_types(ep).get("")


def count_params(ep: torch.export.ExportedProgram) -> tuple[int, int]:
    """(total, trainable). Buffers (BatchNorm running stats) are in ep.state_dict too: use the signature."""
    params = [ep.state_dict[name] for name in ep.graph_signature.parameters]
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    return total, trainable


def static_module(ep: torch.export.ExportedProgram, x1: torch.Tensor) -> nn.Module:
    """The program re-exported at batch 1 and unflattened: module names come back and fvcore can trace it.

    fvcore cannot trace the unflattened *dynamic* program (SymInts), hence the static re-export.
    """
    static_ep = torch.export.export(ep.module(), (x1,))
    module = torch.export.unflatten(static_ep)
    module.module_types = module_types(static_ep)
    module.module_order = [entry.fqn for entry in ep.module_call_graph if entry.fqn and "@" not in entry.fqn]
    module.opless_shapes = opless_shapes(ep, x1)
    return module


def opless_shapes(ep: torch.export.ExportedProgram, x1: torch.Tensor) -> dict[str, list[int]]:
    """Output shape (without batch dim) of the modules that leave no node in the graph (nn.Identity), which
    unflatten drops: read from the call signature harness.export preserved for them, by running the program."""
    outputs = {}  # graph node name -> the op-less modules that returned it (a shared one as name@1: last call wins)
    for entry in ep.module_call_graph:
        if entry.fqn and entry.signature and len(entry.signature.outputs) == 1:
            outputs.setdefault(getattr(entry.signature.outputs[0], "name", None), []).append(entry.fqn.split("@")[0])
    if not outputs:
        return {}
    graph_module, values = ep.module(), {}
    user_inputs = [spec.arg.name for spec in ep.graph_signature.input_specs if spec.kind.name == "USER_INPUT"]
    placeholders = [node.name for node in graph_module.graph.nodes if node.op == "placeholder"]
    names = dict(zip(placeholders, user_inputs))  # ep.module() may rename the input ('input' -> 'input_1')

    class Recorder(torch.fx.Interpreter):
        def run_node(self, node):
            value = super().run_node(node)
            name = names.get(node.name, node.name)
            if name in outputs and isinstance(value, torch.Tensor):
                values[name] = list(value.shape[1:])
            return value

    with torch.no_grad():
        Recorder(graph_module).run(x1)
    return {fqn: values[name] for name, fqns in outputs.items() if name in values for fqn in fqns}


def stack_types(ep: torch.export.ExportedProgram) -> dict[str, str]:
    """Original class name of every module (e.g. 'Conv2d'; the model itself under ''), from nn_module_stack."""
    types: dict[str, str] = {}
    for node in ep.graph.nodes:
        for fqn, type_name in (node.meta.get("nn_module_stack") or {}).values():
            types[fqn] = str(type_name).rsplit(".", 1)[-1].strip("'>")
    return types


def module_types(ep: torch.export.ExportedProgram) -> dict[str, str]:
    """Original class name of each submodule, used for hints in messages."""
    return {fqn: name for fqn, name in stack_types(ep).items() if fqn}


def _conv_mode_macs(inputs, outputs) -> int:
    """fvcore handle for aten::_convolution_mode, what Conv2d(padding="same"/"valid") becomes; fvcore has none."""
    x_shape, w_shape, out_shape = get_shape(inputs[0]), get_shape(inputs[1]), get_shape(outputs[0])
    return conv_flop_count(x_shape, w_shape, out_shape, transposed=False)


QUANTIZE_OPS = tuple(f"quantized_decomposed::{kind}_per_{group}" for kind in ("quantize", "dequantize")
                     for group in ("tensor", "channel", "token", "channel_group"))  # per-element: no MACs
MAC_HANDLES = {**{op: handle for op, handle in _DEFAULT_SUPPORTED_OPS.items() if op not in WEIGHT_FREE_FVCORE_OPS},
               "aten::_convolution_mode": _conv_mode_macs, **dict.fromkeys(QUANTIZE_OPS)}


def count_macs(module: nn.Module, x1: torch.Tensor) -> dict:
    """fvcore with MAC_HANDLES: its own handles but the per-element ones of weight-free ops, plus _convolution_mode.
    `macs_by_module` holds every module with MACs, a parent's figure including its children's."""
    analysis = FlopCountAnalysis(module, x1).clear_op_handles().set_op_handle(**MAC_HANDLES)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        total = int(analysis.total())
        by_operator = {op: int(n) for op, n in analysis.by_operator().items()}
        by_module = {name: int(n) for name, n in analysis.by_module().items() if name and n}
        unsupported = {op: int(n) for op, n in analysis.unsupported_ops().items()}
    return {
        "macs": total,
        "macs_conv_linear": sum(n for op, n in by_operator.items() if op in CONV_LINEAR_OPS),
        "macs_by_module": by_module,
        "unsupported_ops": unsupported,
    }


def count_flops(module: nn.Module, x1: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        module(x1)
    return int(counter.get_total_flops())


def activation_shapes(module: nn.Module, x1: torch.Tensor) -> tuple[dict[str, list[int]], list[int]]:
    """Output shape (without batch dim) of every submodule that returns a tensor, and of the whole model. Modules
    come in the model's definition order, a parent before its children; those with no op of their own (nn.Identity)
    from the program's call signatures (`opless_shapes`)."""
    shapes: dict[str, list[int]] = {}
    hooks = []
    for name, sub in module.named_modules():
        if not name:
            continue

        def record(_mod, _inp, out, name=name):
            if isinstance(out, torch.Tensor):
                shapes[name] = list(out.shape[1:])

        hooks.append(sub.register_forward_hook(record))
    try:
        out = module(x1)
    finally:
        for hook in hooks:
            hook.remove()
    if not isinstance(out, torch.Tensor):
        raise MeasureError(f"the model must return one tensor (the logits), it returned {type(out).__name__}")
    shapes = {**getattr(module, "opless_shapes", {}), **shapes}
    order = [name for name in getattr(module, "module_order", []) if name in shapes]
    return {name: shapes[name] for name in order + [n for n in shapes if n not in order]}, list(out.shape[1:])


def params_by_module(module: nn.Module) -> dict[str, int]:
    """Parameters owned directly by each submodule (a Conv2d's weight + bias), as in the course's tables."""
    counts = {}
    for name, sub in module.named_modules():
        own = sum(p.numel() for p in sub.parameters(recurse=False))
        if name and own:
            counts[name] = own
    return counts


def profile_program(ep: torch.export.ExportedProgram, input_shape: Sequence[int] | None = None) -> Profile:
    """The profile of an exported program (see module docstring and the Profile JSON contract)."""
    shape = tuple(input_shape) if input_shape else program_input_shape(ep)
    torch.manual_seed(0)
    x1 = torch.randn(1, *shape).to(program_input(ep).dtype)
    total, trainable = count_params(ep)
    audit = audit_program(ep)  # before running it: a training-mode BatchNorm1d fails at batch 1
    try:
        module = static_module(ep, x1)
    except Exception as exc:
        raise MeasureError(with_warnings(
            f"the model does not run on an input of shape {list(shape)} (batch 1): {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}", model_warnings(audit)
        )) from exc
    with torch.no_grad():
        macs = count_macs(module, x1)
        flops = count_flops(module, x1)
        shapes, output_shape = activation_shapes(module, x1)
    return {
        "params": total,
        "trainable_params": trainable,
        **macs,
        "flops_check": flops,
        "flops_check_ok": flops == 2 * macs["macs_conv_linear"],
        "activation_shapes": shapes,
        "output_shape": output_shape,
        "params_by_module": params_by_module(module),
        "module_types": module.module_types,
        "input_shape": list(shape),
        "architecture": architecture(ep),
        **precision_and_sparsity(ep),
        **audit,
    }


def profile_module(model: nn.Module, input_shape: Sequence[int]) -> Profile:
    """Profile an in-memory model through the same export path a submission takes."""
    from harness.export import export_model

    return profile_program(export_model(model, torch.zeros(2, *input_shape)), input_shape)


def profile_file(path: str, input_shape: Sequence[int] | None = None) -> Profile:
    return profile_program(load_program(path), input_shape)


def evaluate_program(ep: torch.export.ExportedProgram, dataset: str, source_dir: str | None = None,
                     device: str = "cpu", batch_size: int = 500) -> dict:
    """Accuracy on the held-out split (batched, eval mode), latency (batch 1) and throughput (batch `batch_size`)
    on `device`, or on the CPU with a note when the model fails on the device only (harness/measure_device.py). A
    model that does not return one score per class gets no accuracy, and `accuracy_error` says why (the other
    checks still measure it: its output_shape check shows expected vs got)."""
    from harness.data import info, load_test
    from harness.measure_device import evaluate, measure_on_device_or_cpu, on_device

    x, y = load_test(dataset, source_dir)
    x = x.to(program_input(ep).dtype)
    num_classes = info(dataset).num_classes

    def measure_on(where: str) -> dict:
        with torch.no_grad():
            return evaluate(on_device(ep.module(), where), x, y, num_classes, dataset, where, batch_size)

    result, _, note = measure_on_device_or_cpu(measure_on, device)
    return {**result, "notes": [note]} if note else result


def compare_with_backbone(ep: torch.export.ExportedProgram, backbone_file: str) -> dict:
    """Which of the pretrained backbone's parameters the exported model still holds unchanged (proof of freezing).

    A backbone parameter is matched with the exported parameter of the same name, or of a name ending in
    ".<name>" (a backbone wrapped in another module). Same shape: `unchanged` or `changed` (max |difference|);
    another shape: `replaced`; not found: left out. Buffers (BatchNorm statistics) are not parameters: not compared.
    """
    blob = torch.load(backbone_file, weights_only=True, map_location="cpu")
    reference = blob.get("state_dict", blob)
    exported = {name: ep.state_dict[name] for name in ep.graph_signature.parameters}
    unchanged, changed, replaced = [], [], []
    for name, weights in reference.items():
        match = exported.get(name)
        if match is None:
            candidates = [v for k, v in exported.items() if k.endswith("." + name)]
            match = candidates[0] if len(candidates) == 1 else None
        if match is None:
            continue
        if match.shape != weights.shape:
            replaced.append(name)
            continue
        difference = (match.detach().float() - weights.float()).abs().max().item()
        if difference > 0:
            changed.append([name, difference])
        else:
            unchanged.append(name)
    return {"unchanged": unchanged, "changed": changed, "replaced": replaced}


def measure_request(request: dict) -> Profile:
    """{model, input_shape, [dataset, data_source, device, backbone]} -> profile (+ accuracy and latency_ms with a
    dataset, + `backbone`: the comparison with the pretrained backbone file)."""
    from harness.data import DataError

    program = load_program(request["model"])
    profile = profile_program(program, request.get("input_shape"))
    if request.get("backbone"):
        profile["backbone"] = compare_with_backbone(program, request["backbone"])
    if request.get("dataset"):
        try:
            profile.update(evaluate_program(program, request["dataset"], request.get("data_source"),
                                            request.get("device", "cpu")))
        except DataError as exc:
            raise MeasureError(f"held-out data unavailable on the grader: {exc}") from None
        except RuntimeError as exc:
            raise MeasureError(f"the model failed on the held-out data: {str(exc).splitlines()[0]}") from None
    return profile


def warm_up() -> None:
    """Pay the one-time costs (the dynamo import behind torch.export.load, the first export and trace) on a tiny
    model of our own while the student's notebook is still running."""
    import torch._export.serde.serialize  # noqa: F401

    profile_module(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 2)), (1, 3, 3))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.measure", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="an exported program (model.pt2)")
    parser.add_argument("--input-shape", help="C,H,W of one example; default: the shape recorded in the program")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # torch.export logs to stderr; stdout carries only the JSON
    shape = [int(d) for d in args.input_shape.split(",")] if args.input_shape else None
    try:
        profile = measure_request({"model": args.model, "input_shape": shape})
    except MeasureError as exc:
        profile = {"error": str(exc)}
    print(json.dumps(profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
