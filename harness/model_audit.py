"""What an exported program shows that its author did not mean: layer weights that are not parameters, and layers
left in training mode. Both come from submodules kept in a plain Python list or dict (not registered: their weights
are exported as tensor constants, and model.eval() does not reach them), and both grade badly without saying why.

`audit_program` runs in the measuring process and fills three profile keys (harness/profile.py); `model_warnings`
turns them into sentences for the check messages (harness/checks.py) and the result's notes. This module imports
no torch at module level, so the checks can import it.

Rules (docs/architecture.md, Measurement conventions):
- `constant_weights` / `constant_weight_values`: floating-point tensor constants of the program (lifted constants
  and get_attr tensors) that a layer operation (LAYER_OPS: conv, linear, matmul, normalisation, embedding, RNN) takes
  as an argument. The rule is on how a constant is used, not on its size: a normalisation mean or a scale (used by
  sub/div/mul) or a mask (where/masked_fill) is never counted whatever its shape, while a list-kept layer's weights
  are counted even when tiny (a BatchNorm's 1-D weight, bias and running statistics). Registered buffers are buffers,
  not constants: never counted.
- `train_mode_ops`: every operation that takes a training flag (`training` of the batch-norm family, `train` of the
  dropout family) set to True. An eval-mode export sets it False everywhere, or uses an op without the flag
  (_native_batch_norm_legit_no_training), so each one found runs in training mode at test time.
"""
from __future__ import annotations

from collections import Counter
from functools import reduce
from typing import TYPE_CHECKING

from harness.profile import TrainModeOp

if TYPE_CHECKING:
    import torch
    from torch.fx import Node

LAYER_OPS = frozenset({
    "conv1d", "conv2d", "conv3d", "convolution", "_convolution", "_convolution_mode",
    "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "linear", "bilinear",
    "mm", "bmm", "matmul", "addmm", "baddbmm", "addmv", "mv", "einsum",
    "batch_norm", "native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_functional",
    "_native_batch_norm_legit_no_training", "cudnn_batch_norm", "instance_norm", "layer_norm", "native_layer_norm",
    "group_norm", "native_group_norm", "rms_norm", "embedding", "embedding_bag", "_embedding_bag", "prelu",
    "_prelu_kernel", "lstm", "gru", "rnn_tanh", "rnn_relu",
})
TRAINING_FLAGS = ("training", "train")  # the batch-norm family's argument name, the dropout family's
LAYER_CODE = "/torch/nn/modules/"  # a frame of a torch.nn layer's forward in a node's stack trace
LAYER_NAMES = {"batch_norm": "BatchNorm layer", "dropout": "Dropout layer"}
TRAINING_EFFECT = {"batch_norm": "normalising with each batch's statistics, not the running ones",
                   "dropout": "dropping activations at test time"}
CODE_CHARS = 100  # of the student's source line kept per training-mode op


def audit_program(ep: torch.export.ExportedProgram) -> dict:
    """The profile keys `constant_weights`, `constant_weight_values` and `train_mode_ops` (module docstring)."""
    weights = constant_weights(ep)
    return {
        "constant_weights": len(weights),
        "constant_weight_values": sum(int(t.numel()) for t in weights),
        "train_mode_ops": train_mode_ops(ep),
    }


def _op_name(node: Node) -> str | None:
    """'conv2d' for aten.conv2d.default; None for what is no ATen operator (operator.getitem, submodule calls)."""
    return getattr(node.target, "_opname", None) if node.op == "call_function" else None


def _flat(args) -> list:
    """The arguments of a node with lists and tuples opened (RNN weights and einsum operands come as lists)."""
    flat = []
    for arg in args:
        flat.extend(_flat(arg) if isinstance(arg, (list, tuple)) else [arg])
    return flat


def tensor_constants(ep: torch.export.ExportedProgram) -> dict[str, torch.Tensor]:
    """Graph node name -> tensor, for the lifted tensor constants (the signature's CONSTANT_TENSOR inputs: not
    ep.constants, which also holds non-persistent buffers) and any get_attr node that holds a tensor."""
    import torch

    found = {spec.arg.name: ep.constants[spec.target] for spec in ep.graph_signature.input_specs
             if spec.kind.name == "CONSTANT_TENSOR" and spec.target in ep.constants}
    for node in ep.graph.nodes:
        if node.op == "get_attr":
            value = reduce(lambda owner, name: getattr(owner, name, None), node.target.split("."), ep.graph_module)
            if isinstance(value, torch.Tensor):
                found[node.name] = value
    return {name: t for name, t in found.items() if isinstance(t, torch.Tensor)}


def constant_weights(ep: torch.export.ExportedProgram) -> list[torch.Tensor]:
    """The floating-point tensor constants that a layer operation takes as an argument, each once."""
    constants = tensor_constants(ep)
    used: dict[str, torch.Tensor] = {}
    for node in ep.graph.nodes:
        if _op_name(node) in LAYER_OPS:
            for arg in _flat([*node.args, *node.kwargs.values()]):
                name = getattr(arg, "name", None)
                if name in constants and constants[name].is_floating_point():
                    used[name] = constants[name]
    return list(used.values())


