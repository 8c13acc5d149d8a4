"""`make gpu-check` (`python -m grading.gpu_check`): proves a GPU runner end to end, on real notebooks, in one table.

Rows: the GPU preflight (a probe kernel in the real sandbox); the reference calibrated on the GPU; every assignment's
correct example through the whole grading path (sandbox on) on `cuda`; a batch of 4 on local workers pinned to every
visible GPU; project1 at width 1 (a full-size ResNet-18 on CIFAR-10-shaped 3x32x32 input); a hostile notebook
tripping `[limits] gpu_memory_gb`; and fork safety (no zygote that forks per job has the CUDA driver loaded). On a
machine without a GPU the rows that need one print "no GPU: skipped" and the others still run, so it cannot rot.
Exit 1 when any row fails.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

from harness.assets import prepare_assignment
from harness.calibrate import calibrate
from harness.devices import visible_gpus, worker_gpus
from harness.grade import grade_one, grading_parameters
from harness.preflight import kernel_gpu_problem
from harness.spec import ASSIGNMENTS_DIR, load_spec

HEADERS = ["row", "status", "device", "accuracy", "train_time_s", "time_ratio", "gpu_peak_gb", "sandbox", "verdict"]
# each assignment's example that must get full marks (project1 has no single correct answer: its reference config)
EXAMPLES = {"shapes_params": "correct", "lab1_pytorch_intro": "correct", "lab1_transfer": "correct",
            "project1_size_accuracy_time": "resnet18_w025"}
ASSIGNMENTS = tuple(EXAMPLES)
HOG = """import time, torch
blocks = [torch.empty(256 * 1024**2, dtype=torch.uint8, device="cuda") for _ in range(12)]  # 3 GB
torch.cuda.synchronize()
time.sleep(120)"""


@dataclasses.dataclass
class Row:
    name: str
    status: str = ""
    device: str = ""
    accuracy: float | None = None
    train_time_s: float | None = None
    time_ratio: float | None = None
    gpu_peak_gb: float | None = None
    sandbox: str = ""
    verdict: str = "ok"

    def cells(self) -> list:
        return [getattr(self, h.replace("row", "name")) for h in HEADERS]


def result_row(name: str, result: dict, ok: bool) -> Row:
    metrics, run = result["metrics"], result["run"]
    status = f"{result['status']} {result['score']:g}/{result['max_score']:g}"
    if result["error"]:
        status += f" ({result['error']['kind']})"
    failed = [c["id"] for c in result["checks"] if c["points"] < c["max_points"]]
    if failed and not result["error"]:
        status += f" (lost: {', '.join(failed)})"
    sandbox = (run.get("sandbox") or {}).get("user", "?").split(" (")[0]
    device = run.get("device") or ""
    if metrics.get("latency_device"):  # where the forked measuring child ran the model
        device += f", measured on {metrics['latency_device']}"
    return Row(name, status, device, metrics.get("accuracy"), metrics.get("train_time_s"),
               metrics.get("time_ratio"), run.get("gpu_peak_memory_gb"), sandbox, "ok" if ok else "FAIL")


def correct_example(assignment: str, on_gpu: bool = True) -> Row:
    """Graded on the expected device: ok. Its score is shown (a lost check is a finding, not a runner failure)."""
    spec = load_spec(assignment)
    example = EXAMPLES[assignment]
    result = grade_one(spec.submissions_dir / f"{example}.ipynb", spec, submission=example,
                       assets=prepare_assignment(spec)).to_json()
    return result_row(f"{assignment}/{example}", result,
                      result["status"] == "graded" and (result["run"]["device"] != "cpu") == on_gpu)


def calibration(assignment: str) -> Row:
    """One run (gpu-check times, it does not rank); the examples graded next are compared with it."""
    spec = load_spec(assignment)
    entry = calibrate(spec, grading_parameters(spec, {}, False), runs=1)
    return Row(f"calibrate {assignment}", "calibrated", entry["device"], entry["accuracy"], entry["train_time_s"],
               1.0, None, "", "ok" if entry["device"] != "cpu" else "FAIL")


def batch_of_four(gpus: list[str]) -> Row:
    """4 submissions on one worker per visible GPU (local workers pinned as `dlgrade grade` pins them)."""
    from grading.batch import grade_task, local_executor

    spec = load_spec("lab1_pytorch_intro")
    pinned = worker_gpus(None, None, gpus)
    executor = local_executor(pinned)
    notebook = (spec.submissions_dir / "correct.ipynb").read_bytes()
    try:
        assets = prepare_assignment(spec, runs_per_gpu=1)
        futures = [executor.submit(grade_task, notebook, f"student{i}", str(spec.root), spec.hash, None, None, 1,
                                   assets) for i in range(4)]
        results = [f.result()["result"] for f in futures]
    finally:
        executor.shutdown()
    ok = all(r["status"] == "graded" and r["run"]["device"] != "cpu" for r in results)
    row = result_row(f"batch of 4 on GPUs {','.join(gpus)}", results[-1], ok)
    row.status = ", ".join(sorted({f"{r['status']} {r['score']:g}/{r['max_score']:g}" for r in results}))
    row.time_ratio = max(r["metrics"].get("time_ratio") or 0 for r in results)
    return row


def project1_full_width() -> Row:
    spec = load_spec("project1_size_accuracy_time")
    result = grade_one(spec.submissions_dir / "resnet18_w025.ipynb", spec, {"width": 1.0}, submission="width1",
                       assets=prepare_assignment(spec, timed=False)).to_json()  # the reference is width 0.25
    row = result_row("project1 width 1 (ResNet-18, 3x32x32)", result,
                     result["status"] == "graded" and result["run"]["device"] != "cpu")
    row.status += f", {result['metrics']['params']:,} params" if result["metrics"].get("params") else ""
    row.status += f", {result['metrics']['macs']:,} MACs" if result["metrics"].get("macs") else ""
    return row


def gpu_memory_hog(tmp: Path) -> Row:
    """A notebook holding 3 GB on the GPU under a 1 GB limit: crashed / gpu_memory_limit, stopped from outside."""
    root = tmp / "hog"
    shutil.copytree(ASSIGNMENTS_DIR / "shapes_params", root)
    toml = root / "assignment.toml"
    toml.write_text(toml.read_text().replace("[limits]\n", "[limits]\ngpu_memory_gb = 1\n", 1))
    spec = load_spec(root)
    import nbformat

    nb = nbformat.read(root / "submissions" / "correct.ipynb", as_version=4)
    nb.cells.insert(2, nbformat.v4.new_code_cell(HOG))
    hostile = tmp / "hog.ipynb"
    nbformat.write(nb, hostile)
    started = time.monotonic()
    result = grade_one(hostile, spec, submission="gpu_hog", assets=prepare_assignment(spec)).to_json()
    row = result_row("hostile: 3 GB under gpu_memory_gb = 1", result,
                     (result["error"] or {}).get("kind") == "gpu_memory_limit" and time.monotonic() - started < 60)
    return row


def fork_safety() -> Row:
    """tests/test_fork_safety.py: a fake libcuda.so.1 records every cuInit caller; the helper zygotes warm up and
    serve jobs without one (on a GPU machine the rows above prove the rest: their forked measuring children ran on
    cuda, which a zygote that had called cuInit makes impossible)."""
    tests = Path(__file__).resolve().parent.parent / "tests" / "test_fork_safety.py"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
                         capture_output=True, text=True, timeout=600)
    summary = (run.stdout.strip().splitlines() or ["no output"])[-1]
    return Row("fork safety: no zygote calls cuInit (fake driver)", summary.split(" in ")[0],
               verdict="ok" if run.returncode == 0 else "FAIL")


def preflight(gpus: list[str]) -> Row:
    spec = load_spec("shapes_params")
    problems = {gpu: kernel_gpu_problem(spec, gpu) for gpu in gpus}
    failed = "; ".join(f"GPU {g}: {p}" for g, p in problems.items() if p)
    return Row(f"preflight: a sandboxed kernel allocates on GPUs {','.join(gpus)}", failed or "allocated",
               "cuda", verdict="FAIL" if failed else "ok")


def main() -> int:
    gpus = visible_gpus()
    started = time.monotonic()
    rows: list[Row] = []
    gpu_rows = ["preflight", *(f"calibrate {a}" for a in ASSIGNMENTS[1:]), *(f"{a}/{e}" for a, e in EXAMPLES.items()),
                "batch of 4", "project1 width 1", "hostile GPU memory"]
    with tempfile.TemporaryDirectory(prefix="dlgrade-gpu-check-") as tmp:
        if not gpus:
            rows += [Row(name, verdict="no GPU: skipped") for name in gpu_rows]
            rows.append(correct_example("shapes_params", on_gpu=False))  # the CPU path works; starts the zygotes
            rows[-1].name += " on the CPU"
        else:
            steps = [lambda: preflight(gpus), *(lambda a=a: calibration(a) for a in ASSIGNMENTS[1:]),
                     *(lambda a=a: correct_example(a) for a in ASSIGNMENTS),
                     lambda: batch_of_four(gpus), project1_full_width, lambda: gpu_memory_hog(Path(tmp))]
            for name, step in zip(gpu_rows, steps):
                rows.append(_guarded(name, step))
                print(tabulate([rows[-1].cells()], tablefmt="plain"), file=sys.stderr, flush=True)
        rows.append(fork_safety())
    print(tabulate([r.cells() for r in rows], HEADERS, tablefmt="github", floatfmt=".4g", missingval="-"))
    failed = [r for r in rows if r.verdict == "FAIL"]
    print(f"\n{len(rows)} rows, {len(failed)} failed, {len(gpus)} GPU(s) visible"
          f"{' (' + ','.join(gpus) + ')' if gpus else ''}, {time.monotonic() - started:.0f} s")
    return 1 if failed else 0


def _guarded(name: str, step) -> Row:
    """A step that raises is a failed row, not the end of the check."""
    try:
        return step()
    except Exception as exc:  # every failure becomes a row, the next steps still run
        return Row(name, f"{type(exc).__name__}: {str(exc)[:160]}", verdict="FAIL")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
