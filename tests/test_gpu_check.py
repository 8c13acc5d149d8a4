"""`make gpu-check` on a machine without a GPU: its CPU rows run (a real notebook graded on the CPU, the fork-safety
probe of the zygotes it started), every GPU row says "no GPU: skipped", and it exits 0; so it cannot rot unseen."""
from __future__ import annotations

import subprocess
import sys


def test_gpu_check_runs_its_cpu_rows_and_skips_the_gpu_rows_by_name():
    run = subprocess.run([sys.executable, "-m", "grading.gpu_check"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in run.stdout.splitlines() if line.startswith("| ") and not line.startswith("| row ")}
    skipped = [name for name, cells in rows.items() if cells[-1] == "no GPU: skipped"]
    assert skipped == ["preflight", "calibrate lab1_pytorch_intro", "calibrate lab1_transfer",
                       "calibrate project1_size_accuracy_time", "shapes_params/correct", "lab1_pytorch_intro/correct",
                       "lab1_transfer/correct",
                       "project1_size_accuracy_time/resnet18_w025", "batch of 4", "project1 width 1",
                       "hostile GPU memory"]
    graded = rows["shapes_params/correct on the CPU"]
    assert graded[:2] == ["graded 14/14", "cpu"] and graded[-1] == "ok"
    assert rows["fork safety: no zygote calls cuInit (fake driver)"][0] == "4 passed"
    assert run.stdout.rstrip().splitlines()[-1].startswith("13 rows, 0 failed, 0 GPU(s) visible, ")
