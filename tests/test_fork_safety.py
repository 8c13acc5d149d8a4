"""Fork safety: no process that forks per job initialises the CUDA driver (docs/gpu.md, "Fork safety").

A process that has called `cuInit` hands a broken driver state to every child it forks: the child's first CUDA call
fails with "initialization error". These tests observe the driver call itself on a CPU machine: they build a fake
`libcuda.so.1` whose `cuInit` appends "cuInit <pid> <CUDA_VISIBLE_DEVICES>" to the file named by $FAKE_CUDA_LOG and
returns CUDA_ERROR_NO_DEVICE, and put it on the helpers' LD_LIBRARY_PATH. Found by experiment with torch 2.14
(CUDA 13 runtime): the runtime reaches `cuInit` only through `cuGetProcAddress_v2` (asked for "", "cuInit",
"cuGetProcAddress", then every entry point) and calls `cuDriverGetVersion` first; with `cuInit` alone exported it
gives up before calling it, so the fake answers those two and hands out a CUDA_ERROR_NO_DEVICE stub for the rest.
A fake `libnvidia-ml.so.1` next to it reports one GPU, as the driver's NVML library does on a GPU machine.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest
import torch
from torch import nn

from harness import execute as execute_module
from harness import measuring_process, zygote
from harness.execute import RUNNER, Sandbox, execute
from harness.export import export_model
from harness.limits import Limits
from harness.prepare import inject_parameters

pytestmark = pytest.mark.slow  # starts zygotes and a kernel

FAKE_LIBCUDA = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void record(const char *what) {
    const char *path = getenv("FAKE_CUDA_LOG");
    const char *visible = getenv("CUDA_VISIBLE_DEVICES");
    FILE *log = path ? fopen(path, "a") : NULL;
    if (!log) return;
    fprintf(log, "%s %d %s\n", what, (int)getpid(), visible ? (*visible ? visible : "''") : "unset");
    fclose(log);
}

__attribute__((constructor)) static void loaded(void) { record("load"); }
int cuInit(unsigned int flags) { record("cuInit"); return 100; /* CUDA_ERROR_NO_DEVICE */ }
int cuDriverGetVersion(int *version) { *version = 13000; return 0; }
static int no_device(void) { return 100; }

int cuGetProcAddress_v2(const char *symbol, void **pfn, int version, unsigned long long flags, int *status) {
    if (status) *status = 0; /* CU_GET_PROC_ADDRESS_SUCCESS */
    if (!strcmp(symbol, "cuInit")) *pfn = (void *)cuInit;
    else if (!strcmp(symbol, "cuDriverGetVersion")) *pfn = (void *)cuDriverGetVersion;
    else if (!strncmp(symbol, "cuGetProcAddress", 16)) *pfn = (void *)cuGetProcAddress_v2;
    else *pfn = (void *)no_device;
    return 0;
}
int cuGetProcAddress(const char *symbol, void **pfn, int version, unsigned long long flags) {
    return cuGetProcAddress_v2(symbol, pfn, version, flags, NULL);
}
"""


FAKE_NVML = r"""
int nvmlInit(void) { return 0; }
int nvmlInit_v2(void) { return 0; }
int nvmlInitWithFlags(unsigned int flags) { return 0; }
int nvmlShutdown(void) { return 0; }
int nvmlDeviceGetCount_v2(unsigned int *count) { *count = 1; return 0; }
int nvmlDeviceGetCount(unsigned int *count) { *count = 1; return 0; }
"""


@pytest.fixture(scope="module")
def fake_driver():
    """A directory holding the fake libcuda.so.1 and libnvidia-ml.so.1 (built with gcc, which the CI image has) that
    every user can read:
    as root, the kernel runs as its own unprivileged user and must still find the library and write the log."""
    gcc = shutil.which("gcc")
    assert gcc, "gcc is needed to build the fake libcuda.so.1 of the fork-safety tests: apt-get install gcc"
    lib_dir = Path(tempfile.mkdtemp(prefix="dlgrade-fake-cuda-"))
    lib_dir.chmod(0o755)
    try:
        for name, source in (("libcuda.so.1", FAKE_LIBCUDA), ("libnvidia-ml.so.1", FAKE_NVML)):
            (lib_dir / f"{name}.c").write_text(source)
            subprocess.run([gcc, "-shared", "-fPIC", "-o", lib_dir / name, lib_dir / f"{name}.c"], check=True)
        yield lib_dir
    finally:
        shutil.rmtree(lib_dir)


@pytest.fixture
def driver_log(fake_driver, request, monkeypatch) -> Path:
    """Every process the helpers start from now on finds the fake driver and logs to the returned file; the grader
    pins its GPU as a scheduler would (CUDA_VISIBLE_DEVICES=0)."""
    log = fake_driver / f"{request.node.name}.log"
    log.touch(mode=0o666)
    log.chmod(0o666)
    scrubbed_env = zygote.scrubbed_env

    def env_with_fake_driver(*args, **kwargs):
        return {**scrubbed_env(*args, **kwargs), "LD_LIBRARY_PATH": str(fake_driver), "FAKE_CUDA_LOG": str(log)}

    monkeypatch.setattr(zygote, "scrubbed_env", env_with_fake_driver)  # the helpers
    monkeypatch.setattr(execute_module, "scrubbed_env", env_with_fake_driver)  # the notebook's kernel
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    return log


