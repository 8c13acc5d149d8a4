"""What the bubblewrap sandbox costs per run against the root one, measured side by side in one run (as root:
DLGRADE_SANDBOX=bubblewrap makes a root grader use bubblewrap, as an ordinary account would).

One notebook (the parameters cell, `import torch`, a small tensor op) executed by harness.execute in a fresh sandbox,
RUNS times per round after one warm-up run (zygote started, files cached); rounds alternate between the mechanisms,
each in its own process (the mechanism is chosen once per process). The wall time is the whole execute step: the
sandbox set up, the kernel started, the cells run, everything torn down.
Usage: python benchmarks/sandbox_overhead.py [ROUNDS] [RUNS]   (markdown on stdout; committed as sandbox_overhead.md)
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time

CELLS = ["import torch", "x = torch.ones(64, 64) @ torch.ones(64, 64)\nassert float(x[0, 0]) == 64.0"]


def child(runs: int) -> None:
    """In this process: one warm-up, then `runs` timed executions; prints their wall times as JSON."""
    import nbformat

    from harness.execute import Sandbox, execute
    from harness.isolation import mechanism
    from harness.limits import Limits
    from harness.prepare import inject_parameters

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "dlgrade", "display_name": "Python (dlgrade)", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("device = 'cpu'", metadata={"tags": ["parameters"]}),
                *[nbformat.v4.new_code_cell(source) for source in CELLS]]
    nb = inject_parameters(nb, {}, "dlgrade")
    times = []
    for run in range(runs + 1):
        box = Sandbox.create()
        try:
            started = time.monotonic()
            report = execute(nb, box, Limits(threads=1), "dlgrade")
            elapsed = time.monotonic() - started
        finally:
            box.remove()
        assert report.outcome == "completed" and not any(c.error for c in report.cells), report.message
        assert report.sandbox["mechanism"] == mechanism()[0], report.sandbox
        if run:  # the first run starts the zygote
            times.append(elapsed)
    print(json.dumps({"mechanism": mechanism()[0], "times": times}))


def measure(forced: str | None, runs: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "DLGRADE_SANDBOX"}
    if forced:
        env["DLGRADE_SANDBOX"] = forced
    out = subprocess.run([sys.executable, __file__, "--child", str(runs)], env=env, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(rounds: int, runs: int) -> None:
    if os.geteuid() != 0:
        print("sandbox_overhead: needs root (the root mechanism is one side of the comparison): not measured",
              file=sys.stderr)
        return
    walls = {"root": [], "bubblewrap": []}
    for _ in range(rounds):
        for forced in (None, "bubblewrap"):
            measured = measure(forced, runs)
            walls[measured["mechanism"]] += measured["times"]
    root, bwrap = statistics.median(walls["root"]), statistics.median(walls["bubblewrap"])
    print(f"# Sandbox overhead: bubblewrap against root, per run\n\n{platform.node()}: {os.cpu_count()} CPUs, "
          f"Linux {platform.release()}, Python {platform.python_version()}; {rounds} rounds x {runs} runs each, "
          f"alternating.\n")
    print("| mechanism | runs | median wall s | min | max |\n|---|---|---|---|---|")
    for name, times in walls.items():
        print(f"| {name} | {len(times)} | {statistics.median(times):.3f} | {min(times):.3f} | {max(times):.3f} |")
    print(f"\nbubblewrap / root, medians: **{bwrap / root:.3f}** ({bwrap - root:+.3f} s per run)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(int(sys.argv[2]))
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 3, int(sys.argv[2]) if len(sys.argv) > 2 else 4)
