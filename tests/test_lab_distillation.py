"""The distillation lab's teacher: a named recipe of reference/backbones.py, given to the notebook like a backbone."""
from __future__ import annotations

import pytest
import torch

from reference.backbones import BACKBONES, BackboneError, notebook_backbone, pretrain_digits_backbone


def test_the_teacher_recipe_trains_on_all_ten_digits_and_records_its_name(tmp_path):
    meta = pretrain_digits_backbone(tmp_path / "backbone.pt", epochs=1, name="digits32_teacher")
    assert (meta["name"], meta["dataset"], meta["num_classes"], meta["seed"]) == ("digits32_teacher", "digits32", 10, 0)
    teacher, loaded = notebook_backbone(tmp_path, name="digits32_teacher")
    assert loaded == meta and teacher(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert sum(p.numel() for p in teacher.parameters()) == 308_826


def test_a_notebook_refuses_another_backbone_in_its_data_dir(tmp_path):
    pretrain_digits_backbone(tmp_path / "backbone.pt", epochs=1)  # Lab 1's default, digits 0-4
    with pytest.raises(BackboneError, match="holds the backbone digits32_resnet18, not digits32_teacher: delete it"):
        notebook_backbone(tmp_path, name="digits32_teacher")
    assert set(BACKBONES) == {"digits32_resnet18", "digits32_teacher"}
