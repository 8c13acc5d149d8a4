"""Reference models and the registry that states their size.

Every entry states the parameter count and the MACs of its default variant (the builder called with no
arguments) as literal numbers, so a change to a model shows up as a failing test rather than as a silently
different baseline. The numbers come from fvcore, batch 1, eval mode:

    FlopCountAnalysis(model.eval(), torch.randn(1, *input_shape)).total()

fvcore counts one MAC per multiply-add of conv and linear layers, 2 per element for an eval-mode BatchNorm,
and nothing for ReLU, pooling or additions. (Plain fvcore counts adaptive average pooling 1 per input element;
harness.measure drops that handle so that every pooling counts 0. No reference model pools adaptively, so both
give the stated numbers.)
tests/test_reference_models.py recomputes every stated number through harness.measure.profile_module.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from reference.models.densenet import densenet, densenet121, densenet_cifar
from reference.models.preact_resnet import preact_resnet, preact_resnet18
from reference.models.resnet import resnet, resnet18, resnet34
from reference.models.seed import exercise_seed, lenet_seed
from reference.models.vgg import vgg, vgg11, vgg13, vgg16, vgg19

# Every builder takes num_classes, on top of the knobs its entry lists.
COMMON_KWARGS = ("num_classes",)

CIFAR_SHAPE = (3, 32, 32)


@dataclass(frozen=True)
class ModelEntry:
    """A reference model: how to build it and its stated size for the default variant."""

    name: str
    builder: Callable[..., nn.Module]
    input_shape: tuple[int, ...]  # one example, no batch dim, e.g. (3, 32, 32)
    params: int  # stated: sum(p.numel() for p in model.parameters()) of builder()
    macs: int  # stated: fvcore total, batch 1, eval mode, of builder()
    family: str  # "resnet", "preactresnet", "densenet", "vgg", "seed"
    knobs: tuple[str, ...]  # keyword arguments the project may vary, besides num_classes


_ENTRIES = (
    ModelEntry("resnet18", resnet18, CIFAR_SHAPE, 11_173_962, 556_651_520, "resnet", ("width", "blocks")),
    ModelEntry("resnet34", resnet34, CIFAR_SHAPE, 21_282_122, 1_161_450_496, "resnet", ("width", "blocks")),
    ModelEntry(
        "preactresnet18", preact_resnet18, CIFAR_SHAPE, 11_171_146, 556_520_448, "preactresnet", ("width", "blocks")
    ),
    ModelEntry(
        "densenet121",
        densenet121,
        CIFAR_SHAPE,
        6_956_298,
        898_058_240,
        "densenet",
        ("blocks", "growth_rate", "reduction"),
    ),
    ModelEntry(
        "densenet_cifar",
        densenet_cifar,
        CIFAR_SHAPE,
        1_000_618,
        128_981_760,
        "densenet",
        ("blocks", "growth_rate", "reduction"),
    ),
    ModelEntry("vgg11", vgg11, CIFAR_SHAPE, 9_231_114, 153_072_640, "vgg", ("width",)),
    ModelEntry("vgg13", vgg13, CIFAR_SHAPE, 9_416_010, 228_766_720, "vgg", ("width",)),
    ModelEntry("vgg16", vgg16, CIFAR_SHAPE, 14_728_266, 313_754_624, "vgg", ("width",)),
    ModelEntry("vgg19", vgg19, CIFAR_SHAPE, 20_040_522, 398_742_528, "vgg", ("width",)),
    ModelEntry("lenet_seed", lenet_seed, (1, 28, 28), 62_430, 435_368, "seed", ()),
    ModelEntry("exercise_seed", exercise_seed, CIFAR_SHAPE, 62_958, 849_320, "seed", ()),
)

REGISTRY: dict[str, ModelEntry] = {entry.name: entry for entry in _ENTRIES}


def names() -> list[str]:
    """Registered model names, grouped by family."""
    return list(REGISTRY)


def get(name: str) -> ModelEntry:
    """The registry entry for `name`; ValueError listing the known names if there is none."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(names())}") from None


def build(name: str, **kwargs) -> nn.Module:
    """Build the registered model `name`, varying only the knobs its entry allows (plus num_classes)."""
    entry = get(name)
    allowed = entry.knobs + COMMON_KWARGS
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"model {name!r} does not take {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    return entry.builder(**kwargs)


__all__ = [
    "COMMON_KWARGS",
    "REGISTRY",
    "ModelEntry",
    "build",
    "densenet",
    "densenet121",
    "densenet_cifar",
    "exercise_seed",
    "get",
    "lenet_seed",
    "names",
    "preact_resnet",
    "preact_resnet18",
    "resnet",
    "resnet18",
    "resnet34",
    "vgg",
    "vgg11",
    "vgg13",
    "vgg16",
    "vgg19",
]
