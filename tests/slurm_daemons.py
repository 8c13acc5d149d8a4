"""A real single-node Slurm for tests/test_slurm.py: munged, slurmctld and slurmd of Debian's `slurm-wlm` and
`munge` (.ci/run installs them), configured in a directory of their own (SLURM_CONF), started as root and shut down
after. Jobs run as whoever submits them: the tests submit as the ordinary account (tests/accounts.py).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "scontrol")
MUNGE_SOCKET = Path("/run/munge/munge.socket.2")


def missing_programs() -> list[str]:
    return [name for name in DAEMONS if shutil.which(name) is None and not Path("/usr/sbin", name).exists()]


def slurm_conf(directory: Path) -> str:
    """One node (this machine: its CPUs, 90 % of its memory), one partition; no cgroups (task/none, linuxproc).
    Both daemons are addressed by 127.0.0.1: a CI machine's host name need not resolve (no DNS, not in /etc/hosts),
    and Slurm looks its hosts up by name unless given an address."""
    host = socket.gethostname()
    memory_mb = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.9)
    return "\n".join([
        "ClusterName=dlgrade-test", f"SlurmctldHost={host}(127.0.0.1)", "SlurmUser=root", "AuthType=auth/munge",
        f"StateSaveLocation={directory}/state", f"SlurmdSpoolDir={directory}/spool",
        f"SlurmctldPidFile={directory}/slurmctld.pid", f"SlurmdPidFile={directory}/slurmd.pid",
        f"SlurmctldLogFile={directory}/slurmctld.log", f"SlurmdLogFile={directory}/slurmd.log",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core_Memory", "ReturnToService=2", "MpiDefault=none",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={memory_mb} State=UNKNOWN",
        f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP", ""])


def munged_answers() -> bool:
    """Whether munged answers on its socket (`munge -n` encodes a credential through it)."""
    return subprocess.run(["munge", "-n"], capture_output=True).returncode == 0


def start_munged() -> None:
    """Start munged unless one answers. A socket file alone proves nothing: /run may be on disk and outlive the
    daemon (a machine restored from a snapshot keeps a socket that refuses connections), so munged is started with
    --force, which replaces a stale socket."""
    if munged_answers():
        return
    MUNGE_SOCKET.parent.mkdir(parents=True, exist_ok=True)
    shutil.chown(MUNGE_SOCKET.parent, "munge", "munge")
    subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged", "--force"], check=True)
    deadline = time.monotonic() + 20
    while not munged_answers():
        if time.monotonic() > deadline:
            raise RuntimeError(f"munged started but does not answer on {MUNGE_SOCKET}")
        time.sleep(0.2)


def start(directory: Path) -> dict[str, str]:
    """Start the daemons; returns the environment a Slurm client needs (SLURM_CONF)."""
    for sub in ("state", "spool"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    conf = directory / "slurm.conf"
    conf.write_text(slurm_conf(directory))
    conf.chmod(0o644)
    env = {"SLURM_CONF": str(conf)}
    start_munged()
    for daemon in ("slurmctld", "slurmd"):
        subprocess.run([daemon, "-f", str(conf)], check=True, env={**os.environ, **env})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        sinfo = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, env={**os.environ, **env})
        if sinfo.stdout.strip() == "idle":
            return env
        time.sleep(0.5)
    logs = "".join(f"\n--- {log.name} (last lines):\n" + "\n".join(log.read_text().splitlines()[-15:])
                   for log in sorted(directory.glob("slurm*.log")))
    terminate(directory)  # a failed start leaves no daemon retrying in the background of the tests that follow
    raise RuntimeError(f"the Slurm node did not become idle: sinfo said {sinfo.stdout.strip()!r} "
                       f"{sinfo.stderr.strip()!r}{logs}")


def stop(directory: Path, env: dict[str, str]) -> None:
    """Shut the daemons down (munged keeps running: it is the machine's)."""
    subprocess.run(["scontrol", "shutdown"], env={**os.environ, **env}, capture_output=True)
    for pid_file in ("slurmctld.pid", "slurmd.pid"):
        deadline = time.monotonic() + 20
        while (directory / pid_file).exists() and time.monotonic() < deadline:
            time.sleep(0.2)
    terminate(directory)  # whichever did not shut down


def terminate(directory: Path) -> None:
    """SIGTERM the daemons by their pid files (when `scontrol shutdown` cannot reach them)."""
    for pid_file in ("slurmctld.pid", "slurmd.pid"):
        try:
            os.kill(int((directory / pid_file).read_text()), signal.SIGTERM)
        except (OSError, ValueError):
            pass


def jobs(env: dict[str, str], user: str) -> list[str]:
    """Ids of `user`'s running jobs."""
    out = subprocess.run(["squeue", "-h", "-u", user, "-t", "RUNNING", "-o", "%i"], capture_output=True, text=True,
                         env={**os.environ, **env}, check=True).stdout
    return out.split()
