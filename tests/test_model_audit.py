"""The model audit (harness/model_audit.py): layers kept in a plain list or dict leave their weights as tensor
constants and stay in training mode; the profile counts both and the check messages say what to change."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness.checks import Evidence, run_check
from harness.errors import MeasureError
from harness.export import export_model
from harness.measure import profile_module, profile_program
from harness.model_audit import model_warnings
from harness.spec import CheckSpec

LIST_ADVICE = "use nn.ModuleList / nn.ModuleDict"


def conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]


class ListCNN(nn.Module):
    """The student's mistake: the conv/BN layers in a plain Python list (not registered)."""

    def __init__(self):
        super().__init__()
        self.layers = conv_bn_relu(3, 8) + conv_bn_relu(8, 16)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.head(x.mean((2, 3)))


def module_list_cnn() -> ListCNN:
    model = ListCNN()
    model.layers = nn.ModuleList(model.layers)
    return model


# By hand: conv1 8*3*3*3 + 8 = 224, bn1 8 weight + 8 bias (+ 8 + 8 running stats), conv2 16*8*3*3 + 16 = 1168,
# bn2 16 + 16 (+ 16 + 16), head 16*10 + 10 = 170. num_batches_tracked is an integer: no weight.
HEAD_PARAMS = 170
LIST_CONSTANTS = 2 + 4 + 2 + 4  # conv weight + bias, BN weight + bias + running mean + running var, twice
LIST_CONSTANT_VALUES = 224 + 4 * 8 + 1168 + 4 * 16  # 1,488
MODULE_LIST_PARAMS = 224 + 2 * 8 + 1168 + 2 * 16 + HEAD_PARAMS  # 1,610


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(self.drop(x))


class HiddenHead(nn.Module):
    """Registered features (switched by eval()), and a child module kept in a list (not switched, not counted)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(*conv_bn_relu(3, 16), nn.Dropout(0.5))
        self.heads = [Classifier()]

    def forward(self, x):
        return self.heads[0](self.features(x).mean((2, 3)))


class FunctionalDropout(nn.Module):
    """F.dropout's `training` defaults to True: dropout at test time, with every layer registered."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(12, 4)

    def forward(self, x):
        return F.dropout(self.fc(x), 0.2)


class PlainTensors(nn.Module):
    """A weight created as a plain tensor (not nn.Parameter) and a normalisation mean: only the weight counts."""

    def __init__(self):
        super().__init__()
        self.mean = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)  # used by sub: not a layer's weight
        self.weight = torch.randn(10, 3 * 4 * 4)  # used by F.linear: a weight that is no parameter

    def forward(self, x):
        return F.linear((x - self.mean).flatten(1), self.weight)


def exported_and_loaded(model: nn.Module, input_shape, tmp_path) -> dict:
    """Profile the way the grader does: harness.submit's export, written to model.pt2, loaded as data."""
    path = tmp_path / "model.pt2"
    torch.export.save(export_model(model.train(), torch.zeros(4, *input_shape)), path)
    return profile_program(torch.export.load(path))


def test_layers_in_a_python_list_are_constants_and_stay_in_training_mode(tmp_path):
    profile = exported_and_loaded(ListCNN(), (3, 8, 8), tmp_path)
    assert profile["params"] == HEAD_PARAMS
    assert (profile["constant_weights"], profile["constant_weight_values"]) == (12, 1488)
    assert (LIST_CONSTANTS, LIST_CONSTANT_VALUES) == (12, 1488)
    bn = {"op": "batch_norm", "module": "", "module_type": "ListCNN", "unregistered": True, "code": "x = layer(x)"}
    assert profile["train_mode_ops"] == [bn, bn]


def test_the_same_layers_in_a_module_list_are_parameters_in_eval_mode():
    profile = profile_module(module_list_cnn(), (3, 8, 8))
    assert profile["params"] == MODULE_LIST_PARAMS == 1610
    assert (profile["constant_weights"], profile["constant_weight_values"], profile["train_mode_ops"]) == (0, 0, [])
    assert model_warnings(profile) == []


def test_a_child_kept_in_a_list_stays_in_training_mode_while_registered_layers_switch(tmp_path):
    profile = exported_and_loaded(HiddenHead(), (3, 8, 8), tmp_path)
    assert profile["params"] == 3 * 3 * 3 * 16 + 16 + 2 * 16  # features only: conv 448 + BN 32
    assert (profile["constant_weights"], profile["constant_weight_values"]) == (2, 16 * 10 + 10)
    # only the list-kept Classifier's dropout: the registered BatchNorm and Dropout of `features` are in eval mode
    assert profile["train_mode_ops"] == [{"op": "dropout", "module": "", "module_type": "HiddenHead",
                                          "unregistered": True, "code": "return self.fc(self.drop(x))"}]
    assert model_warnings(profile)[1].startswith("1 Dropout layer was exported in training mode (dropping "
                                                 "activations at test time), in HiddenHead at `return self.fc(")


