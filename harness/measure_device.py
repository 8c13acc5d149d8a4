"""Held-out accuracy, latency and throughput of an exported model on the grading device (docs/gpu.md).

The measuring child (`harness.measuring_process`) runs this; the profile keys it adds are `accuracy` (or
`accuracy_error`),
`latency_ms` (batch 1: on a large GPU mostly kernel-launch overhead), `throughput_per_s` (images per second at
`throughput_batch`, the held-out batch size), `latency_device` (where both were timed) and, when the GPU was given
up, `notes`.

`torch.export` records tensor constants (plain tensor attributes) and factory calls (`torch.ones(..., device="cpu")`)
on the CPU the student exported on, and `.to("cuda")` moves neither: `on_device` moves them too. Whatever still fails
on the device, while the model runs on the CPU where it was exported and checked, is not the student's fault: the
accuracy is then measured on the CPU with a note (`measure_on_device_or_cpu`), never `measure_failed`.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

T = TypeVar("T")


def on_device(module: nn.Module, device: str) -> nn.Module:
    """`module` (an exported program's `.module()`) moved to `device`: parameters and buffers, the tensor constants
    that `.to()` leaves behind, and the `device=cpu` arguments of the calls recorded in its graphs."""
    module = module.to(device)
    target = torch.device(device)
    for sub in module.modules():
        for name, value in list(vars(sub).items()):
            if isinstance(value, torch.Tensor) and not isinstance(value, nn.Parameter):
                setattr(sub, name, value.to(target))
        graph = getattr(sub, "graph", None)
        if isinstance(graph, torch.fx.Graph):
            moved = False
            for node in graph.nodes:
                if isinstance(node.kwargs.get("device"), torch.device) and node.kwargs["device"].type == "cpu":
                    node.kwargs = {**node.kwargs, "device": target}
                    moved = True
            if moved:
                sub.recompile()
    return module


def measure_on_device_or_cpu(measure: Callable[[str], T], device: str) -> tuple[T, str, str | None]:
    """(measure(device), device, None), or, when that raises a RuntimeError (a device placement our export left,
    the GPU's memory, the driver) and the model measures on the CPU, (measure("cpu"), "cpu", a note saying why). A
    model that fails on the CPU too raises the CPU's error: that failure is the model's own."""
    try:
        return measure(device), device, None
    except RuntimeError as exc:
        if device == "cpu":
            raise
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    result = measure("cpu")
    return result, "cpu", (f"accuracy and latency measured on the CPU: the model could not run on {device} ({why}), "
                           "though it runs on the CPU where it was exported; not counted against the submission")


def batch1_latency_s(module: nn.Module, one: torch.Tensor, device: str, warmup: int = 5, runs: int = 50,
                     budget_s: float = 5.0) -> float:
    """Inference latency of one example: the fastest of `runs` timed forward passes (at most `budget_s` of them).
    The minimum, not the median: interference from other processes only ever adds time, so the minimum is the
    figure that repeats from run to run on a shared machine."""
    for _ in range(warmup):
        module(one)
    fastest, deadline = float("inf"), time.perf_counter() + budget_s
    for _ in range(runs):
        started = time.perf_counter()
        module(one)
        synchronize(device)
        fastest = min(fastest, time.perf_counter() - started)
        if time.perf_counter() > deadline:
            break
    return fastest


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def evaluate(module: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int, dataset: str, device: str,
             batch_size: int) -> dict:
    """Accuracy (batches of `batch_size`, eval mode), batch-1 latency and batch-N throughput on `device`.
    Throughput: the fastest full batch of the accuracy pass itself (after a warm-up pass when there is only one),
    so it costs no extra pass over the data."""
    one = x[:1].to(device)
    latency_ms = round(batch1_latency_s(module, one, device) * 1000, 4)
    timing = {"latency_ms": latency_ms, "latency_device": device}
    n = min(batch_size, len(y))
    if len(y) < 2 * n:  # a single full batch: warm it up, so that the timed pass is not the first of its size
        module(x[:n].to(device))
    correct = not_finite = 0
    fastest = float("inf")
    for start in range(0, len(y), batch_size):
        batch = x[start:start + batch_size].to(device)
        started = time.perf_counter()
        logits = module(batch)
        synchronize(device)
        if len(batch) == n:
            fastest = min(fastest, time.perf_counter() - started)
        if logits.dim() != 2 or logits.shape[1] != num_classes:
            return {"accuracy": None, **timing,
                    "accuracy_error": f"the model returns shape {list(logits.shape[1:])} per example; {dataset} "
                                      f"needs [{num_classes}] (one score per class)"}
        not_finite += int((~torch.isfinite(logits)).any(1).sum())
        correct += int((logits.argmax(1).cpu() == y[start:start + batch_size]).sum())
    timing.update(throughput_per_s=round(n / fastest, 1), throughput_batch=n)
    if not_finite:
        return {"accuracy": None, **timing,
                "accuracy_error": f"the model returns NaN or infinite scores for {not_finite} of the {len(y)} "
                                  "held-out images (check the training loss for NaN: lower the learning rate)"}
    return {"accuracy": round(correct / len(y), 6), **timing}
