"""Message helpers of the check kinds (harness/checks.py): a hint per layer type for a wrong activation shape.

Kept apart so that harness/checks.py stays a table of check kinds.
"""
from __future__ import annotations

LAYER_HINTS = {
    "Conv2d": "check kernel_size, stride and padding: output = (W - F + 2P) / S + 1 ('same' keeps W, 'valid' is P=0)",
    "MaxPool2d": "check kernel_size and stride of the pooling",
    "AvgPool2d": "check kernel_size and stride of the pooling",
    "Linear": "check in_features/out_features",
    "Flatten": "check the shape that reaches the flatten (C * H * W)",
}


def shape_problems(expected: dict, got: dict, module_types: dict) -> list[str]:
    """One line per wrong module; only the first wrong one gets a layer hint, later ones may just follow from it."""
    problems = []
    for name, shape in expected.items():
        if name not in got:
            problems.append(f"{name}: no module named '{name}' in your model (define self.{name} in __init__ "
                            "and use it in forward)")
        elif list(got[name]) != list(shape):
            hint = "" if problems else LAYER_HINTS.get(module_types.get(name, ""), "")
            problems.append(f"{name}: expected {list(shape)}, got {list(got[name])}" + (f" ({hint})" if hint else ""))
    return problems