def test_functional_dropout_without_training_flag_is_reported_with_its_own_advice():
    profile = profile_module(FunctionalDropout(), (12,))
    assert (profile["params"], profile["constant_weights"]) == (12 * 4 + 4, 0)
    assert [(op["op"], op["unregistered"]) for op in profile["train_mode_ops"]] == [("dropout", False)]
    (warning,) = model_warnings(profile)
    assert "pass training=self.training to F.dropout" in warning


def test_a_plain_tensor_weight_counts_and_a_normalisation_mean_does_not():
    profile = profile_module(PlainTensors(), (3, 4, 4))
    assert profile["params"] == 0
    assert (profile["constant_weights"], profile["constant_weight_values"]) == (1, 10 * 48)


class ListMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = [nn.Linear(4, 8), nn.BatchNorm1d(8)]
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


def test_a_list_kept_batchnorm1d_that_fails_at_batch_1_says_why():
    # a training-mode BatchNorm1d cannot normalise a batch of 1: the measurement fails, and says why
    with pytest.raises(MeasureError) as failure:
        profile_module(ListMLP(), (4,))
    message = str(failure.value)
    assert message.startswith("the model does not run on an input of shape [4] (batch 1): ")
    # Linear 4*8 + 8 = 40 and BatchNorm1d 4 * 8 = 32 values, in 2 + 4 constants
    assert "6 tensor constants holding 72 values feed layers but are not parameters" in message
    assert "1 BatchNorm layer was exported in training mode" in message


def evidence_of(profile: dict, accuracy: float | None = None, reference: dict | None = None) -> Evidence:
    reference = reference or {"params": MODULE_LIST_PARAMS, "macs": profile["macs"]}
    return Evidence(profile, {}, lambda name: reference, "ref", {"accuracy": accuracy})


def test_the_check_messages_say_to_use_a_module_list(tmp_path):
    profile = exported_and_loaded(ListCNN(), (3, 8, 8), tmp_path)
    params = run_check(CheckSpec(id="params", kind="params", points=1, options={}), evidence_of(profile))
    assert params.message == (
        "expected 1,610 parameters, got 170 (-1,440): compare your layers with the table, e.g. a Conv2d has "
        "(F*F*C_in + 1) * C_out. 12 tensor constants holding 1,488 values feed layers but are not parameters: "
        f"layers kept in a plain Python list or dict are not registered; {LIST_ADVICE} (or nn.Sequential), and "
        "nn.Parameter for weights created as plain tensors.")
    accuracy = run_check(CheckSpec(id="acc", kind="accuracy", points=1, options={"threshold": 0.9}),
                         evidence_of(profile, accuracy=0.29))
    assert accuracy.message.endswith(
        "2 BatchNorm layers were exported in training mode (normalising with each batch's statistics, not the "
        f"running ones), in ListCNN at `x = layer(x)` (x2): submodules kept in a plain list or dict are not switched "
        f"by model.eval(); {LIST_ADVICE}.")
    assert "12 tensor constants holding 1,488 values" in accuracy.message


def test_a_training_mode_batchnorm_changes_the_macs_and_the_macs_check_says_why(tmp_path):
    profile = exported_and_loaded(ListCNN(), (3, 8, 8), tmp_path)
    reference = profile_module(module_list_cnn(), (3, 8, 8))
    # fvcore counts an eval BatchNorm 2 per element, a training-mode one 5: 3 more on 8 and 16 channels of 8 x 8
    assert profile["macs"] - reference["macs"] == 3 * (8 + 16) * 8 * 8
    macs = run_check(CheckSpec(id="macs", kind="macs", points=1, options={}), evidence_of(profile, reference=reference))
    # by hand: conv1 8*3*9 * 64 = 13,824, conv2 16*8*9 * 64 = 73,728, eval BN 2 * 24 * 64 = 3,072, head 160
    assert macs.message.startswith("expected 90,784 MACs, got 95,392 (+4,608): ")
    assert "2 BatchNorm layers were exported in training mode" in macs.message


def test_a_passing_check_and_a_clean_model_get_no_advice():
    profile = profile_module(module_list_cnn(), (3, 8, 8))
    params = run_check(CheckSpec(id="params", kind="params", points=1, options={"expected": 1600}),
                       evidence_of(profile))
    assert not params.passed and "not parameters" not in params.message
    accuracy = run_check(CheckSpec(id="acc", kind="accuracy", points=1, options={"threshold": 0.9}),
                         evidence_of(profile, accuracy=0.95))
    assert accuracy.message == "accuracy on the held-out split 95.00% >= 90.00%."