def driver_calls(log: Path, what: str = "cuInit") -> list[tuple[int, str]]:
    """(pid, CUDA_VISIBLE_DEVICES) of every logged `what`."""
    return [(int(pid), visible) for call, pid, visible in (line.split() for line in log.read_text().splitlines())
            if call == what]


def own_zygote(module: str, monkeypatch) -> zygote.Zygote:
    """A fresh zygote of `module` (started with the fake driver visible) that measuring_process.measure / execute
    use."""
    helper = zygote.Zygote(module)
    monkeypatch.setattr(measuring_process, "shared", lambda name: helper)
    monkeypatch.setattr(zygote, "shared", lambda name: helper)
    return helper


def test_the_fake_driver_records_cuinit_of_torch_cuda_is_available(fake_driver, driver_log):
    """Positive control: torch's default availability check really reaches cuInit through the fake driver (NVML's
    report of one GPU notwithstanding)."""
    probe = subprocess.run([sys.executable, "-c", "import os, torch; print(torch.cuda.is_available(), os.getpid())"],
                           env={**os.environ, "LD_LIBRARY_PATH": str(fake_driver), "FAKE_CUDA_LOG": str(driver_log)},
                           capture_output=True, text=True, check=True)
    available, pid = probe.stdout.split()
    assert available == "False"  # cuInit answered CUDA_ERROR_NO_DEVICE
    assert driver_calls(driver_log) == [(int(pid), "0")]


def test_the_measuring_zygote_never_calls_cuinit_its_child_does(driver_log, tmp_path, monkeypatch):
    """The zygote warms up (torch.export, fake tensors) and serves a CPU job and a CUDA job without initialising the
    driver; the child of the CUDA job initialises it, with the GPU the grader was pinned to."""
    helper = own_zygote(measuring_process.MODULE, monkeypatch)
    program = export_model(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10)), torch.randn(2, 3, 32, 32))
    torch.export.save(program, tmp_path / "model.pt2")
    try:
        profile = measuring_process.measure(tmp_path / "model.pt2", (3, 32, 32), 120, threads=1, workdir=tmp_path,
                                   dataset="digits32")
        assert (profile["params"], profile["latency_device"]) == (30730, "cpu")
        assert driver_calls(driver_log) == [], f"cuInit called, the measuring zygote is pid {helper.pid}"
        assert helper.pid in [pid for pid, _ in driver_calls(driver_log, "load")]  # it did load the library
        # the fake driver has no device: the child finds out, and measures on the CPU with a note
        on_cuda = measuring_process.measure(tmp_path / "model.pt2", (3, 32, 32), 120, threads=1, workdir=tmp_path,
                                   dataset="digits32", device="cuda")
        assert (on_cuda["accuracy"], on_cuda["latency_device"]) == (profile["accuracy"], "cpu")
        assert on_cuda["notes"][0].startswith("accuracy and latency measured on the CPU: the model could not run on "
                                              "cuda (No CUDA GPUs are available)")
        calls = driver_calls(driver_log)
        assert len(calls) == 1 and calls[0][0] != helper.pid
        assert calls[0][1] == "0"
    finally:
        helper.close()


def test_the_runner_zygote_never_calls_cuinit_the_kernel_may(driver_log, monkeypatch):
    """The kernel (exec'd by the runner) is free to initialise CUDA: that call is recorded, the zygote's is not."""
    helper = own_zygote(RUNNER, monkeypatch)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import os, torch\nprint(torch.cuda.is_available(), os.getpid())")]
    box = Sandbox.create()
    try:
        report = execute(inject_parameters(nb, {}, "dlgrade"), box, Limits(threads=1), "dlgrade")
        zygote_pid = helper.pid
    finally:
        box.remove()
        helper.close()
    assert report.outcome == "completed"
    available, kernel_pid = report.notebook.cells[-1].outputs[0]["text"].split()
    assert available == "False"
    assert driver_calls(driver_log) == [(int(kernel_pid), "0")]
    assert zygote_pid != int(kernel_pid)


def test_the_device_is_chosen_without_cuinit(fake_driver, driver_log):
    """The local workers' fork server imports the grading path (grading.worker_preload), and the coordinator and the
    workers choose the device through NVML: "cuda", and no cuInit."""
    probe = subprocess.run([sys.executable, "-c", "import grading.worker_preload, harness.grade, reference.train\n"
                            "print(harness.grade.pick_device(), reference.train.pick_device())"],
                           env={**os.environ, "LD_LIBRARY_PATH": str(fake_driver), "FAKE_CUDA_LOG": str(driver_log)},
                           capture_output=True, text=True, check=True)
    assert probe.stdout.split() == ["cuda", "cuda"]
    assert driver_calls(driver_log) == []
