"""The kernel inside bubblewrap (`bwrap`, Debian's `bubblewrap`): isolation without privileges, for graders that are
not root (issue 17; work in progress on branch issue17-prototype).

Only the kernel is inside; the runner stays outside and talks to it over ZMQ unix sockets in the run's `runtime/`
directory (TCP cannot cross the kernel's own network namespace). What the kernel sees:
- the host file system read-only (`--ro-bind / /`), a fresh /dev and /proc, an empty /tmp;
- its run's `work/ out/ home/ tmp/ runtime/` writable and `data/` read-only, nothing else of the run;
- held-out data sources and grading state masked (an empty read-only tmpfs over directories, /dev/null over files);
- its own user, PID, network (loopback only), IPC, UTS and cgroup namespaces (`--unshare-all`); it dies with the
  runner (`--die-with-parent`) and has no terminal to inject input into (`--new-session`).
"""
from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess

WRITABLE = ("work", "out", "home", "tmp", "runtime")  # of the run's directory; `data` is bound read-only


@functools.lru_cache(maxsize=1)
def bwrap_path() -> tuple[str | None, str]:
    """(path of a bwrap that can create namespaces here, "") or (None, why not): a probe runs `true` inside."""
    path = shutil.which("bwrap")
    if path is None:
        return None, "bubblewrap is not installed (Debian/Ubuntu: apt install bubblewrap)"
    probe = subprocess.run([path, "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "true"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return None, (f"bubblewrap cannot create namespaces here ({probe.stderr.strip() or probe.returncode}): "
                      "unprivileged user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone)")
    return path, ""


def kernel_command(bwrap: str, argv: list[str], run_root: str, masks: list[str], gpu: bool = False) -> list[str]:
    """`argv` (the kernel's command) wrapped in bubblewrap for the run in `run_root`."""
    command = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    # bind sources are host paths, so the run's directories come back after /tmp was replaced
    for sub in WRITABLE:
        command += ["--bind", os.path.join(run_root, sub), os.path.join(run_root, sub)]
    command += ["--ro-bind", os.path.join(run_root, "data"), os.path.join(run_root, "data")]
    for path in masks:
        if os.path.isdir(path):
            command += ["--tmpfs", path, "--remount-ro", path]
        elif os.path.exists(path):
            command += ["--ro-bind", "/dev/null", path]
    if gpu:  # the minimal /dev has no GPU nodes
        for node in sorted(glob.glob("/dev/nvidia*")):
            command += ["--dev-bind", node, node]
    command += ["--unshare-all", "--die-with-parent", "--new-session",
                # ipykernel's parent poller exits when its parent is pid 1, which bwrap's init always is
                "--unsetenv", "JPY_PARENT_PID",
                "--chdir", os.path.join(run_root, "work"), "--"]
    return command + list(argv)
