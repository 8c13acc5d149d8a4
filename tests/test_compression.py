"""Compression figures of exported models built for it (harness/compression.py): bits, sparsity and the rule that
decided each, against hand-computed values. One Linear(64, 10): 640 weights + 10 biases = 650 parameters."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from harness.compression import activation_bits, compression_figures, level_bits, weight_bits

PARAMS = 650


def exported(model: nn.Module, dtype=torch.float32):
    model.eval()
    return torch.export.export(model, (torch.randn(2, 64, dtype=dtype),))


def linear(seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(64, 10)


class SignLinear(nn.Module):
    """BinaryConnect at inference: the latent float weights binarised in forward, scaled by their mean magnitude."""

    def __init__(self):
        super().__init__()
        self.fc = linear()

    def forward(self, x):
        w = self.fc.weight
        return nn.functional.linear(x, torch.sign(w) * w.abs().mean(), self.fc.bias)


class Int8Linear(nn.Module):
    """int8 storage dequantized per output channel in forward (what a PT2E-quantized weight looks like)."""

    def __init__(self):
        super().__init__()
        w = linear().weight.detach()
        scale = w.abs().amax(1, keepdim=True) / 127
        self.register_buffer("qweight", torch.round(w / scale).to(torch.int8))
        self.register_buffer("scale", scale)
        self.bias = nn.Parameter(torch.zeros(10))

    def forward(self, x):
        return nn.functional.linear(x, self.qweight.float() * self.scale, self.bias)


def fake_quantized(levels: int) -> nn.Linear:
    """Per-output-channel symmetric fake quantization to `levels` signed integer levels (4-bit: -8..7)."""
    layer = linear()
    with torch.no_grad():
        w = layer.weight
        half = levels // 2
        scale = w.abs().amax(1, keepdim=True) / half
        w.copy_(torch.round(w / scale).clamp(-half, half - 1) * scale)
    return layer


def test_binary_ternary_and_four_bit_weights_count_their_levels():
    binary = compression_figures(exported(SignLinear()))
    assert binary["weight_bits"] == round((1 * 640 + 32 * 10) / PARAMS, 3) == 1.477
    assert [(layer["bits"], layer["rule"]) for layer in binary["layers"]] == [(1, "levels")]
    layer = linear()
    with torch.no_grad():  # ternary: -a, 0, a
        layer.weight.copy_(torch.sign(torch.round(layer.weight * 8)) * 0.1)
    ternary = compression_figures(exported(layer))
    assert [(entry["bits"], entry["rule"]) for entry in ternary["layers"]] == [(2, "levels")]
    assert ternary["weight_bits"] == round((2 * 640 + 320) / PARAMS, 3)
    four = compression_figures(exported(fake_quantized(16)))
    assert [(entry["bits"], entry["rule"]) for entry in four["layers"]] == [(4, "levels")]


def test_float_weights_are_their_dtype_and_fp16_is_16():
    assert compression_figures(exported(linear()))["weight_bits"] == 32.0
    half = compression_figures(exported(linear().half(), torch.float16))
    assert half["weight_bits"] == 16.0 and [e["rule"] for e in half["layers"]] == ["dtype"]


def test_int8_storage_dequantized_in_forward_is_8_bits_and_counts_as_weights():
    figures = compression_figures(exported(Int8Linear()))
    assert [(entry["bits"], entry["rule"]) for entry in figures["layers"]] == [(8, "integer storage")]
    assert (figures["params"], figures["weight_bits"]) == (PARAMS, round((8 * 640 + 32 * 10) / PARAMS, 3))


def test_pruning_counts_the_effective_weights_and_the_dense_parameters():
    unstructured = linear()
    prune.l1_unstructured(unstructured, "weight", amount=0.5)  # masks kept: weight_orig (dense) * weight_mask
    figures = compression_figures(exported(unstructured))
    assert figures["params"] == PARAMS  # weight_orig, dense; the mask is no weight
    assert (figures["structured_sparsity"], figures["unstructured_sparsity"]) == (0.0, round(320 / PARAMS, 6))
    assert figures["weight_bits"] == 32.0
    filters = linear()
    prune.ln_structured(filters, "weight", amount=0.5, n=2, dim=0)  # 5 of 10 output rows
    figures = compression_figures(exported(filters))
    assert (figures["structured_sparsity"], figures["unstructured_sparsity"]) == (round(320 / PARAMS, 6), 0.0)


@pytest.mark.parametrize(("values", "bits"), [
    ([0.5, -0.5] * 8, 1), ([0.1, 0.0, -0.1] * 6, 2),  # repeated
    ([0.3 * q for q in range(-8, 8)], 4),  # a uniform grid, each level once
    ([0.1234, 0.2571, 0.9013, -0.4402, 0.3379, 0.7101, -0.0531, 0.6067], None),  # float
    ([0.1234, 0.0, 0.0, 0.0, 0.0, 0.7719, 0.0, -0.3071, 0.0, 0.0, 0.0, 0.0], None),  # pruned float: zeros no evidence
    ([1.0, 2.0], None)])  # too few values to tell
def test_levels_need_a_grid_or_repeated_values(values, bits):
    assert level_bits(torch.tensor([values], dtype=torch.float32)) == bits


def test_integer_storage_then_levels_then_dtype():
    binary = torch.tensor([[1.0, -1.0] * 8])
    assert weight_bits(binary, [torch.ones(16, dtype=torch.int8)]) == (8, "integer storage")  # stored in 8 bits
    assert weight_bits(binary) == (1, "levels")
    assert weight_bits(torch.randn(4, 16)) == (32, "dtype")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_initialised_float_layers_are_never_taken_for_levels(dtype):
    """Default-initialised layers of the shapes courses use, 20 seeds each, in every float dtype: bf16 and fp16
    values all lie on some power-of-two grid and repeat, so this is where a false "levels" would show."""
    layers = [lambda: nn.Conv2d(3, 16, 3), lambda: nn.Conv2d(16, 32, 3), lambda: nn.Linear(64, 10),
              lambda: nn.Linear(512, 10), lambda: nn.Conv2d(32, 32, 1)]
    for seed in range(20):
        for make in layers:
            torch.manual_seed(seed)
            weight = make().weight.detach().to(dtype)
            assert weight_bits(weight) == (torch.finfo(dtype).bits, "dtype"), (seed, tuple(weight.shape))


class QuantizedActivations(nn.Module):
    """Activations quantized to int8 and back before the layer, as PT2E's converted graphs do."""

    def __init__(self):
        super().__init__()
        self.fc = linear()

    def forward(self, x):
        import torch.ao.quantization.fx._decomposed  # noqa: F401  registers quantized_decomposed

        ops = torch.ops.quantized_decomposed
        q = ops.quantize_per_tensor.default(x, 0.05, 0, -128, 127, torch.int8)
        return self.fc(ops.dequantize_per_tensor.default(q, 0.05, 0, -128, 127, torch.int8))


