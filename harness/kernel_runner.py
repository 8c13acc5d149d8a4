"""Child side of the execute step: run one prepared notebook with papermill's notebook client.

`python -m harness.kernel_runner` is a zygote (`harness.zygote`) with papermill and jupyter_client imported. For each
job (notebook, kernel, timeouts, paths to mask, working directory, scrubbed environment) it forks a runner in a new
session, answers {"pid"}, and when the runner has ended relays its report: the executed notebook and the outcome,
written by the runner to a pipe that jupyter_client closes in the kernel it starts (close_fds), so the student's
code cannot write to it. Per-cell timing is papermill's own metadata (start_time, end_time, duration).

The runner is a child subreaper, so every process the kernel forks stays in its process tree and the parent can
kill all of them when the run ends. Before the kernel starts, the runner moves into a private mount namespace (when
the OS allows it) and hides the given paths — the sources of the held-out data — from everything it starts.
"""
from __future__ import annotations

import ctypes
import json
import logging
import os
import sys

import nbformat

from harness.processes import PR_SET_CHILD_SUBREAPER, kill_tree, prctl
from harness.zygote import exit_reason, fork, read_until_eof, serve

CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_BIND, MS_REC, MS_PRIVATE = 1, 4096, 16384, 1 << 18



def mask_paths(paths: list[str]) -> str:
    """Hide files (bind /dev/null over them) and directories (empty read-only tmpfs) in a private mount namespace.

    Returns how isolation was achieved, or why not ("none: ...") — e.g. without CAP_SYS_ADMIN.
    """
    if not paths:
        return "nothing to mask"
    if not sys.platform.startswith("linux"):
        return f"none: mount namespaces need Linux, not {sys.platform}"
    libc = ctypes.CDLL(None, use_errno=True)

    def call(result: int, what: str) -> None:
        if result != 0:
            raise OSError(ctypes.get_errno(), f"{what}: {os.strerror(ctypes.get_errno())}")

    try:
        call(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        call(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
        for path in paths:
            target = os.fsencode(path)
            if os.path.isdir(path):
                call(libc.mount(b"tmpfs", target, b"tmpfs", MS_RDONLY, b"size=4k"), f"hide {path}")
            elif os.path.exists(path):
                call(libc.mount(b"/dev/null", target, None, MS_BIND, None), f"hide {path}")
    except OSError as exc:
        return f"none: {exc.strerror}"
    return "mount namespace"


def _exit_requested(execute_reply: dict) -> bool:
    """IPython's exit()/quit() only asks the front-end to stop (payload 'ask_exit'); the kernel goes on."""
    payload = (execute_reply or {}).get("content", {}).get("payload", [])
    return any(item.get("source") == "ask_exit" for item in payload)


def run(nb: nbformat.NotebookNode, kernel_name: str, cell_timeout_s: float, start_timeout_s: float) -> dict:
    from jupyter_client.kernelspec import NoSuchKernel
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NotebookExecutionManager

    # papermill marks cells that never ran as "completed" when the run ends early, so its status field cannot
    # tell what ran: record it from nbclient's hooks instead.
    started: list[int] = []
    executed: list[int] = []
    exit_cells: list[int] = []

    def on_cell_execute(cell, cell_index):
        started.append(cell_index)

    def on_cell_executed(cell, cell_index, execute_reply):
        executed.append(cell_index)
        if _exit_requested(execute_reply):
            exit_cells.append(cell_index)

    nb_man = NotebookExecutionManager(nb, output_path=None, progress_bar=False, log_output=False)
    nb_man.notebook_start()
    outcome, message = "completed", ""
    try:
        PapermillNotebookClient(
            nb_man,
            kernel_name=kernel_name,
            timeout=cell_timeout_s,
            startup_timeout=start_timeout_s,
            allow_errors=True,  # a failing test cell costs its points, it does not stop grading
            shutdown_kernel="immediate",  # its state is thrown away: a graceful shutdown only costs seconds
            on_cell_execute=on_cell_execute,
            on_cell_executed=on_cell_executed,
            log=logging.getLogger("papermill"),
        ).execute()
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
    isolation = mask_paths(job["mask"])
    nb = nbformat.reads(job["notebook"], as_version=4)
    report = run(nb, job["kernel"], job["cell_timeout_s"], job["start_timeout_s"])
    kill_tree(os.getpid(), include_root=False)  # anything the kernel left behind
    report["notebook"] = nbformat.writes(report["notebook"])
    report["isolation"] = isolation
    with os.fdopen(report_fd, "w") as out:
        json.dump(report, out)
    return 0


def warm_up() -> None:
    """What every runner needs, imported once in the zygote (no event loop or ZMQ context is created here)."""
    import jupyter_client.kernelspec  # noqa: F401
    import nbclient.exceptions  # noqa: F401
    import papermill.clientwrap  # noqa: F401
    import papermill.engines  # noqa: F401


if __name__ == "__main__":
    sys.exit(serve(handle, warm_up))
