"""GPUs as a resource: the devices a scheduler gave are kept as given, one run per GPU unless sharing is asked for,
local and Dask workers pinned. NVML is the only thing stood in for (this machine has no NVIDIA driver)."""
from __future__ import annotations

import os
import time

import pytest

from grading.batch import BatchError, check_dask_workers, dask_executor, local_executor
from harness import devices
from harness.calibrate import calibration_key
from harness.devices import parse_visible_devices, pick_device, visible_gpus, worker_gpus
from harness.errors import UsageError
from harness.spec import load_spec


def test_visible_devices_are_kept_as_the_scheduler_wrote_them():
    assert parse_visible_devices(None, 4) == ["0", "1", "2", "3"]  # unset: every GPU of the machine
    assert parse_visible_devices("2,3", 4) == ["2", "3"]  # Slurm's allocation: physical indices 2 and 3
    uuids = "GPU-8f6e1a2b-0c3d-4e5f-9a8b-7c6d5e4f3a2b,MIG-1c2d3e4f-5a6b-7c8d-9e0f-a1b2c3d4e5f6"
    assert parse_visible_devices(uuids, 1) == uuids.split(",")
    assert parse_visible_devices("", 4) == [] and parse_visible_devices("-1", 4) == []
    assert parse_visible_devices("0,-1,1", 4) == ["0"]  # CUDA stops at the first invalid entry
    assert parse_visible_devices("1,7,2", 4) == ["1"]  # index 7 does not exist


def test_without_a_driver_no_gpu_is_visible_and_cuda_is_never_picked(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert devices.nvml_device_count() == 0  # this machine: no NVIDIA driver for NVML to load
    assert visible_gpus() == [] and pick_device() == "cpu"


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.setattr(devices, "nvml_device_count", lambda: 4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert visible_gpus() == ["2", "3"] and pick_device() == "cuda"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert visible_gpus() == ["0", "1", "2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == [] and pick_device() == "cpu"


def test_one_worker_per_visible_gpu_by_default():
    assert worker_gpus(None, None, ["2", "3"]) == ["2", "3"]
    assert worker_gpus(1, None, ["2", "3"]) == ["2"]
    assert worker_gpus(None, None, ["MIG-a", "MIG-b", "MIG-c"]) == ["MIG-a", "MIG-b", "MIG-c"]
    assert worker_gpus(None, None, []) == [None]  # no GPU: one worker unless asked
    assert worker_gpus(3, None, []) == [None, None, None]
    assert worker_gpus(3, 4, []) == [None, None, None]  # sharing means nothing without GPUs


def test_more_workers_than_gpus_are_refused_unless_sharing_is_asked_for():
    with pytest.raises(UsageError) as refused:
        worker_gpus(3, None, ["2", "3"])
    assert str(refused.value) == (
        "--workers 3 with 2 visible GPUs (2,3) and 1 run per GPU would put more runs on a GPU than asked: use "
        "--workers 2, or --runs-per-gpu 2 to share each GPU on purpose (time ratios then depend on the neighbouring "
        "runs, and are marked so)")
    assert worker_gpus(3, 2, ["2", "3"]) == ["2", "3", "2"]
    assert worker_gpus(None, 2, ["2", "3"]) == ["2", "3", "2", "3"]
    with pytest.raises(UsageError, match="--workers 5 with 2 visible GPUs .* and 2 runs per GPU .* --runs-per-gpu 3"):
        worker_gpus(5, 2, ["2", "3"])


@pytest.mark.slow  # a fork server that imports torch
def test_each_local_worker_process_is_pinned_to_its_own_gpu():
    gpus = ["GPU-8f6e1a2b", "GPU-0c3d4e5f"]
    executor = local_executor(gpus)
    try:
        # two tasks that overlap in time run in two worker processes
        seen = [f.result(timeout=120) for f in [executor.submit(_pinned_gpu, 2.0) for _ in gpus]]
    finally:
        executor.shutdown()
    assert len({pid for pid, _ in seen}) == 2
    assert sorted(gpu for _, gpu in seen) == sorted(gpus)


def _pinned_gpu(hold_s: float) -> tuple[int, str | None]:
    time.sleep(hold_s)
    return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES")


def test_dask_gpu_workers_must_be_pinned_one_gpu_each_with_a_gpu_resource():
    check_dask_workers({"tcp://a:1": (["0"], {"GPU": 1}), "tcp://b:1": (["1"], {"GPU": 1}), "tcp://c:1": ([], {})})
    with pytest.raises(BatchError) as refused:
        check_dask_workers({"tcp://a:1": (["0", "1"], {"GPU": 1}), "tcp://b:1": (["2"], {}),
                            "tcp://c:1": (["3"], {"GPU": 1})})
    assert str(refused.value) == (
        "the Dask workers are not pinned one run per GPU:\n"
        "  tcp://a:1 sees 2 GPUs (0,1): start one worker per GPU with CUDA_VISIBLE_DEVICES=<that GPU>\n"
        "  tcp://b:1 has a GPU but no GPU=1 resource: start it with --resources GPU=1")


@pytest.mark.slow  # a real Dask LocalCluster
def test_a_cpu_dask_cluster_is_accepted_and_its_tasks_need_no_gpu_resource():
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        client, executor = dask_executor(cluster.scheduler_address, None)
        try:
            # a task asking for a GPU resource would wait forever on these workers
            assert executor.submit(visible_gpus).result(timeout=60) == []
        finally:
            executor.shutdown(wait=False)
            client.close()


def test_gpu_sharing_has_its_own_calibration_and_cpu_keys_are_unchanged():
    spec = load_spec("lab1_pytorch_intro")
    alone = calibration_key(spec, spec.parameters, "NVIDIA H200", "2.14.1", 1)
    assert calibration_key(spec, spec.parameters, "NVIDIA H200", "2.14.1", 1, None) == alone
    assert calibration_key(spec, spec.parameters, "NVIDIA H200", "2.14.1", 1, 1) != alone
    assert calibration_key(spec, spec.parameters, "NVIDIA H200", "2.14.1", 1, 2) != \
        calibration_key(spec, spec.parameters, "NVIDIA H200", "2.14.1", 1, 1)
