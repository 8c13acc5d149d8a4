"""Transfer-learning material for Lab 1: class subsets of digits32 and backbones that never need a download."""
from __future__ import annotations

import pytest
import torch

from grading.cli import main
from harness.data import raw_split, source_paths
from reference.backbones import (
    BACKBONES,
    TORCHVISION_RESNET18_FILE,
    BackboneError,
    load_digits_backbone,
    pretrain_digits_backbone,
    torchvision_backbone,
)
from tests.conftest import MODEL


@pytest.mark.parametrize("name, classes, sizes", [("digits32_0to4", range(5), (631, 90, 180)),
                                                   ("digits32_5to9", range(5, 10), (626, 90, 180))])
def test_class_subsets_keep_the_splits_and_renumber_the_labels(name, classes, sizes):
    for split, size in zip(("train", "val", "test"), sizes):
        images, labels = raw_split(name, split)
        base_images, base_labels = raw_split("digits32", split)
        keep = torch.isin(base_labels, torch.tensor(list(classes)))
        assert len(labels) == size and torch.equal(images, base_images[keep])
        assert torch.equal(labels, base_labels[keep] - classes[0])  # 5..9 become 0..4
    assert source_paths(name) == source_paths("digits32")  # masked from the kernel like the full dataset


def test_the_backbone_weights_do_not_depend_on_the_callers_thread_count(tmp_path):
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        pretrain_digits_backbone(tmp_path / "one.pt", epochs=1)
        torch.set_num_threads(2)
        pretrain_digits_backbone(tmp_path / "two.pt", epochs=1)
        assert torch.get_num_threads() == 2  # the caller's count is restored
    finally:
        torch.set_num_threads(threads)
    one = torch.load(tmp_path / "one.pt", weights_only=True)["state_dict"]
    two = torch.load(tmp_path / "two.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(one[name], two[name]) for name in one)


def test_the_digits_backbone_is_reproducible_and_records_how_it_was_made(tmp_path):
    first = pretrain_digits_backbone(tmp_path / "a.pt", epochs=2)
    second = pretrain_digits_backbone(tmp_path / "b.pt", epochs=2)
    assert (first["dataset"], first["seed"], first["epochs"], first["num_classes"]) == ("digits32_0to4", 0, 2, 5)
    assert first["val_accuracy"] == second["val_accuracy"] and 0.2 < first["test_accuracy"] <= 1.0
    a, meta = load_digits_backbone(tmp_path / "a.pt")
    b, _ = load_digits_backbone(tmp_path / "b.pt")
    assert meta == {k: v for k, v in first.items()}
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert a(torch.zeros(1, 3, 32, 32)).shape == (1, 5)


def test_a_missing_or_wrong_backbone_file_says_what_to_do(tmp_path):
    with pytest.raises(BackboneError, match="dlgrade backbone --out"):
        load_digits_backbone(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(BackboneError, match="not a backbone written by"):
        load_digits_backbone(tmp_path / "other.pt")


def test_dlgrade_backbone_makes_any_named_recipe_and_names_them_when_asked_for_another(tmp_path, capsys):
    assert main(["backbone", "--name", "digits32_teacher", "--epochs", "1", "--out", str(tmp_path / "t.pt")]) == 0
    said = capsys.readouterr().out
    assert said.startswith("digits32_teacher: resnet18 ") and " pretrained on digits32 (1 epochs, seed 0, " in said
    _, meta = load_digits_backbone(tmp_path / "t.pt")
    assert (meta["name"], meta["dataset"], meta["num_classes"]) == ("digits32_teacher", "digits32", 10)
    assert main(["backbone", "--name", "resnet50", "--out", str(tmp_path / "x.pt")]) == 2
    assert capsys.readouterr().err == ("dlgrade backbone: unknown backbone 'resnet50': use one of "
                                       "digits32_resnet18, digits32_teacher\n")
    assert not (tmp_path / "x.pt").exists()
    with pytest.raises(SystemExit):
        main(["backbone", "--help"])
    said = " ".join(capsys.readouterr().out.split())
    assert all(name in said for name in BACKBONES), said


def test_torchvision_weights_come_from_a_local_file_never_a_download(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # an empty cache
    with pytest.raises(BackboneError, match=f"{TORCHVISION_RESNET18_FILE}.*download.pytorch.org.*place it there"):
        torchvision_backbone()
    weights = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(weights, tmp_path / TORCHVISION_RESNET18_FILE)
    model = torchvision_backbone(tmp_path / TORCHVISION_RESNET18_FILE)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "broken.pth")
    with pytest.raises(BackboneError, match="is not torchvision's ResNet18 state dict"):
        torchvision_backbone(tmp_path / "broken.pth")


FROZEN = """\
from pathlib import Path
import torch
from reference.backbones import load_digits_backbone
model, meta = load_digits_backbone(Path(data_dir) / "backbone.pt")
for p in model.parameters():
    p.requires_grad_(False)
model.linear = torch.nn.Linear(model.linear.in_features, 5)  # the new head: the only trainable layer
"""
UNFROZEN = FROZEN + "with torch.no_grad():\n    model.layer1[0].conv1.weight.add_(0.01)  # trained it too\n"
BACKBONE_TOML = """
[backbone]
name = "digits32_resnet18"

[[checks]]
id = "frozen"
kind = "frozen_backbone"
points = 2
head = "linear"
"""


def test_the_freeze_check_compares_the_export_with_the_backbone_file_in_the_measuring_process(tiny):
    from harness.assets import prepare_assignment
    from harness.grade import grade_one

    spec, write = tiny(extra_toml=BACKBONE_TOML, input_shape=(3, 32, 32),
                       submit="import harness\nharness.submit(model, torch.randn(2, 3, 32, 32))")
    assets = prepare_assignment(spec)  # pretrains the backbone (cached), above the pipeline
    frozen, unfrozen = (grade_one(write([cells]), spec, threads=1, assets=assets) for cells in (FROZEN, UNFROZEN))
    check = {r.submission: next(c for c in r.checks if c.id == "frozen") for r in (frozen, unfrozen)}
    assert frozen.status == unfrozen.status == "graded"
    ok, changed = check[frozen.submission], check[unfrozen.submission]
    assert (ok.passed, ok.points) == (True, 2.0)
    assert ok.got == "36 parameters unchanged"  # ResNet18 w0.25 with one block per stage, without its head
    assert (changed.passed, changed.points, changed.got) == (False, 0.0, "1 of 36 parameters changed")
    assert "layer1.0.conv1.weight (max |change| 0.01)" in changed.message and "requires_grad_(False)" in changed.message
    assert frozen.metrics["trainable_params"] == 128 * 5 + 5  # only the head


EXTRA_MODELS_TOML = """
[[checks]]
id = "scratch_params"
kind = "params"
model = "scratch"
points = 1
expected = 69

[[checks]]
id = "finetuned_output"
kind = "output_shape"
model = "finetuned"
points = 1
expected = [10]
"""
SUBMIT_EXTRA = ("import harness\nharness.submit(model, torch.randn(2, 3, 4, 4), extra_models={"
                "'scratch': nn.Sequential(nn.Flatten(), nn.Linear(48, 1), nn.Linear(1, 10)), **extra})")


def test_extra_models_are_measured_when_declared_and_a_missing_one_fails_only_its_checks(tiny):
    from harness.grade import grade_one

    spec, write = tiny(extra_toml=EXTRA_MODELS_TOML, submit=SUBMIT_EXTRA,
                       assignment_keys='extra_models = ["finetuned", "scratch"]')
    # the undeclared extra model 'other' is written by the kernel but never read by the grader
    other = "extra = {'other': nn.Sequential(nn.Flatten(), nn.Linear(48, 2))}"
    result = grade_one(write([MODEL, other]), spec, threads=1)
    checks = {c.id: c for c in result.checks}
    assert result.status == "graded", result.error
    # scratch: Linear(48, 1) + Linear(1, 10) = 49 + 20 parameters, 48 + 10 MACs
    assert result.metrics["models"] == {"scratch": {"params": 69, "trainable_params": 69, "macs": 58,
                                                    "accuracy": None, "weights": 69, "weight_bits": 32.0,
                                                    "activation_bits": 32, "structured_sparsity": 0.0,
                                                    "unstructured_sparsity": 0.0}}
    assert (checks["params"].passed, checks["scratch_params"].passed) == (True, True)
    assert (checks["finetuned_output"].passed, checks["finetuned_output"].got) == (False, None)
    assert "did not submit the model 'finetuned'" in checks["finetuned_output"].message
    assert (result.score, result.max_score) == (4.0, 5.0)  # params 2 + output 1 + scratch_params 1


def test_a_check_naming_an_undeclared_extra_model_is_a_spec_error(tiny):
    from harness.spec import SpecError

    with pytest.raises(SpecError) as error:
        tiny(extra_toml=EXTRA_MODELS_TOML, assignment_keys='extra_models = ["finetuned"]')
    assert ("assignment.toml: [[checks]] 'scratch_params' model: 'scratch' is not one of [assignment] extra_models "
            "(finetuned)") in error.value.problems


def test_submit_refuses_an_extra_model_name_that_is_not_an_identifier_before_writing_anything(tmp_path, monkeypatch):
    from harness.submit import SubmissionError, submit

    monkeypatch.chdir(tmp_path)
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 2))
    with pytest.raises(SubmissionError, match="extra model name '../model': use a short lowercase identifier"):
        submit(linear, torch.randn(2, 3, 4, 4), extra_models={"../model": linear})
    assert not list((tmp_path / "dlgrade_out").iterdir())
