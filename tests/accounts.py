"""An ordinary (unprivileged) account for the tests that grade the way most courses do: not as root (issue 17).

CI runs as root; these helpers create the account when missing and make this checkout's interpreter reachable to
it (a pyenv Python under a 0700 /root: the closed directories on the way get o+x, traverse only, and get their mode
back when the session ends). Needs root: the callers skip, saying so, when the suite runs as an ordinary user
already (then every test grades as one).
"""
from __future__ import annotations

import os
import pwd
import subprocess
import sys
import tempfile
from pathlib import Path

from harness.isolation import closed_ancestor

ACCOUNT = "dlgrade-ci"
CHECKOUT = Path(__file__).resolve().parent.parent


def ensure_account() -> pwd.struct_passwd:
    """The account (created, with a home directory, when missing)."""
    try:
        return pwd.getpwnam(ACCOUNT)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", ACCOUNT], check=True)
        return pwd.getpwnam(ACCOUNT)


def open_the_way() -> dict[Path, int]:
    """o+x on each closed directory on the way to the interpreter, the venv and this checkout; returns the modes to
    restore (restore_modes)."""
    changed = {}
    for path in (Path(os.path.realpath(p)) for p in (sys.base_prefix, sys.prefix, CHECKOUT)):
        while (closed := closed_ancestor(path)) is not None:
            changed.setdefault(closed, closed.stat().st_mode & 0o7777)
            closed.chmod(closed.stat().st_mode | 0o001)
    return changed


def restore_modes(changed: dict[Path, int]) -> None:
    for directory, mode in changed.items():
        directory.chmod(mode)


def account_directory(account: pwd.struct_passwd) -> Path:
    """A fresh directory the account owns, outside root's 0700 pytest directories."""
    directory = Path(tempfile.mkdtemp(prefix=f"{ACCOUNT}-"))
    os.chown(directory, account.pw_uid, account.pw_gid)
    return directory


def run_as(account: pwd.struct_passwd, argv: list[str], env: dict[str, str] | None = None,
           timeout: float = 1800) -> subprocess.CompletedProcess:
    """`argv` as the account, in this checkout, with a clean environment of its own (its home, this venv on PATH)."""
    base = {"HOME": account.pw_dir, "USER": account.pw_name, "LOGNAME": account.pw_name, "LANG": "C.UTF-8",
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    return subprocess.run(argv, cwd=CHECKOUT, env={**base, **(env or {})}, user=account.pw_uid,
                          group=account.pw_gid, extra_groups=[], capture_output=True, text=True, timeout=timeout)
