"""Accuracy on the held-out split, and proof that the student's kernel cannot read the held-out labels."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from harness.execute import Sandbox, cpu_threads, execute
from harness.grade import grade_one
from harness.limits import Limits
from harness.prepare import inject_parameters
from tests.conftest import notebook

pytestmark = pytest.mark.slow

DIGITS = '\n[parameters]\ndataset = "digits32"\n'
# a model that always answers class 0, whatever the input: its accuracy is the share of zeros in the test split
CONSTANT_MODEL = """\
import torch
from torch import nn
model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 10))
with torch.no_grad():
    model[1].weight.zero_(); model[1].bias.zero_(); model[1].bias[0] = 1.0"""
CONSTANT_DIGITS_MODEL = CONSTANT_MODEL.replace("3 * 4 * 4", "3 * 32 * 32")
SUBMIT_32 = "import harness\nharness.submit(model, torch.randn(2, 3, 32, 32))"

PROBE = """\
import os
try:
    from sklearn.datasets import load_digits
    leaked_labels = load_digits().target.tolist()
except Exception:
    leaked_labels = None
assert leaked_labels is None, "the digits source (test labels) is readable"
assert sorted(os.listdir(data_dir)) == ["train.pt", "val.pt"], os.listdir(data_dir)
try:
    assignment_files = os.listdir(ASSIGNMENT_ROOT)
except PermissionError:  # as root the kernel runs as its own user, which cannot reach the grader's temp dirs either
    assignment_files = []
assert not assignment_files, "the assignment directory is readable"
"""


def test_accuracy_is_measured_on_the_held_out_split(tiny):
    spec, write = tiny(extra_toml=DIGITS, submit=SUBMIT_32, input_shape=(3, 32, 32))
    result = grade_one(write([CONSTANT_DIGITS_MODEL], submit=SUBMIT_32), spec)
    assert result.status == "graded", result.error
    assert result.metrics["accuracy"] == 36 / 360  # digits32 test split: 36 zeros out of 360
    assert result.metrics["latency_ms"] > 0


def test_kernel_cannot_read_the_held_out_labels(tiny):
    spec, write = tiny(extra_toml=DIGITS, submit=SUBMIT_32, input_shape=(3, 32, 32))
    probe = f"ASSIGNMENT_ROOT = {str(spec.root)!r}\n" + PROBE
    result = grade_one(write([CONSTANT_DIGITS_MODEL, probe], submit=SUBMIT_32), spec)
    assert result.status == "graded", result.error
    assert result.notes == []  # no probe assertion failed, and isolation did not fall back


def test_the_probe_detects_a_leak_when_nothing_is_masked(tiny):
    """Positive control for the test above: without masking the same probe sees the digits labels."""
    spec, _ = tiny(extra_toml=DIGITS)
    probe = f"ASSIGNMENT_ROOT = {str(spec.root)!r}\ndata_dir = '.'\n" + PROBE
    nb = inject_parameters(notebook([probe], submit=None), {}, "dlgrade")
    box = Sandbox.create()
    try:
        report = execute(nb, box, Limits(threads=cpu_threads()), "dlgrade", mask=[])
    finally:
        box.remove()
    errors = [c.error for c in report.cells if c.error]
    assert errors == [{"ename": "AssertionError", "evalue": "the digits source (test labels) is readable"}]


SEEDED_TRAINING = """\
import torch
from torch import nn
from harness.data import load_notebook_data
torch.manual_seed(seed)
train_x, train_y, val_x, val_y = load_notebook_data(data_dir, dataset, device)
model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
for step in range(40):
    batch = torch.randint(0, len(train_y), (64,))
    loss = nn.functional.cross_entropy(model(train_x[batch]), train_y[batch])
    optimizer.zero_grad(); loss.backward(); optimizer.step()"""


def test_seeded_training_gives_the_same_accuracy_twice(tiny):
    spec, write = tiny(extra_toml=DIGITS, submit=SUBMIT_32, input_shape=(3, 32, 32))
    notebook_path = write([SEEDED_TRAINING], tags={0: ["train"]})
    first, second = grade_one(notebook_path, spec), grade_one(notebook_path, spec)
    assert first.status == second.status == "graded"
    assert first.metrics["accuracy"] == second.metrics["accuracy"]
    assert first.metrics["accuracy"] > 0.5  # it did learn: chance is 0.1


@pytest.mark.parametrize("relative", [True, False])
def test_a_mask_given_as_a_relative_path_hides_it_too(tmp_path, monkeypatch, relative):
    """`dlgrade check NB --assignment ./my_lab` masks a relative path; the runner works in the run's directory, so
    the path must be made absolute before it gets there (before, the kernel read the hidden notebook)."""
    secret_dir = Path(tempfile.mkdtemp(prefix="dlgrade-secret-"))  # readable by any user, as a course checkout is
    try:
        secret_dir.chmod(0o755)
        (secret_dir / "hidden.ipynb").write_text("hidden tests")
        (secret_dir / "hidden.ipynb").chmod(0o644)
        monkeypatch.chdir(secret_dir.parent)
        probe = f"print(open({str(secret_dir / 'hidden.ipynb')!r}).read())"
        nb = inject_parameters(notebook([probe], submit=None), {}, "dlgrade")
        box = Sandbox.create()
        try:
            mask = [Path(secret_dir.name)] if relative else [secret_dir]
            report = execute(nb, box, Limits(threads=cpu_threads()), "dlgrade", mask=mask)
        finally:
            box.remove()
        errors = [c.error["ename"] for c in report.cells if c.error]
        assert errors == ["FileNotFoundError"], report.cells  # an empty tmpfs lies over the directory
    finally:
        shutil.rmtree(secret_dir)
