"""Issue 18's acceptance models measured end to end (harness.measure.profile_program on the exported program): a
binary, a ternary, a 4-bit fake-quantized, an int8 PT2E-quantized (torchao), an fp16, a 50 %-pruned (unstructured,
masks kept) and a filter-pruned model. Bits, sparsities and the course's score against values worked out by hand.

Every model is ConvNet: Conv2d(3, 8, 3) -> ReLU -> Flatten -> Linear(288, 10) on 3x8x8 inputs.
  w = conv 8*3*3*3 = 216 weights + 8 biases, linear 288*10 = 2880 weights + 10 biases: 3096 weights, 18 biases, 3114.
  f = conv 8*6*6 outputs x 27 = 7776 MACs, linear 2880: 10656 MACs (quantized or pruned graphs count like floats).
Weights are set by formula where their values decide a figure (zeros, levels), so the counts below follow from it.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from harness.export import ExportError, export_model
from harness.measure import profile_program
from harness.score import challenge_score

W, F, BIASES, CONV_W, LINEAR_W = 3114, 10656, 18, 216, 2880


def course_score(q_w, q_a, p_s, p_u):
    """Seed 000's formula, written out here on its own: (1-(p_s+p_u))·(q_w/32)·w/5.6e6 + (1-p_s)·(max/32)·f/2.8e8."""
    return (1 - (p_s + p_u)) * (q_w / 32) * W / 5.6e6 + (1 - p_s) * (max(q_w, q_a) / 32) * F / 2.8e8


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.fc = nn.Conv2d(3, 8, 3), nn.Linear(288, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def set_weights(model: ConvNet, pattern) -> ConvNet:
    """Each layer's weight from `pattern(i, channel)`, i its flat index."""
    with torch.no_grad():
        for layer in (model.conv, model.fc):
            rows, per_row = layer.weight.shape[0], layer.weight[0].numel()
            values = [pattern(i, i // per_row) for i in range(rows * per_row)]
            layer.weight.copy_(torch.tensor(values).reshape(layer.weight.shape))
    return model


class BinaryConnect(ConvNet):
    """1-bit weights at inference: sign of the latent float weights times their mean magnitude, in forward (the
    straight-through estimator's forward pass); the latent weights are random, none exactly zero."""

    def forward(self, x):
        def binary(w):
            return torch.sign(w) * w.abs().mean()

        h = nn.functional.conv2d(x, binary(self.conv.weight), self.conv.bias)
        return nn.functional.linear(torch.relu(h).flatten(1), binary(self.fc.weight), self.fc.bias)


def ternary() -> ConvNet:  # -a, 0, a by flat index: conv 216/3 = 72 zeros, linear 2880/3 = 960; no channel all zero
    return set_weights(ConvNet(), lambda i, c: 0.05 * (i % 3 - 1))


def four_bit() -> ConvNet:  # 16 levels +-0.5 .. +-7.5 (x a per-channel scale): no zero, every channel on one grid
    return set_weights(ConvNet(), lambda i, c: (2 * (i % 16) - 15) / 2 * 0.01 * (1 + c % 3))


def pt2e_prepared() -> nn.Module:
    """The first half of torchao's PT2E flow (X86InductorQuantizer): observers inserted and calibrated."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    model = set_weights(ConvNet(), lambda i, c: (-1) ** i * (0.5 + (i % 7) / 10))
    x = torch.randn(4, 3, 8, 8)
    quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(export_model(model, x).module(), quantizer)
    prepared(x)
    return prepared


def pt2e_int8() -> nn.Module:
    """torchao's PT2E flow: int8 weights per channel and int8 activations. The float weights are kept at least 0.5
    in magnitude so no int8 weight rounds to 0: p_u = 0."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    return convert_pt2e(pt2e_prepared())


def unstructured_half() -> ConvNet:  # l1_unstructured 50 %: 108 of 216, 1440 of 2880 zero; masks kept
    model = ConvNet()
    for layer in (model.conv, model.fc):
        prune.l1_unstructured(layer, "weight", amount=0.5)
    return model


def filter_pruned() -> ConvNet:  # ln_structured 50 % along dim 0: 4 of 8 filters (4 x 27), 5 of 10 rows (5 x 288)
    model = ConvNet()
    for layer in (model.conv, model.fc):
        prune.ln_structured(layer, "weight", amount=0.5, n=2, dim=0)
    return model


FP32_BIASES = 32 * BIASES
CASES = {  # builder, input dtype, (q_w, q_a, p_s, p_u), the rule of both layers
    "binary": (BinaryConnect, torch.float32, ((1 * 3096 + FP32_BIASES) / W, 32, 0, 0), "levels"),
    "ternary": (ternary, torch.float32, ((2 * 3096 + FP32_BIASES) / W, 32, 0, (72 + 960) / W), "levels"),
    "4-bit": (four_bit, torch.float32, ((4 * 3096 + FP32_BIASES) / W, 32, 0, 0), "levels"),
    "int8 PT2E": (pt2e_int8, torch.float32, ((8 * 3096 + FP32_BIASES) / W, 8, 0, 0), "integer storage"),
    "fp16": (lambda: ConvNet().half(), torch.float16, (16, 16, 0, 0), "dtype"),
    "50 % unstructured": (unstructured_half, torch.float32, (32, 32, 0, (108 + 1440) / W), "dtype"),
    "filter-pruned": (filter_pruned, torch.float32, (32, 32, (4 * 27 + 5 * 288) / W, 0), "dtype"),
}


@pytest.mark.parametrize("case", CASES)
def test_bits_sparsity_and_score_equal_the_hand_computed_values(case):
    build, dtype, (q_w, q_a, p_s, p_u), rule = CASES[case]
    profile = profile_program(export_model(build(), torch.randn(2, 3, 8, 8, dtype=dtype)))
    assert (profile["params"], profile["macs"]) == (W, F)
    assert not [op for op in profile["unsupported_ops"] if "quantize" in op]  # per element: handled, no MACs
    assert [(layer["op"], layer["rule"]) for layer in profile["compression"]] == [("conv2d", rule), ("linear", rule)]
    assert profile["weight_bits"] == round(q_w, 3)
    assert profile["activation_bits"] == q_a
    assert (profile["structured_sparsity"], profile["unstructured_sparsity"]) == (round(p_s, 6), round(p_u, 6))
    measured = challenge_score(profile["params"], profile["macs"], profile["weight_bits"], profile["activation_bits"],
                               profile["structured_sparsity"], profile["unstructured_sparsity"])
    assert measured == pytest.approx(course_score(q_w, q_a, p_s, p_u), rel=1e-4)  # figures are rounded to 3 / 6 places


def test_the_int8_program_loads_and_measures_in_a_process_without_torchao(tmp_path):
    """The measuring process never imports torchao: quantized_decomposed comes from torch itself."""
    import subprocess
    import sys

    torch.export.save(export_model(pt2e_int8(), torch.randn(2, 3, 8, 8)), tmp_path / "model.pt2")
    code = ("import sys, json; sys.modules['torchao'] = None\n"
            "from harness.measure import load_program, profile_program\n"
            f"p = profile_program(load_program({str(tmp_path / 'model.pt2')!r}))\n"
            "print(json.dumps([p['params'], p['macs'], p['weight_bits'], p['activation_bits']]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"[{W}, {F}, {round((8 * 3096 + FP32_BIASES) / W, 3)}, 8]"


def test_a_model_prepared_for_quantization_but_not_converted_is_refused_with_what_to_call():
    with pytest.raises(ExportError) as refused:
        export_model(pt2e_prepared(), torch.randn(2, 3, 8, 8))
    said = str(refused.value)
    assert said.startswith("torch.export could not capture your model (")
    assert said.endswith("the model still holds quantization observers (activation_post_process_0, "
                         "activation_post_process_1, activation_post_process_2 and 1 more): it was prepared for "
                         "quantization but not converted; after calibrating, submit `convert_pt2e(prepared)` (or "
                         "`prepare_qat_pt2e` -> train -> `convert_pt2e`).")
