"""The profile: what the measuring process returns for one model, as a typed dict (the JSON is a plain object).

Filled by harness/measure.py (structure, size, precision) and harness/measure_device.py (held-out accuracy, latency,
throughput); read by the check kinds (harness/checks.py) and the result's metrics (harness/grade.py). Keys appear
only where measured: `accuracy`, `latency_*` and `throughput_*` with a dataset, `backbone` with a [backbone].
"""
from __future__ import annotations

from typing import TypedDict


class TrainModeOp(TypedDict):
    """An operation exported in training mode, and where it came from."""

    op: str  # "batch_norm", "dropout", or the ATen op's name for another op with a training flag
    module: str  # the innermost registered module whose forward ran it ("" for the model itself)
    module_type: str  # its class name
    unregistered: bool  # run by a torch.nn layer that is not registered (kept in a plain list or dict)
    code: str  # the student's source line that called it (from the export's stack trace; may be "")


class LayerCompression(TypedDict):
    """How one layer op's weight was measured (harness/compression.py)."""

    op: str  # the graph node of the layer op
    sources: list[str]  # the parameters, buffers and constants its weight is computed from
    bits: int
    rule: str  # "integer storage" | "levels" | "dtype"
    zeros: int
    numel: int


class Profile(TypedDict, total=False):
    params: int  # every parameter of the exported model, buffers excluded
    trainable_params: int
    macs: int  # fvcore, batch 1, eval mode
    macs_conv_linear: int
    macs_by_module: dict[str, int]
    unsupported_ops: dict[str, int]  # operators fvcore could not count, with how often they ran
    flops_check: int  # PyTorch's FlopCounterMode: must be 2 x macs_conv_linear
    flops_check_ok: bool
    activation_shapes: dict[str, list[int]]  # submodule -> output shape without the batch dim
    output_shape: list[int]
    params_by_module: dict[str, int]
    module_types: dict[str, str]
    input_shape: list[int]
    architecture: str
    weights: int  # the course's w (challenge score): weights the layers use, whatever holds them (compression.py)
    weight_bits: float | None  # bits per weight, weighted by size (effective weights: harness/compression.py)
    compression: list[LayerCompression]  # per weight-bearing layer op: its bits and the rule that decided them
    activation_bits: int
    structured_sparsity: float
    unstructured_sparsity: float
    # harness/model_audit.py: what an unregistered submodule (kept in a plain list or dict) leaves in the export
    constant_weights: int  # floating tensor constants fed to a layer op (conv, linear, norm...): weights that are
    constant_weight_values: int  # not parameters, and their total number of values
    train_mode_ops: list[TrainModeOp]  # one per op exported with training=True (batch norm, dropout)
    accuracy: float  # on the held-out split
    accuracy_error: str  # why no accuracy was measured
    latency_ms: float  # batch 1
    latency_device: str  # where latency and throughput were timed ("cpu" after a fallback)
    throughput_per_s: float  # examples per second at throughput_batch
    throughput_batch: int
    backbone: dict  # the comparison with the pretrained backbone file
    notes: list[str]  # what the grader should tell the student (e.g. measured on the CPU, and why)
