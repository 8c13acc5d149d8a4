"""Child side of the execute step: run one prepared notebook with papermill's notebook client.

`python -m harness.kernel_runner` is a zygote (`harness.zygote`) with papermill and jupyter_client imported. For each
job (notebook, kernel, timeouts, paths to mask, working directory, scrubbed environment) it forks a runner in a new
session, answers {"pid"}, and when the runner has ended relays its report: the executed notebook and the outcome,
written by the runner to a pipe that jupyter_client closes in the kernel it starts (close_fds), so the student's
code cannot write to it. Per-cell wall time is papermill's own metadata (start_time, end_time, duration); per-cell
CPU time (user + system of every process under the runner: the kernel, its threads and children) is read by the
runner from /proc at each cell's start and end (nbclient's hooks), so the kernel cannot change it. On a CUDA run the
runner waits, after every cell, for the GPU work that cell queued (`GPU_SYNC`), and that wait counts in the cell.

The runner is a child subreaper, so every process the kernel forks stays in its process tree and the parent can
kill all of them when the run ends. Before the kernel starts, the runner isolates what it starts (`harness.isolation`:
mount and network namespaces, an unprivileged kernel user, resource limits), and while the notebook runs it keeps at
most `max_output_mb` of cell outputs.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import nbformat

from harness import bubblewrap, isolation
from harness.processes import PR_SET_CHILD_SUBREAPER, kill_tree, prctl, tree_cpu_seconds
from harness.zygote import exit_reason, fork, read_until_eof, serve

# Run by the runner in the kernel after every cell of a CUDA run: CUDA works asynchronously, so a cell returns while the
# GPU still runs what it queued, and without this the wait (wall and CPU: the waiting thread spins) would land in the
# next cell that synchronizes (an `.item()`, a print of a loss, the submit cell). Every cell, not only those tagged
# `train`: a cell before a train cell that leaves GPU work queued must pay for it itself. Silent (no output, not in the
# history or the notebook), leaves no name in the student's namespace, and does nothing when torch was never imported
# or CUDA never initialised (so it never initialises CUDA itself).
GPU_SYNC = ("(lambda torch: torch is not None and torch.cuda.is_initialized() and torch.cuda.synchronize())"
            "(__import__('sys').modules.get('torch'))")


async def wait_for_gpu(client, cell) -> None:
    """Run GPU_SYNC in the kernel through `client` (the cell's timeout applies, a dead kernel is noticed). An error it
    raises (a CUDA error of the work the cell queued, e.g. a device-side assert) is added to the cell's outputs unless
    it has one already: that cell, not the next one, caused it."""
    from nbclient.util import ensure_async

    msg_id = await ensure_async(client.kc.execute(GPU_SYNC, silent=True, store_history=False))
    reply = await client.async_wait_for_reply(msg_id, cell)
    content = (reply or {}).get("content", {})
    if content.get("status") == "error" and not any(o.output_type == "error" for o in cell.outputs):
        cell.outputs.append(nbformat.v4.new_output("error", ename=content.get("ename", ""),
                                                   evalue=content.get("evalue", ""),
                                                   traceback=content.get("traceback", [])))


def _exit_requested(execute_reply: dict) -> bool:
    """IPython's exit()/quit() only asks the front-end to stop (payload 'ask_exit'); the kernel goes on."""
    payload = (execute_reply or {}).get("content", {}).get("payload", [])
    return any(item.get("source") == "ask_exit" for item in payload)


def kernel_manager_for(uid: int | None, wrap: dict | None = None):
    """jupyter_client's kernel manager; for an unprivileged kernel, its connection file is handed to that user;
    `wrap` ({"bwrap", "run_root", "masks", "needs", "gpu", "max_processes"}): the kernel runs inside bubblewrap,
    reached over unix sockets in its runtime directory (harness/bubblewrap.py)."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class SandboxedKernelManager(AsyncKernelManager):
        def write_connection_file(self, **kwargs) -> None:
            super().write_connection_file(**kwargs)
            if uid is not None:
                os.chown(self.connection_file, uid, uid)

    if wrap is None:
        return SandboxedKernelManager

    class BubblewrappedKernelManager(SandboxedKernelManager):
        @default("transport")
        def _default_transport(self):
            return "ipc"

        @default("ip")
        def _default_ip(self):
            return os.path.join(wrap["run_root"], "runtime", "kernel-ipc")

        def format_kernel_cmd(self, extra_arguments=None) -> list[str]:
            # a signal would reach bwrap, not the kernel in its own session and PID namespace: ask ipykernel to
            # interrupt itself (a control message) when a cell times out
            self.kernel_spec.interrupt_mode = "message"
            return bubblewrap.kernel_command(wrap["bwrap"], super().format_kernel_cmd(extra_arguments),
                                             wrap["run_root"], wrap["masks"], wrap["max_processes"], wrap["needs"],
                                             wrap["gpu"])

    return BubblewrappedKernelManager


def output_capped_client(max_output_bytes: int):
    """papermill's notebook client keeping at most `max_output_bytes` of outputs (counted as JSON); later outputs
    are dropped and `truncated_cell` says where the cap was reached."""
    from papermill.clientwrap import PapermillNotebookClient

    class OutputCappedClient(PapermillNotebookClient):
        output_bytes = 0
        truncated_cell: int | None = None

        def output(self, outs, msg, display_id, cell_index):
            self.output_bytes += len(json.dumps(msg.get("content", {})))
            if self.output_bytes <= max_output_bytes:
                return super().output(outs, msg, display_id, cell_index)
            if self.truncated_cell is None:
                self.truncated_cell = cell_index
                outs.append(nbformat.v4.new_output("stream", name="stderr", text=(
                    f"[dlgrade: the notebook's outputs passed {max_output_bytes / 1024**2:g} MB; later outputs "
                    "were dropped]\n")))
            return None

    return OutputCappedClient


def run(nb: nbformat.NotebookNode, kernel_name: str, cell_timeout_s: float, start_timeout_s: float,
        max_output_bytes: int = 2**62, kernel_uid: int | None = None, sync_gpu: bool = False,
        wrap: dict | None = None) -> dict:
    """Execute `nb`; `sync_gpu` (CUDA runs): each cell's queued GPU work counts in that cell (GPU_SYNC)."""
    from jupyter_client.kernelspec import NoSuchKernel
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.engines import NotebookExecutionManager

    # papermill marks cells that never ran as "completed" when the run ends early, so its status field cannot
    # tell what ran: record it from nbclient's hooks instead.
    started: list[int] = []
    executed: list[int] = []
    exit_cells: list[int] = []
    cpu_s: dict[int, float] = {}  # executed cell -> CPU seconds of the kernel's process tree while it ran
    cpu_at_start = 0.0

    def on_cell_execute(cell, cell_index):
        nonlocal cpu_at_start
        started.append(cell_index)
        cpu_at_start = tree_cpu_seconds(os.getpid())  # the kernel and its children are under this runner

    async def on_cell_executed(cell, cell_index, execute_reply):
        if sync_gpu:  # before the CPU reading and inside papermill's cell_start..cell_complete: counted in the cell
            await wait_for_gpu(client, cell)
        cpu_s[cell_index] = round(tree_cpu_seconds(os.getpid()) - cpu_at_start, 3)
        executed.append(cell_index)
        if _exit_requested(execute_reply):
            exit_cells.append(cell_index)

    nb_man = NotebookExecutionManager(nb, output_path=None, progress_bar=False, log_output=False)
    nb_man.notebook_start()
    outcome, message = "completed", ""
    client = output_capped_client(max_output_bytes)(
        nb_man,
        kernel_name=kernel_name,
        kernel_manager_class=kernel_manager_for(kernel_uid, wrap),
        timeout=cell_timeout_s,
        startup_timeout=start_timeout_s,
        allow_errors=True,  # a failing test cell costs its points, it does not stop grading
        shutdown_kernel="immediate",  # its state is thrown away: a graceful shutdown only costs seconds
        on_cell_execute=on_cell_execute,
        on_cell_executed=on_cell_executed,
        log=logging.getLogger("papermill"),
    )
    as_user = {} if kernel_uid is None else {"user": kernel_uid, "group": kernel_uid, "extra_groups": []}
    try:
        client.execute(**as_user)  # Popen arguments of the kernel process
    except CellTimeoutError as exc:
        outcome, message = "cell_timeout", str(exc).splitlines()[0] if str(exc) else "cell timed out"
    except DeadKernelError as exc:
        outcome, message = "kernel_died", str(exc)
    except NoSuchKernel:
        outcome = "no_kernel"
        message = (
            f"Jupyter kernel '{kernel_name}' is not installed: run `make setup` or "
            f"`python -m ipykernel install --sys-prefix --name {kernel_name}`"
        )
    except RuntimeError as exc:  # kernel did not start in time
        outcome, message = "kernel_died", f"{type(exc).__name__}: {exc}"
    finally:
        nb_man.notebook_complete()
    interrupted = started[-1] if started and started[-1] not in executed else None
    return {
        "outcome": outcome,
        "message": message,
        "executed_cells": executed,
        "interrupted_cell": interrupted,
        "exit_cells": exit_cells,
        "cpu_s": cpu_s,
        "output_truncated_cell": client.truncated_cell,
        "notebook": nb_man.nb,
    }


def handle(job: dict, reply) -> None:
    """Zygote side: fork a runner for `job`, tell the grader its pid, relay its report when it has ended."""
    read_fd, write_fd = os.pipe()
    pid = fork(lambda: run_child(job, read_fd, write_fd))
    os.close(write_fd)
    reply({"pid": pid})
    report, _ = read_until_eof(read_fd)
    _, status = os.waitpid(pid, 0)
    reply({"report": report.decode(errors="replace"), "exit": exit_reason(status)})


def run_child(job: dict, read_fd: int, report_fd: int) -> int:
    """The runner: a new session in the run's directory with the run's environment; reports through `report_fd`."""
    os.close(read_fd)
    os.setsid()
    os.dup2(os.open(job["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 2)
    os.chdir(job["workdir"])
    os.environ.clear()
    os.environ.update(job["env"])  # the kernel inherits it
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    logging.basicConfig(level=logging.ERROR)
    wrap = job["bubblewrap"] and {**job["bubblewrap"], "masks": job["mask"], "gpu": job["sync_gpu"],
                                  "max_processes": job["max_processes"]}
    sandbox, uid = isolate_in_bubblewrap(job) if wrap else isolate(job)
    nb = nbformat.reads(job["notebook"], as_version=4)
    report = run(nb, job["kernel"], job["cell_timeout_s"], job["start_timeout_s"], job["max_output_bytes"], uid,
                 job["sync_gpu"], wrap)
    kill_tree(os.getpid(), include_root=False)  # anything the kernel left behind
    report["notebook"] = nbformat.writes(report["notebook"])
    report["sandbox"] = sandbox
    with os.fdopen(report_fd, "w") as out:
        json.dump(report, out)
    return 0


def isolate(job: dict) -> tuple[dict, int | None]:
    """Mounts, network, user and limits for the kernel about to start: ({"mounts", "network", "user"}, each saying
    what was achieved or "none: why"; the kernel's uid). The kernel runs as `job["kernel_user"]` only if the
    directories it needs could be exposed to that user."""
    uid = job["kernel_user"]
    why_not = isolation.private_mounts()
    if why_not:
        mounts, uid = f"none: {why_not}", None
    else:
        try:
            if uid is not None:
                isolation.expose_paths(kernel_needs(job["workdir"]), Path(job["staging"]))
            isolation.mask_paths(job["mask"])
            mounts = "mount namespace"
        except isolation.IsolationError as exc:
            mounts, uid = f"none: {exc.strerror}", None
    network = isolation.isolate_network()
    isolation.set_limits(job["max_processes"], job["max_file_bytes"], job["cpu_time_s"])
    # a kernel user that was asked for is dropped only when the mounts failed: the same "none: why"
    user = ("its own unprivileged user" if uid is not None else
            "none: the grader is not root" if job["kernel_user"] is None else mounts)
    held = uid is not None and not network.startswith("none")
    return {"mechanism": "root" if held else "none", "mounts": mounts, "network": network, "user": user}, uid


def isolate_in_bubblewrap(job: dict) -> tuple[dict, None]:
    """The kernel will start inside bubblewrap (kernel_manager_for), which sets its process limit in its own user
    namespace: only the other limits are set here."""
    isolation.set_limits(None, job["max_file_bytes"], job["cpu_time_s"])
    return bubblewrap.description(job["max_processes"]), None


def kernel_needs(workdir: str) -> list[str]:
    """What an unprivileged kernel must reach: the interpreter, the venv, this package, its own run directory."""
    return [sys.base_prefix, sys.prefix, str(Path(isolation.__file__).resolve().parent.parent), workdir]


def warm_up() -> None:
    """What every runner needs, imported once in the zygote (no event loop or ZMQ context is created here)."""
    import jupyter_client.kernelspec  # noqa: F401
    import nbclient.exceptions  # noqa: F401
    import papermill.clientwrap  # noqa: F401
    import papermill.engines  # noqa: F401


if __name__ == "__main__":
    sys.exit(serve(handle, warm_up))