class OddlyHeld(nn.Module):
    """A Linear, an unused Linear, a BatchNorm, a weight kept in a buffer and used twice (tied), without bias."""

    def __init__(self):
        super().__init__()
        self.fc, self.unused, self.bn = linear(), nn.Linear(64, 64), nn.BatchNorm1d(10)
        self.register_buffer("hidden", torch.randn(10, 10))

    def forward(self, x):
        h = nn.functional.linear(self.bn(self.fc(x)), self.hidden)
        return nn.functional.linear(h, self.hidden)


def test_w_counts_what_the_layers_use_whatever_holds_it():
    """650 (fc) + 20 (BatchNorm's weight and bias; not its running statistics) + 100 (the buffer, once though used
    twice); the unused Linear's 4,160 parameters are no weights of the model."""
    figures = compression_figures(exported(OddlyHeld()))
    assert figures["params"] == 650 + 20 + 100
    assert [(entry["op"], entry["sources"]) for entry in figures["layers"]] == [
        ("linear", ["fc.weight"]), ("linear_1", ["hidden"]), ("linear_2", ["hidden"])]


def test_activation_bits_come_from_dequantized_integers_or_the_dtype():
    assert activation_bits(exported(QuantizedActivations())) == 8
    assert activation_bits(exported(linear())) == 32
    assert activation_bits(exported(linear().half(), torch.float16)) == 16


