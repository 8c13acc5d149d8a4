"""GPU preflight: a probe kernel in the real sandbox must use the GPU before any student is graded; if it cannot,
the command says why and refuses ([runner] device = "cuda") or falls back to the CPU loudly ("auto").
This machine has no NVIDIA driver: the probe's kernel really fails here, as it would in a sandbox cut off from one."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import devices, preflight
from harness.grade import grade_one
from harness.preflight import FALLBACK_ENV, diagnose, prepare_device
from harness.spec import ASSIGNMENTS_DIR, load_spec

KERNEL_SAID = ("the kernel's CUDA call failed with RuntimeError: Found no NVIDIA driver on your system. Please check "
               "that you have an NVIDIA GPU and installed a driver from http://www.nvidia.com/Download/index.aspx")


def with_runner_device(tmp_path: Path, device: str) -> Path:
    root = tmp_path / "shapes_params"
    shutil.copytree(ASSIGNMENTS_DIR / "shapes_params", root)
    toml = root / "assignment.toml"
    toml.write_text(toml.read_text() + f'\n[runner]\ndevice = "{device}"\n')
    return root


def test_diagnosis_names_each_cause_with_its_fix(tmp_path, monkeypatch):
    dev = tmp_path / "dev"
    dev.mkdir()
    for name, mode in (("nvidia0", 0o660), ("nvidiactl", 0o666), ("nvidia-uvm", 0o666)):
        (dev / name).touch()
        os.chmod(dev / name, mode)
    (dev / "nvidia-caps").mkdir()
    assert diagnose("2", kernel_uid=1_000_123, dev=dev) == [
        "no NVIDIA driver answers on this machine (NVML found no GPU)",
        f"{dev}/nvidia0 is rw-rw---- (0o660): the kernel's own user (uid 1000123, no groups) cannot open it; make "
        "the NVIDIA device nodes world read-writable (the driver's default, NVreg_DeviceFileMode=0666)"]
    monkeypatch.setattr(devices, "nvml_device_count", lambda: 1)
    assert diagnose("", kernel_uid=None, dev=dev) == [
        "CUDA_VISIBLE_DEVICES is empty: the scheduler gave this job no GPU"]
    assert diagnose("0", kernel_uid=None, dev=dev) == []  # as the grader's user: no mode issue


@pytest.mark.slow  # a probe kernel
def test_an_assignment_that_needs_a_gpu_refuses_to_grade_and_says_why(tmp_path):
    root = with_runner_device(tmp_path, "cuda")
    notebook = root / "submissions" / "correct.ipynb"
    out = tmp_path / "result.json"
    check = subprocess.run([sys.executable, "-m", "grading.cli", "check", str(notebook), "--assignment", str(root),
                            "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert check.returncode == 2, check.stderr
    assert check.stderr.strip() == (
        'dlgrade check: the assignment needs a GPU ([runner] device = "cuda" in assignment.toml) but a notebook '
        "kernel in the grading sandbox cannot use one: no NVIDIA driver answers on this machine (NVML found no "
        f"GPU); {KERNEL_SAID}. Nothing was graded.")
    assert not out.exists()


@pytest.mark.slow  # a probe kernel, then a graded notebook
def test_a_gpu_the_sandbox_cannot_use_means_grading_on_the_cpu_with_a_note(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(devices, "nvml_device_count", lambda: 1)  # the grader sees a GPU; the kernel has no driver
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setenv(FALLBACK_ENV, "")  # recorded, so that the test's fallback is undone after it
    spec = load_spec("shapes_params")
    assert devices.pick_device() == "cuda"
    assert prepare_device(spec) == "cpu"
    reason = f"GPU 0: {KERNEL_SAID}"
    assert capsys.readouterr().err == ("WARNING: grading on the CPU: a notebook kernel in the grading sandbox cannot "
                                       f"use the GPU ({reason})\n")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "" and devices.pick_device() == "cpu"
    result = grade_one(ASSIGNMENTS_DIR / "shapes_params" / "submissions" / "correct.ipynb", spec).to_json()
    assert result["run"]["device"] == "cpu" and result["status"] == "graded"
    assert result["run"]["notes"][0] == ("graded on the CPU: the grader's GPU was not usable from the notebook's "
                                         "sandbox "
                                         f"({reason})")


def test_device_cpu_hides_the_gpus_without_a_probe(tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "nvml_device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setenv(FALLBACK_ENV, "")  # recorded, so that the test's fallback is undone after it
    monkeypatch.setattr(preflight, "kernel_gpu_problem", lambda *a: pytest.fail("no probe for device = cpu"))
    assert prepare_device(load_spec(with_runner_device(tmp_path, "cpu"))) == "cpu"
    assert devices.visible_gpus() == [] and preflight.fallback_note() is None


def test_without_a_gpu_auto_is_the_cpu_without_a_probe(monkeypatch):
    monkeypatch.setattr(preflight, "kernel_gpu_problem", lambda *a: pytest.fail("no probe without a GPU"))
    assert prepare_device(load_spec("shapes_params")) == "cpu"
