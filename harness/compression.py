"""What the weights of an exported model are, as its layers see them: the course's compression figures (issue 18).

A layer's weight in an exported program is not always a parameter: torch.nn.utils.prune multiplies `weight_orig` by
a `weight_mask` buffer in a forward pre-hook, a fake-quantized or binarized layer rounds or signs its parameter in
its forward, PT2E quantization dequantizes an int8 tensor, a half-precision model casts. `effective_weights`
evaluates, for each weight-bearing layer op (conv, linear, embedding), the part of the graph that computes its weight
argument from parameters, buffers and constants alone (constant folding), and keeps where it came from.

Bits of an effective weight (`weight_bits`), the first rule that applies, named in the result:
- `"integer storage"`: it is dequantized from an integer tensor (an int8 parameter, buffer or constant): that
  dtype's bits (what it is stored in, whatever levels it uses);
- `"levels"`: its output channels are quantized to at most 2^k levels, k <= 8 (`level_bits`: a uniform grid, or
  repeated values): k (binary +-a: 1, ternary: 2, 4-bit: 4);
- `"dtype"`: its floating dtype's bits (fp16/bf16 16, fp32 32).
Sparsity is counted on effective weights, the parameter count stays dense (the course's w; p_s and p_u discount it).
This module imports torch lazily: the checks import it without torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch.fx import Node

WEIGHT_ARGUMENT = {  # op name -> position of its weight argument
    "conv1d": 1, "conv2d": 1, "conv3d": 1, "convolution": 1, "_convolution": 1,
    "conv_transpose1d": 1, "conv_transpose2d": 1, "conv_transpose3d": 1, "linear": 1, "embedding": 0,
}
BIAS_ARGUMENT = {op: 2 for op in WEIGHT_ARGUMENT if op != "embedding"}
MAX_LEVEL_BITS = 8
MIN_GRID_VALUES = 8  # a channel with fewer values says nothing about a grid (any 2 values are "uniform")
GRID_TOLERANCE = 1e-3  # of a grid index: dequantized products carry float rounding
MIN_REPEATS = 4
FOLDABLE_INPUTS = ("PARAMETER", "BUFFER", "CONSTANT_TENSOR")


@dataclass
class EffectiveWeight:
    op: str  # the node of the layer op that takes it
    sources: list[str]  # the parameters, buffers and constants it is computed from (state_dict / constants names)
    value: "torch.Tensor"  # as the layer op sees it
    bits: int
    rule: str  # "integer storage" | "levels" | "dtype"


def _op_name(node: Node) -> str | None:
    return getattr(node.target, "_opname", None) if node.op == "call_function" else None


class _Folder:
    """Evaluates nodes that depend only on parameters, buffers and constants; None for anything that reads the
    input (or an op that cannot run on real tensors)."""

    def __init__(self, ep: torch.export.ExportedProgram):
        self.values: dict[str, object] = {}  # node name -> folded value
        self.sources: dict[str, set[str]] = {}  # node name -> the stored tensors it is computed from
        self.stored: dict[str, torch.Tensor] = {}  # state_dict / constants name -> tensor
        for spec in ep.graph_signature.input_specs:
            if spec.kind.name in FOLDABLE_INPUTS:
                table = ep.constants if spec.target in ep.constants else ep.state_dict
                if spec.target in table:
                    self.stored[spec.target] = table[spec.target].detach()
                    self.values[spec.arg.name] = self.stored[spec.target]
                    self.sources[spec.arg.name] = {spec.target}

    def __call__(self, node) -> object | None:
        from torch.fx import Node

        if not isinstance(node, Node):
            return node
        if node.name in self.values:
            return self.values[node.name]
        if node.op != "call_function":
            return None
        args, kwargs, sources = [], {}, set()
        for arg in node.args:
            value = self._argument(arg, sources)
            if value is _UNFOLDABLE:
                return None
            args.append(value)
        for key, arg in node.kwargs.items():
            value = self._argument(arg, sources)
            if value is _UNFOLDABLE:
                return None
            kwargs[key] = value
        try:
            value = node.target(*args, **kwargs)
        except Exception:  # an op that needs more than real tensors (a custom op, an in-place one): not folded
            return None
        self.values[node.name], self.sources[node.name] = value, sources
        return value

    def _argument(self, arg, sources: set[str]):
        from torch.fx import Node

        if isinstance(arg, (list, tuple)):
            values = [self._argument(a, sources) for a in arg]
            return _UNFOLDABLE if any(v is _UNFOLDABLE for v in values) else type(arg)(values)
        if isinstance(arg, Node):
            value = self(arg)
            if value is None:
                return _UNFOLDABLE
            sources |= self.sources.get(arg.name, set())
            return value
        return arg


_UNFOLDABLE = object()


def effective_weights(ep: torch.export.ExportedProgram, fold: _Folder | None = None) -> list[EffectiveWeight]:
    """Each weight-bearing layer op's weight as it sees it, with its bits and the rule that decided them."""
    fold = fold or _Folder(ep)
    found = []
    for node in ep.graph.nodes:
        value, sources = _folded_argument(fold, node, WEIGHT_ARGUMENT)
        if value is not None:
            bits, rule = weight_bits(value, [fold.stored[name] for name in sources])
            found.append(EffectiveWeight(node.name, sources, value, bits, rule))
    return found


