"""The kernel inside bubblewrap (`bwrap`, Debian's `bubblewrap`): the sandbox of a grader that is not root.

Only the kernel is inside; the runner stays outside and talks to it over ZMQ unix sockets in the run's `runtime/`
directory (TCP cannot cross the kernel's own network namespace). What the kernel sees, built from nothing
(an allow-list, not the host with holes in it):
- the system directories (/usr, /etc, /lib...) and what the kernel runs (the interpreter, the venv, dlgrade's
  `harness` and `reference` packages) read-only, a fresh /dev and /proc, an empty /tmp;
- its run's `work/ out/ home/ tmp/ runtime/` writable and `data/` read-only, nothing else of the run; everything
  else read-only, bubblewrap's own root and /tmp included (a tmpfs is memory the process tree limit does not see);
- no home directory of the grader, no other run, no gradebook, results, submissions or caches: they are not there;
- held-out data sources and the assignment directory masked where they lie inside what is bound (an empty
  read-only tmpfs over directories, /dev/null over files);
- its own user, PID, network (loopback only), IPC, UTS and cgroup namespaces (`--unshare-all`); it dies with the
  runner (`--die-with-parent`) and has no terminal to inject input into (`--new-session`);
- a process limit of its own: RLIMIT_NPROC set inside its user namespace counts only that namespace's processes
  (Linux >= 5.14 counts rlimits per user namespace), so a fork bomb stops at the limit while the grader's own
  processes (same uid, outside) neither count nor suffer.
"""
from __future__ import annotations

import functools
import glob
import importlib.util
import os
import shutil
import subprocess
import sys

# /.singularity.d: Apptainer's --nv puts the host's NVIDIA driver libraries in /.singularity.d/libs
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/sys", "/.singularity.d")
KERNEL_PACKAGES = ("harness", "reference")  # what submitted notebooks import from dlgrade
WRITABLE = ("work", "out", "home", "tmp", "runtime")  # of the run's directory; `data` is bound read-only
# run inside the sandbox, before the kernel: the process limit then binds the sandbox's user namespace only
LIMIT_THEN_EXEC = ("import os, resource, sys; n = int(sys.argv[1]); "
                   "resource.setrlimit(resource.RLIMIT_NPROC, (n, n)); os.execv(sys.argv[2], sys.argv[2:])")


@functools.lru_cache(maxsize=1)
def bwrap_path() -> tuple[str | None, str]:
    """(path of a bwrap that can create namespaces here, "") or (None, why not): a probe runs `true` inside."""
    path = shutil.which("bwrap")
    if path is None:
        return None, "bubblewrap is not installed (Debian/Ubuntu: apt install bubblewrap)"
    # the kernel's own mounts and namespaces: a container that masks /proc passes a plainer probe, then every
    # kernel would fail to start and each student would be recorded as crashed
    probe = subprocess.run([path, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
                            "--unshare-all", "--die-with-parent", "--new-session", "true"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return None, (f"bubblewrap cannot create namespaces here ({probe.stderr.strip() or probe.returncode}): "
                      "unprivileged user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone, "
                      "or a container's seccomp profile)")
    return path, ""


def kernel_needs() -> list[str]:
    """What the kernel runs, read-only: the interpreter's and the venv's directories and dlgrade's packages."""
    packages = [os.path.realpath(location) for name in KERNEL_PACKAGES
                if (spec := importlib.util.find_spec(name)) is not None
                for location in spec.submodule_search_locations or ()]
    prefixes = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix)} | {sys.prefix}
    return sorted(prefixes) + packages


def kernel_command(bwrap: str, argv: list[str], run_root: str, masks: list[str], max_processes: int,
                   needs: list[str], gpu: bool = False) -> list[str]:
    """`argv` (the kernel's command) wrapped in bubblewrap for the run in `run_root`."""
    command = [bwrap, "--tmpfs", "/tmp"]  # first: what is bound below may lie under /tmp (a checkout, the run)
    for directory in SYSTEM_DIRS:
        if os.path.islink(directory):  # merged /usr: /bin -> usr/bin
            command += ["--symlink", os.readlink(directory), directory]
        elif os.path.isdir(directory):
            command += ["--ro-bind", directory, directory]
    for path in needs:
        command += ["--ro-bind", path, path]
    command += ["--dev", "/dev", "--proc", "/proc"]
    for sub in WRITABLE:
        command += ["--bind", os.path.join(run_root, sub), os.path.join(run_root, sub)]
    command += ["--ro-bind", os.path.join(run_root, "data"), os.path.join(run_root, "data")]
    bound = [*SYSTEM_DIRS, *needs]
    for path in masks:  # those outside what is bound are not there anyway
        if not any(os.path.commonpath([path, root]) == root for root in bound):
            continue
        if os.path.isdir(path):
            command += ["--tmpfs", path, "--remount-ro", path]
        elif os.path.exists(path):
            command += ["--ro-bind", "/dev/null", path]
    if gpu:  # the minimal /dev has no GPU nodes
        for node in sorted(glob.glob("/dev/nvidia*")):
            command += ["--dev-bind", node, node]
    command += ["--remount-ro", "/tmp", "--remount-ro", "/"]  # no unbounded tmpfs to fill (not counted as memory)
    command += ["--unshare-all", "--die-with-parent", "--new-session",
                # ipykernel's parent poller exits when its parent is pid 1, which bwrap's init always is
                "--unsetenv", "JPY_PARENT_PID",
                "--chdir", os.path.join(run_root, "work"), "--",
                sys.executable, "-c", LIMIT_THEN_EXEC, str(max_processes)]
    return command + list(argv)


def description(max_processes: int) -> dict:
    """What the kernel's sandbox achieved (run.sandbox of each result)."""
    return {"mechanism": "bubblewrap",
            "mounts": "bubblewrap: system directories and the interpreter read-only, only the run's own directories "
                      "writable; held-out data, the assignment and grading state absent",
            "network": "network namespace (loopback only)",
            "user": "none: the grader's uid, in its own user and PID namespaces",
            "processes": f"at most {max_processes} in its user namespace"}