def _training_flag(node: Node) -> bool:
    """Whether the node's `training`/`train` argument is True (given by keyword, by position, or its default)."""
    schema = getattr(node.target, "_schema", None)
    for index, argument in enumerate(schema.arguments if schema else ()):
        if argument.name in TRAINING_FLAGS:
            if argument.name in node.kwargs:
                return node.kwargs[argument.name] is True
            if index < len(node.args):
                return node.args[index] is True
            return argument.has_default_value() and argument.default_value is True
    return False


def _op_kind(name: str) -> str:
    """'batch_norm' for every batch-norm variant, 'dropout' for every dropout variant, else the op's own name."""
    return next((kind for kind in LAYER_NAMES if kind in name), name)


def _student_line(stack_trace: str) -> str:
    """The last source line of the stack trace that is not torch's own: the student's call."""
    frames = stack_trace.strip().split("\n  File ")
    own = [frame.splitlines() for frame in frames if "/torch/" not in frame.split("\n", 1)[0].replace("\\", "/")]
    return own[-1][1].strip()[:CODE_CHARS] if own and len(own[-1]) > 1 else ""  # the line after "File ..., line N"


def _train_mode_op(node: Node) -> TrainModeOp:
    """Where a training-mode op came from: the innermost registered module (nn_module_stack), and whether a
    torch.nn layer's forward ran it without being that module (a layer kept in a plain list or dict)."""
    stack = list((node.meta.get("nn_module_stack") or {}).values())
    module, module_type = stack[-1] if stack else ("", "")
    trace = (node.meta.get("stack_trace") or "").replace("\\", "/")
    return {
        "op": _op_kind(_op_name(node)),
        "module": module,
        "module_type": str(module_type).rsplit(".", 1)[-1].strip("'>"),
        "unregistered": LAYER_CODE in trace and not str(module_type).startswith("torch.nn.modules."),
        "code": _student_line(trace),
    }


def train_mode_ops(ep: torch.export.ExportedProgram) -> list[TrainModeOp]:
    """One entry per operation exported in training mode, in graph order."""
    return [_train_mode_op(node) for node in ep.graph.nodes if _op_name(node) and _training_flag(node)]


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def constant_weight_warning(profile: dict) -> str | None:
    """The sentence about weights exported as constants, or None when there are none."""
    count = profile.get("constant_weights") or 0
    if not count:
        return None
    return (f"{_plural(count, 'tensor constant')} holding {profile['constant_weight_values']:,} values feed layers "
            "but are not parameters: layers kept in a plain Python list or dict are not registered; use "
            "nn.ModuleList / nn.ModuleDict (or nn.Sequential), and nn.Parameter for weights created as plain tensors.")


def _where(ops: list[TrainModeOp]) -> str:
    """'ListCNN at `x = layer(x)` (x8), blocks.0 (Block) (x2)': the registered modules whose forward ran them, and
    the student's line where the stack trace has one."""
    counts = Counter((op["module"], op["module_type"], op["code"]) for op in ops)
    return ", ".join((f"{module} ({kind})" if module else kind or "the model") + (f" at `{code}`" if code else "")
                     + f" (x{count})" for (module, kind, code), count in counts.items())


def train_mode_warnings(profile: dict) -> list[str]:
    """One sentence per kind of training-mode op (batch norm, dropout, others), saying what to change."""
    ops = profile.get("train_mode_ops") or []
    sentences = []
    for kind in dict.fromkeys(op["op"] for op in ops):
        of_kind = [op for op in ops if op["op"] == kind]
        what = _plural(len(of_kind), LAYER_NAMES.get(kind, f"{kind} op"))
        effect = f" ({TRAINING_EFFECT[kind]})" if kind in TRAINING_EFFECT else ""
        if all(op["unregistered"] for op in of_kind):
            advice = ("submodules kept in a plain list or dict are not switched by model.eval(); use "
                      "nn.ModuleList / nn.ModuleDict")
        else:
            advice = ("forward() runs them in training mode: keep submodules in nn.ModuleList / nn.ModuleDict, "
                      "pass training=self.training to F.dropout / F.batch_norm, and leave the mode to model.eval()")
        verb = "was" if len(of_kind) == 1 else "were"
        sentences.append(f"{what} {verb} exported in training mode{effect}, in {_where(of_kind)}: {advice}.")
    return sentences


def model_warnings(profile: dict) -> list[str]:
    """What the profile shows about unregistered layers and training mode, as sentences for the result's notes."""
    constants = constant_weight_warning(profile)
    return ([constants] if constants else []) + train_mode_warnings(profile)


def warnings_for(key: str, profile: dict) -> list[str]:
    """The model warnings that explain a failed check of `key`. Parameter counts change only with weights kept as
    constants; MACs (fvcore counts a training-mode BatchNorm 5 per element, not 2) and accuracy change with both."""
    if key in ("params", "trainable_params"):
        return [sentence for sentence in [constant_weight_warning(profile)] if sentence]
    return model_warnings(profile)


def with_warnings(message: str, warnings: list[str]) -> str:
    """`message` followed by the warnings, as sentences."""
    if not warnings:
        return message
    message = message.rstrip()
    return f"{message}{'' if message.endswith('.') else '.'} {' '.join(warnings)}"
