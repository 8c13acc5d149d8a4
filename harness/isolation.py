"""What keeps a student's kernel away from grading state (docs/security.md), set up by the notebook runner in its own
process before it starts the kernel. Each step says what it achieved, or why not ("none: ..."):

- a private mount namespace: held-out data, hidden tests and grading state are hidden (`mask_paths`), and the
  directories the kernel needs (interpreter, venv, this package) are made reachable for an unprivileged user
  without exposing their siblings (`expose_paths`: e.g. a pyenv Python under a 0700 /root);
- a network namespace with only the loopback interface (`isolate_network`), which the kernel's ZMQ sockets use;
- an unprivileged user of its own for the kernel (`KERNEL_UID_BASE` + the grading thread's id), so it cannot write
  grading state, signal or trace the runner, or count against another kernel's process limit;
- resource limits inherited by the kernel (`set_limits`): processes/threads, file size, CPU time, no core dumps.
The mount, network and user steps need root (CAP_SYS_ADMIN, CAP_SETUID). A grader that is not root (or root in a
container that forbids namespaces) puts the kernel in bubblewrap instead (`harness.bubblewrap`); `mechanism()`
chooses, once per process. With neither, the kernel runs as the grader's user with the limits only, and a batch
refuses to grade unless told `--no-sandbox`.
"""
from __future__ import annotations

import ctypes
import fcntl
import functools
import os
import resource
import socket
import struct
import sys
import threading
from pathlib import Path

CLONE_NEWNS, CLONE_NEWNET = 0x00020000, 0x40000000
MS_RDONLY, MS_BIND, MS_REC, MS_PRIVATE, MS_MOVE = 1, 4096, 16384, 1 << 18, 8192
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
KERNEL_UID_BASE = 1_000_000  # the kernel of grading thread T runs as uid = gid = BASE + T's native id (as root)


class IsolationError(OSError):
    """A namespace or mount call failed (errno kept). Internal only, an OSError rather than a DlgradeError: the
    runner catches it and grades without that isolation, recording "none: why" in run.sandbox."""


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _call(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise IsolationError(errno, f"{what}: {os.strerror(errno)}")


def kernel_user() -> int | None:
    """The uid (= gid) for the kernel of this grading thread, or None when the grader is not root."""
    if os.geteuid() != 0 or not sys.platform.startswith("linux"):
        return None
    return KERNEL_UID_BASE + threading.get_native_id()


@functools.lru_cache(maxsize=1)
def mechanism() -> tuple[str, str]:
    """How kernels are isolated on this machine: ("root", "") when the grader is root and may create mount and
    network namespaces (a separate uid for the kernel, which bubblewrap cannot give); else ("bubblewrap", "") when
    bwrap works here; else ("none", why neither). DLGRADE_SANDBOX=bubblewrap skips the root mechanism (tests)."""
    from harness import bubblewrap

    if os.environ.get("DLGRADE_SANDBOX") == "bubblewrap":
        why_not_root = "DLGRADE_SANDBOX=bubblewrap"
    else:
        why_not_root = "the grader is not root" if kernel_user() is None else _namespaces_refused()
    if not why_not_root:
        return "root", ""
    bwrap, why_not_bwrap = bubblewrap.bwrap_path()
    if bwrap:
        return "bubblewrap", ""
    return "none", f"{why_not_root}, and {why_not_bwrap}"


def _namespaces_refused() -> str:
    """Why this root process may not create mount and network namespaces ("" when it may), tried in a child."""
    pid = os.fork()
    if pid == 0:
        try:
            os._exit(0 if private_mounts() is None and not isolate_network().startswith("none") else 1)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return "" if os.waitstatus_to_exitcode(status) == 0 else "namespaces are refused to root here (a container?)"


def private_mounts() -> str | None:
    """Enter a private mount namespace; None on success, else why not."""
    if not sys.platform.startswith("linux"):
        return f"mount namespaces need Linux, not {sys.platform}"
    libc = _libc()
    try:
        _call(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        _call(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
    except IsolationError as exc:
        return exc.strerror
    return None


def mask_paths(paths: list[str]) -> None:
    """Hide files (bind /dev/null over them) and directories (empty read-only tmpfs). Needs private_mounts()."""
    libc = _libc()
    for path in paths:
        target = os.fsencode(path)
        if os.path.isdir(path):
            _call(libc.mount(b"tmpfs", target, b"tmpfs", MS_RDONLY, b"size=4k"), f"hide {path}")
        elif os.path.exists(path):
            _call(libc.mount(b"/dev/null", target, None, MS_BIND, None), f"hide {path}")


def closed_ancestor(path: Path) -> Path | None:
    """The first directory on the way to `path` that other users cannot traverse (no o+x), or None."""
    for directory in [*reversed(path.parents)]:
        if not os.stat(directory).st_mode & 0o001:
            return directory
    return None


def expose_paths(paths: list[str], staging: Path) -> None:
    """Make each path reachable by other users: a closed directory on the way (e.g. /root, 0700) is covered with an
    empty traversable tmpfs into which only the needed entry is moved back. Needs private_mounts(); `staging` is an
    empty root-only directory outside the closed ones."""
    libc = _libc()
    for number, path in enumerate(Path(os.path.realpath(p)) for p in paths):
        while (closed := closed_ancestor(path)) is not None:
            entry = closed / path.relative_to(closed).parts[0]
            held = staging / str(number)
            held.mkdir(mode=0o700, exist_ok=True)
            _call(libc.mount(os.fsencode(entry), os.fsencode(held), None, MS_BIND | MS_REC, None), f"hold {entry}")
            _call(libc.mount(b"tmpfs", os.fsencode(closed), b"tmpfs", 0, b"mode=0755,size=64k"), f"cover {closed}")
            (closed / entry.name).mkdir() if held.is_dir() else (closed / entry.name).touch()
            _call(libc.mount(os.fsencode(held), os.fsencode(entry), None, MS_MOVE, None), f"expose {entry}")


def isolate_network() -> str:
    """A new network namespace in which only loopback is up; returns how, or "none: why"."""
    try:
        _call(_libc().unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            request = struct.pack("16sh22x", b"lo", 0)
            flags = struct.unpack("16sh22x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
            fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | IFF_UP))
    except OSError as exc:
        return f"none: {exc.strerror or exc}"
    return "network namespace (loopback only)"


def set_limits(max_processes: int | None, max_file_bytes: int, cpu_time_s: int) -> None:
    """Resource limits for this process and the kernel it starts. RLIMIT_NPROC counts the processes and threads of
    the kernel's user (root is exempt: it binds only the unprivileged kernel; None: set inside bubblewrap instead).
    No address-space limit: it breaks CUDA initialisation; memory is enforced by the grader on the resident size of
    the whole process tree."""
    if max_processes is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (max_processes, max_processes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_time_s, cpu_time_s + 5))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