def evidence(profile: dict, accuracy: float | None = 0.95):
    from harness.checks import Evidence

    return Evidence(profile=profile, answers={}, reference=lambda name: {}, default_reference=None,
                    metrics={"accuracy": accuracy})


def graded(kind: str, profile: dict, accuracy: float | None = 0.95, **options):
    from harness.checks import run_check
    from harness.schema import CheckSpec

    result = run_check(CheckSpec(id=kind, kind=kind, points=2, options=options), evidence(profile, accuracy))
    return result.points, result.got, result.message


BINARY_PROFILE = {"params": 650, "weights": 650, "macs": 640, "weight_bits": 1.477, "activation_bits": 32,
                  "structured_sparsity": 0.0, "unstructured_sparsity": 0.0,
                  "compression": [{"op": "linear", "bits": 1, "rule": "levels"}]}


def test_the_compression_check_kinds_grade_the_measured_figures():
    assert graded("weight_bits", BINARY_PROFILE, at_most=2) == (2.0, 1.477, "weights at 1.477 bits per weight, at "
                                                                           "most 2.")
    points, got, message = graded("weight_bits", {**BINARY_PROFILE, "weight_bits": 32.0,
                                                  "compression": [{"op": "linear", "bits": 32, "rule": "dtype"}]},
                                  at_most=16)
    assert (points, got) == (0.0, 32.0) and "per layer: linear 32 (dtype)" in message
    assert graded("activation_bits", BINARY_PROFILE, at_most=8)[:2] == (0.0, 32)
    pruned = {**BINARY_PROFILE, "structured_sparsity": 0.25, "unstructured_sparsity": 0.3}
    assert graded("sparsity", pruned, unstructured=0.5, structured=0.2)[:2] == (2.0, {"zero": 0.55,
                                                                                     "structured": 0.25})
    assert graded("sparsity", pruned, structured=0.3)[0] == 0.0
    grown_back = {**pruned, "structured_sparsity": 0.0, "unstructured_sparsity": 0.01}
    assert "keep the masks while fine-tuning" in graded("sparsity", grown_back, unstructured=0.5)[2]
    score = (1.477 / 32) * 650 / 5.6e6 + (32 / 32) * 640 / 2.8e8  # q_a = 32 dominates the MAC term
    assert graded("challenge_score", BINARY_PROFILE, at_most=0.01) == (2.0, round(score, 6),
                                                                     f"score {score:.4f}, at most 0.01.")
    assert graded("challenge_score", BINARY_PROFILE, accuracy=0.85, at_most=0.01)[:2] == (0.0, None)  # the gate


def test_the_console_shows_the_compression_figures_only_when_there_are_some():
    from grading.console import compressed, compression_line

    dense = {"weights": 650, "macs": 640, "weight_bits": 32.0, "activation_bits": 32, "structured_sparsity": 0.0,
             "unstructured_sparsity": 0.0}
    assert not compressed(dense) and not compressed({**dense, "weight_bits": None})
    half_pruned = {**dense, "weight_bits": 16.0, "activation_bits": 16, "unstructured_sparsity": 0.25}
    assert compressed(half_pruned)
    score = 0.75 * 0.5 * 650 / 5.6e6 + 0.5 * 640 / 2.8e8
    assert compression_line(half_pruned) == (f"weights 650 at 16 bits, activations 16 bits, 25.0% zero (0.0% in "
                                             f"whole filters), course score {score:.3g}")