def _folded_argument(fold: _Folder, node, positions: dict[str, int]) -> tuple[torch.Tensor | None, list[str]]:
    """A layer op's argument at `positions[op]`, folded: (value, the stored tensors it comes from), or (None, [])."""
    import torch
    from torch.fx import Node

    position = positions.get(_op_name(node))
    if position is None or position >= len(node.args) or not isinstance(node.args[position], Node):
        return None, []
    value = fold(node.args[position])
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        return None, []
    return value, sorted(fold.sources.get(node.args[position].name, set()))


def weight_bits(value: torch.Tensor, stored: list[torch.Tensor] = ()) -> tuple[int, str]:
    """(bits, rule) of one effective weight (module docstring); `stored`: the tensors it is computed from."""
    import torch

    integer = [torch.iinfo(t.dtype).bits for t in stored
               if not t.is_floating_point() and t.dtype != torch.bool and t.numel() == value.numel()]
    if integer:
        return min(integer), "integer storage"
    levels = level_bits(value)
    if levels is not None and levels < torch.finfo(value.dtype).bits:
        return levels, "levels"
    return torch.finfo(value.dtype).bits, "dtype"


def level_bits(value: torch.Tensor) -> int | None:
    """k when the output channels (dim 0) are quantized to at most 2^k levels (k <= MAX_LEVEL_BITS), else None.
    Evidence, either: every channel of at least MIN_GRID_VALUES values and 3 distinct ones lies on a uniform grid
    (values = offset + integer x step: uniform quantization, per tensor or per channel), and one such channel
    exists; or the nonzero values repeat, each distinct one MIN_REPEATS times on average (non-uniform codebooks).
    A float tensor has neither, whatever its size; zeros (pruning) are not evidence."""
    rows = value.detach().float().reshape(value.shape[0], -1) if value.dim() >= 2 else value.detach().float()[None]
    levels, uniform, informative = [], True, False
    for row in rows:
        distinct = row.unique()
        count = int(distinct.numel())
        if count >= 3 and row.numel() >= MIN_GRID_VALUES:
            informative = True
            step = (distinct[1:] - distinct[:-1]).min()
            grid = (distinct - distinct[0]) / step
            uniform = uniform and bool(((grid - grid.round()).abs() < GRID_TOLERANCE).all())
            count = int(grid[-1].round()) + 1 if uniform else count
        levels.append(count)
    nonzero = rows[rows != 0]
    repeated = nonzero.numel() >= MIN_REPEATS * sum(int(row[row != 0].unique().numel()) for row in rows) > 0
    if not ((uniform and informative) or repeated):
        return None
    k = max(1, math.ceil(math.log2(max(levels))))
    return k if k <= MAX_LEVEL_BITS else None


