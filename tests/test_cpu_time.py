"""CPU time of the kernel's process tree per cell: read by the runner from /proc, so neither the machine's load nor
the kernel changes it, and work moved to threads, child processes or detached orphans is still counted."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.execute import Sandbox, execute
from harness.limits import Limits
from harness.prepare import inject_parameters
from tests.conftest import notebook

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}:\n    pass\n"
TICK = 0.02  # /proc counts CPU in 10 ms ticks, user and system apart: one tick of each


# Measured in a fresh parent process that has no other descendant: the test process's tree also holds what earlier
# tests keep running (in a full run, test_browser's session-wide Chromium: chromedriver, renderers, GPU process), and
# their CPU time inside the window would be counted too. The parent runs the child (argv[1]), prints both readings.
PARENT = """import json, os, subprocess, sys
from harness.processes import tree_cpu_seconds
before = tree_cpu_seconds(os.getpid())
child = subprocess.Popen([sys.executable, '-c', sys.argv[1]], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
assert child.stdout.readline() == b'burnt\\n'
alive = tree_cpu_seconds(os.getpid()) - before  # the child waits for its stdin
child.communicate(b'')
reaped = tree_cpu_seconds(os.getpid()) - before  # now in the parent's children's time
print(json.dumps([alive, reaped]))"""
CHILD_WAITING = BURN.format(s=0.5) + "print('burnt', flush=True)\nimport os, sys; sys.stdin.read(); os._exit(0)\n"


def test_tree_cpu_seconds_counts_live_and_reaped_children():
    out = subprocess.run([sys.executable, "-c", PARENT, CHILD_WAITING], capture_output=True, text=True,
                         check=True).stdout
    alive, reaped = json.loads(out)
    assert 0.5 <= alive < 0.5 + 0.3, (alive, reaped)  # + the interpreter's start-up (0.04 s)
    # once reaped, its time moves to the parent's children's time and is still counted; what it spent between the
    # two readings (reading its stdin, exiting without the interpreter's tear-down) is a few ticks at most
    assert 0 <= reaped - alive < 3 * TICK, (alive, reaped)


def run_cells(cells: list[str]):
    nb = inject_parameters(notebook(cells, submit=None), {}, "dlgrade")
    box = Sandbox.create()
    try:
        report = execute(nb, box, Limits(threads=1), "dlgrade")
    finally:
        box.remove()
    assert report.outcome == "completed", report.message
    assert [c.error for c in report.cells] == [None] * len(report.cells)
    return report.cells[-len(cells):]  # after the parameters cells


THREADS = """import threading, time
def burn():
    t = time.thread_time()
    while time.thread_time() - t < 0.2:
        pass
workers = [threading.Thread(target=burn) for _ in range(2)]
[w.start() for w in workers]
[w.join() for w in workers]"""
CHILD = f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {BURN.format(s=0.3)!r}], check=True)"
ORPHAN = f"""import os, subprocess, sys, time
# the child forks a grandchild in a new session and exits at once: the grandchild is an orphan of the kernel
code = "import os, sys\\nif os.fork(): os._exit(0)\\nos.setsid()\\n" + {BURN.format(s=0.3)!r} + "open('done', 'w')"
subprocess.run([sys.executable, '-c', code], check=True)
while not os.path.exists('done'):
    time.sleep(0.05)"""


@pytest.mark.slow  # a real kernel
def test_each_cell_records_the_cpu_of_the_whole_kernel_tree_not_its_waiting():
    burn, sleep, threads, child, orphan = run_cells([BURN.format(s=0.5), "import time\ntime.sleep(0.5)", THREADS,
                                                     CHILD, ORPHAN])
    assert 0.5 <= burn.cpu_s < 0.5 + 0.1 and burn.duration_s >= 0.5
    assert sleep.cpu_s < 0.05 and sleep.duration_s >= 0.5  # waiting costs wall time, no CPU
    assert 0.4 <= threads.cpu_s < 0.4 + 0.1  # both threads, ended before the cell did
    assert 0.3 <= child.cpu_s < 0.3 + 0.2  # a child process the kernel waited for (+ its interpreter start-up)
    assert 0.3 <= orphan.cpu_s < 0.3 + 0.3  # a detached orphan: the runner is a subreaper, it stays in the tree
