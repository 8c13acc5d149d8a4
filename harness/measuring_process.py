"""The clean measuring process of the grading path: a fresh child of a warmed-up zygote (`harness.zygote`) per model.

`python -m harness.measuring_process` imports torch, fvcore and torch.export's serializer and warms them up on a tiny
model of
ours, with one CPU thread and no CUDA, so that no thread pool or device context exists when it forks. For each
request the child sets the request's thread count, loads model.pt2 as data, measures it
(`harness.measure.measure_request`) and writes the profile to a pipe of its own; the zygote kills it at the request's
timeout and answers one message. Student models are only ever loaded in children.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from harness.measure import MeasureError
from harness.zygote import STARTUP_GRACE_S, ZygoteDied, exit_reason, fork, read_until_eof, serve, shared

MODULE = "harness.measuring_process"


def measure(model_path: str | Path, input_shape: Sequence[int], timeout_s: float, *, threads: int,
            workdir: str | Path, dataset: str | None = None, data_source: str | None = None,
            device: str = "cpu", backbone: str | Path | None = None) -> dict:
    """The profile (+ accuracy and latency with a dataset, + the comparison with a pretrained `backbone` file), or
    raise MeasureError (bad file, model that does not run, timeout)."""
    zygote = shared(MODULE)
    zygote.send({"model": str(model_path), "input_shape": list(input_shape), "dataset": dataset,
                 "data_source": data_source, "device": device, "threads": threads, "workdir": str(workdir),
                 "timeout_s": timeout_s, "backbone": str(backbone) if backbone else None})
    try:
        profile = zygote.receive(timeout_s + STARTUP_GRACE_S)
    except ZygoteDied as exc:
        raise MeasureError(f"the measuring process died: {exc}") from None
    if profile is None:
        zygote.close()
        raise MeasureError("the measuring process stopped answering")
    if "error" in profile:
        raise MeasureError(profile["error"])
    return profile


def start() -> None:
    """Start this thread's measuring process now, so its imports and warm-up overlap what comes first."""
    shared(MODULE).start()


# zygote side -----------------------------------------------------------------------------------------------------

def handle(request: dict, reply: Callable[[dict], None]) -> None:
    read_fd, write_fd = os.pipe()
    with tempfile.TemporaryFile() as child_stderr:
        pid = fork(lambda: measure_child(request, write_fd, child_stderr.fileno()))
        os.close(write_fd)
        data, timed_out = read_until_eof(read_fd, request["timeout_s"])
        if timed_out:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        if timed_out:
            reply({"error": f"measuring the model took longer than {request['timeout_s']:g} s: its forward pass is "
                            "too slow for one example (batch 1) - look for loops over pixels or huge layers"})
            return
        try:
            reply(json.loads(data))
        except ValueError:
            child_stderr.seek(0)
            last_line = (child_stderr.read().decode(errors="replace").strip().splitlines() or [""])[-1][:500]
            reply({"error": f"the measuring process died ({exit_reason(status)})"
                            + (f": {last_line}" if last_line else "")})


def measure_child(request: dict, result_fd: int, stderr_fd: int) -> int:
    import torch

    from harness.measure import measure_request

    os.dup2(stderr_fd, 2)
    os.chdir(request["workdir"])
    os.environ["TMPDIR"] = tempfile.tempdir = request["workdir"]
    torch.set_num_threads(request["threads"])
    try:
        profile = measure_request(request)
    except MeasureError as exc:
        profile = {"error": str(exc)}
    with os.fdopen(result_fd, "w") as out:
        out.write(json.dumps(profile))
    return 0


def warm_up() -> None:
    import logging

    import torch

    from harness.measure import warm_up as warm_up_measurement

    logging.disable(logging.WARNING)  # torch.export logs to stderr
    torch.set_num_threads(1)
    warm_up_measurement()


if __name__ == "__main__":
    sys.exit(serve(handle, warm_up))