def activation_bits(ep: torch.export.ExportedProgram) -> int | None:
    """Bits of the activations the layers take (q_a), the largest over weight-bearing layer ops (embeddings take
    indices: skipped): a dequantize op's integer input (PT2E's quantize/dequantize pairs on activations) gives that
    integer dtype's bits, else the activation's own dtype (fp16 16, fp32 32). None without such a layer."""
    import torch

    found = []
    for node in ep.graph.nodes:
        name = _op_name(node)
        if name not in WEIGHT_ARGUMENT or name == "embedding" or not node.args:
            continue
        activation = node.args[0]
        producer_name = _op_name(activation) or ""
        if "dequantize" in producer_name and activation.args:
            stored = activation.args[0].meta.get("val") if hasattr(activation.args[0], "meta") else None
            if stored is not None and not stored.dtype.is_floating_point:
                found.append(torch.iinfo(stored.dtype).bits)
                continue
        value = activation.meta.get("val") if hasattr(activation, "meta") else None
        if value is not None and value.dtype.is_floating_point:
            found.append(torch.finfo(value.dtype).bits)
    return max(found) if found else None


@dataclass
class CountedWeights:
    """The course's w, tensor by tensor, each as the model uses it."""
    values: list[torch.Tensor]  # effective values (what the layers see), dense
    bits: list[int]
    layers: list[EffectiveWeight]


def counted_weights(ep: torch.export.ExportedProgram) -> CountedWeights:
    """The model's weights the course's way (w), counted by what the layers use, whatever holds them:
    - each layer op's effective weight (one per distinct set of stored sources: a tied weight counts once), at the
      bits its rule decided: prune's weight_orig x weight_mask counts once and dense, PT2E's int8 buffer once (its
      float original is an unused parameter), a weight kept in a buffer counts like a parameter;
    - each conv/linear's effective bias, at its dtype's bits;
    - every other parameter the graph uses (normalization scales and shifts), at its dtype's bits.
    Never a pruning mask, a scale, a zero point, BatchNorm's running statistics or an unused parameter."""
    fold = _Folder(ep)
    layers = effective_weights(ep, fold)
    counted, seen = CountedWeights([], [], layers), set()

    def add(key, sources: list[str], value, bits: int) -> None:
        if key not in seen:
            seen.add(key)
            seen.update(sources)
            counted.values.append(value)
            counted.bits.append(bits)

    for layer in layers:
        add(tuple(layer.sources) or layer.op, layer.sources, layer.value, layer.bits)
    for node in ep.graph.nodes:
        bias, sources = _folded_argument(fold, node, BIAS_ARGUMENT)
        if bias is not None:
            add(tuple(sources) or node.name, sources, bias, _dtype_bits(bias.dtype))
    used = {node.name for node in ep.graph.nodes if node.op == "placeholder" and node.users}
    placeholder = {spec.target: spec.arg.name for spec in ep.graph_signature.input_specs}
    for name in ep.graph_signature.parameters:
        if placeholder[name] in used and name not in seen:
            tensor = ep.state_dict[name].detach()
            add(name, [name], tensor, _dtype_bits(tensor.dtype))
    return counted


def compression_figures(ep: torch.export.ExportedProgram) -> dict:
    """The challenge score's weight figures over `counted_weights` (w, dense: `params`): `weight_bits` (weighted by
    size), `structured_sparsity` (weights in all-zero output channels of a layer's weight, over w) and
    `unstructured_sparsity` (the other zeros, over w), and `layers`: per layer op, its bits and how they were
    decided."""
    counted = counted_weights(ep)
    total = sum(value.numel() for value in counted.values)
    layers = [{"op": w.op, "sources": w.sources, "bits": w.bits, "rule": w.rule,
               "zeros": int((w.value == 0).sum()), "numel": int(w.value.numel())} for w in counted.layers]
    if not total:
        return {"params": 0, "weight_bits": None, "structured_sparsity": 0.0, "unstructured_sparsity": 0.0,
                "layers": layers}
    bits = pruned = zeros = 0
    for value, value_bits in zip(counted.values, counted.bits):
        bits += value_bits * value.numel()
        if value.dim() >= 2:
            empty = (value.reshape(value.shape[0], -1) == 0).all(1)
            pruned += int(empty.sum()) * (value.numel() // value.shape[0])
        zeros += int((value == 0).sum())
    return {"params": total, "weight_bits": round(bits / total, 3), "structured_sparsity": round(pruned / total, 6),
            "unstructured_sparsity": round((zeros - pruned) / total, 6), "layers": layers}


def _dtype_bits(dtype) -> int:
    import torch

    return torch.finfo(dtype).bits if dtype.is_floating_point else torch.iinfo(dtype).bits
