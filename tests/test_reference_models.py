"""The reference models: stated sizes reproduced by the measuring path, seed tables, registry behaviour."""
from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from harness.measure import profile_module
from reference.models import REGISTRY, build, names

# Models whose profile (two exports + fvcore) takes more than 5 s on 2 CPU cores: about 7 s for each DenseNet,
# whose many channel concatenations make torch.export slow; every other model takes under 2 s.
SLOW_MODELS = {"densenet121", "densenet_cifar"}

SEED_LAYERS = ["conv1", "pool1", "conv2", "pool2", "flatten", "fc1", "fc2", "fc3"]

# Seed 004 tables in PyTorch order (C, H, W); the slides print them in Keras order (H, W, C).
SEED_ACTIVATION_SHAPES = {
    "conv1": [8, 28, 28],
    "pool1": [8, 14, 14],
    "conv2": [16, 10, 10],
    "pool2": [16, 5, 5],
    "flatten": [400],
    "fc1": [120],
    "fc2": [84],
    "fc3": [10],
}

SHARED_SEED_PARAMS = {"conv2": 3216, "fc1": 48120, "fc2": 10164, "fc3": 850}


def marking_slow_models(model_names: list[str]) -> list:
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_MODELS else n for n in model_names]


@pytest.fixture(scope="module")
def profiles() -> Callable[[str], dict]:
    """Profiles computed once per model and shared by the tests of this file."""
    cache: dict[str, dict] = {}

    def profile_of(name: str) -> dict:
        if name not in cache:
            torch.manual_seed(0)
            cache[name] = profile_module(build(name), REGISTRY[name].input_shape)
        return cache[name]

    return profile_of


@pytest.mark.parametrize("name", marking_slow_models(names()))
def test_profile_module_reproduces_the_stated_params_and_macs(name, profiles):
    entry = REGISTRY[name]
    profile = profiles(name)
    assert profile["params"] == entry.params
    assert profile["trainable_params"] == entry.params
    assert profile["macs"] == entry.macs
    # torch's own counter agrees with fvcore on the conv/linear part: 2 FLOPs per MAC.
    assert profile["flops_check"] == 2 * profile["macs_conv_linear"]
    assert profile["output_shape"] == [10]


def test_resnet18_has_kuangliu_params_and_macs_exactly(profiles):
    profile = profiles("resnet18")
    assert profile["params"] == 11_173_962
    assert profile["macs"] == 556_651_520
    assert profile["macs_conv_linear"] == 555_422_720
    # The rest is eval-mode BatchNorm at 2 MACs per element; pooling, ReLU and additions count nothing.
    assert profile["macs"] - profile["macs_conv_linear"] == 1_228_800


@pytest.mark.parametrize("name", ["lenet_seed", "exercise_seed"])
def test_seed_models_have_only_the_table_rows_as_submodules_in_table_order(name):
    assert [child_name for child_name, _ in build(name).named_children()] == SEED_LAYERS


@pytest.mark.parametrize("name", ["lenet_seed", "exercise_seed"])
def test_seed_models_activation_shapes_match_the_seed_table(name, profiles):
    assert profiles(name)["activation_shapes"] == SEED_ACTIVATION_SHAPES


def test_lenet_seed_params_by_module_match_the_seed_table(profiles):
    profile = profiles("lenet_seed")
    assert profile["params_by_module"] == {"conv1": 80, **SHARED_SEED_PARAMS}
    assert profile["params"] == 62_430
    assert profile["macs"] == 435_368


def test_exercise_seed_params_by_module_match_the_seed_table(profiles):
    profile = profiles("exercise_seed")
    assert profile["params_by_module"] == {"conv1": 608, **SHARED_SEED_PARAMS}
    assert profile["params"] == 62_958
    assert profile["macs"] == 849_320


def test_half_width_resnet18_has_fewer_params_and_still_outputs_ten_logits():
    model = build("resnet18", width=0.5).eval()
    half = sum(p.numel() for p in model.parameters())
    assert half < REGISTRY["resnet18"].params
    with torch.no_grad():
        assert model(torch.randn(3, 3, 32, 32)).shape == (3, 10)


def test_blocks_knob_turns_resnet18_into_resnet34():
    model = build("resnet18", blocks=(3, 4, 6, 3))
    assert sum(p.numel() for p in model.parameters()) == REGISTRY["resnet34"].params


def test_width_knob_scales_vgg_channels_down_to_the_classifier():
    model = build("vgg11", width=0.25)
    assert model.classifier.in_features == 128
    assert model.features[0].out_channels == 16


@pytest.mark.parametrize("name", names())
def test_every_builder_takes_num_classes(name):
    model = build(name, num_classes=7).eval()
    with torch.no_grad():
        assert model(torch.randn(2, *REGISTRY[name].input_shape)).shape == (2, 7)


def test_registry_holds_the_required_models_under_their_own_names():
    required = {
        "resnet18", "resnet34", "preactresnet18", "densenet121", "densenet_cifar",
        "vgg11", "vgg13", "vgg16", "vgg19", "lenet_seed", "exercise_seed",
    }  # fmt: skip
    assert required <= set(names())
    assert all(entry.name == key for key, entry in REGISTRY.items())


def test_build_unknown_model_raises_value_error_naming_the_known_models():
    with pytest.raises(ValueError, match="unknown model 'nope'") as excinfo:
        build("nope")
    assert all(name in str(excinfo.value) for name in names())


def test_build_with_a_knob_the_entry_does_not_allow_raises_value_error():
    with pytest.raises(ValueError, match=r"does not take growth_rate; allowed: width, blocks, num_classes"):
        build("resnet18", growth_rate=12)
    with pytest.raises(ValueError, match="does not take width"):
        build("lenet_seed", width=2.0)


@pytest.mark.parametrize("kwargs", [{"width": 0}, {"blocks": (2, 2, 2)}, {"blocks": (2, 0, 2, 2)}])
def test_resnet_rejects_knob_values_that_cannot_build_a_network(kwargs):
    with pytest.raises(ValueError):
        build("resnet18", **kwargs)
