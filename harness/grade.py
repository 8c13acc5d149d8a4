"""grade_one: one submission through prepare → execute → collect → measure → check → record.

Every command (`dlgrade check`, `grade`, `demo`) grades through this one function. Bad input never raises: it becomes
a SubmissionResult with a status and an error a student can act on.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import nbformat

from harness import measuring_process
from harness.cell_messages import cell_error_notes, cell_text, error_text, student_cell
from harness.checks import Evidence, TestCellOutcome, not_graded, run_check
from harness.data import source_paths, write_notebook_data
from harness.devices import gpu_info, gpu_sharing, pick_device
from harness.errors import BadInput, MeasureError
from harness.execute import ExecutionReport, Sandbox, cpu_threads, execute
from harness.model_audit import model_warnings
from harness.preflight import fallback_note
from harness.prepare import InvalidNotebook, inject_parameters, read_notebook, restore_locked_cells
from harness.result import SubmissionResult, empty_metrics
from harness.schema import HARNESS_PARAMETERS
from harness.spec import AssignmentSpec, is_test_cell

MAX_ANSWERS_BYTES = 1024**2


@dataclasses.dataclass(frozen=True)
class Assets:
    """What grading needs besides the notebook, resolved once per command *above* this pipeline
    (`harness.assets.prepare_assignment`): the reference solution's times on this runner for the grading parameters
    (None: not timed, e.g. while calibrating the reference itself) and the pretrained backbone file ([backbone])."""

    reference_times: dict | None = None  # a calibration entry (harness/calibrate.py)
    timing_problem: str | None = None  # why there are no reference times although the assignment is timed
    backbone: Path | None = None


class NotGraded(BadInput):
    """The run cannot be graded: carries the result status and the error for the student."""

    def __init__(self, status: str, kind: str, message: str, cell: int | None = None):
        super().__init__(message)
        self.status, self.kind, self.message, self.cell = status, kind, message, cell


def grade_one(notebook: Path, spec: AssignmentSpec, overrides: dict | None = None, selfcheck: bool = False,
              submission: str | None = None, threads: int | None = None, data_source: str | None = None,
              runs_per_gpu: int | None = None, assets: Assets = Assets()) -> SubmissionResult:
    """Grade one notebook. `threads`: CPU threads of the measuring process (default: every core this process may
    use; a batch with N workers gives each 1/N); the kernel always runs with `[limits] threads`, so that seeded
    training, and so every verdict, is the same on every runner. `data_source`: directory of a dataset that is not
    bundled (cifar10); `assets`: the reference times and backbone prepared for this assignment (default: none, so
    no time ratio; an assignment with a [backbone] needs it); `runs_per_gpu`: how many runs share this run's GPU
    (a batch's --runs-per-gpu), recorded and matched by the
    reference's calibration."""
    notebook = Path(notebook)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.monotonic()
    checks = spec.visible_checks(selfcheck)
    result = SubmissionResult(spec.id, submission or notebook.stem, "graded", None, [], empty_metrics(),
                              {"wall_s": None, "device": None, "torch": None, "started": started,
                               "assignment_hash": spec.hash})
    if os.environ.get("SLURM_JOB_ID"):  # a worker started by `dlgrade grade --slurm`: which job graded it
        result.run["slurm_job_id"] = os.environ["SLURM_JOB_ID"]
    threads = threads or cpu_threads()
    box = Sandbox.create()
    report = None
    try:
        device = pick_device()
        result.run.update(device=device_name(device), torch=torch_version(), threads=spec.limits.threads,
                          measure_threads=threads)
        if device == "cuda":
            result.run["runs_per_gpu"] = gpu_sharing(device, runs_per_gpu)
            info = gpu_info()  # NVML: name, uuid, memory, driver, CUDA driver version
            result.run["gpu"] = dataclasses.asdict(info) if info else None
        if fallback_note():
            result.notes.append(fallback_note())
        parameters = grading_parameters(spec, overrides or {}, selfcheck)
        dataset = parameters.get("dataset")
        nb, notes = prepare(notebook, spec, parameters, box, device, hidden_tests=not selfcheck)
        result.notes += notes
        mask = [spec.root]  # solutions, hidden tests and the reference solution live there
        if dataset:
            write_notebook_data(dataset, box.data_dir, data_source)  # train + val only
            mask += source_paths(dataset, data_source)
        backbone = provide_backbone(spec, assets, box)
        if backbone:
            mask.append(backbone.parent)  # the kernel works on its copy; the measuring process compares
        measuring_process.start()  # the first time, its imports and warm-up overlap the run
        report = execute(nb, box, spec.limits, spec.kernel, mask, device)
        if report.peak_gpu_gb is not None:
            result.run["gpu_peak_memory_gb"] = report.peak_gpu_gb
        result.executed = report.notebook
        result.run["sandbox"] = report.sandbox
        if report.sandbox.get("mechanism") == "none":
            result.notes.append(f"graded without a sandbox: held-out data, assignment files and grading state were "
                                f"not hidden from the notebook ({report.sandbox['mounts']}); see docs/security.md")
        if report.output_truncated_cell is not None:
            result.notes.append(f"{cell_text(report, report.output_truncated_cell)} printed more than the "
                                f"{spec.limits.max_output_mb:g} MB of output the grader keeps: later outputs were "
                                "dropped (print less, e.g. once per epoch)")
        result.notes += cell_error_notes(report)
        result.metrics.update(cell_times(report), time_basis=time_basis(result.run["device"]))
        require_complete_run(report)
        answers = collect(box, report)
        profile = measure_model(box, spec, dataset, data_source, device, threads, backbone)
        result.metrics.update({key: profile.get(key) for key in MEASURED_METRICS})
        result.notes += profile.get("notes", [])  # e.g. measured on the CPU because the model failed on the GPU
        result.notes += model_warnings(profile)  # layers in a plain list: not parameters, left in training mode
        extras = measure_extra_models(box, spec, dataset, data_source, device, threads, backbone)
        result.notes += [f"extra model '{name}': {note}" for name, p in extras.items() for note in p.get("notes", [])]
        if extras:
            result.metrics["models"] = {name: {key: p.get(key) for key in EXTRA_MODEL_METRICS}
                                        for name, p in extras.items()}
        if not profile["flops_check_ok"]:
            result.notes.append(f"cross-check mismatch: FlopCounterMode {profile['flops_check']:,} != 2 x fvcore "
                                f"conv+linear {profile['macs_conv_linear']:,}")
        if assets.reference_times is not None:
            result.metrics.update(time_ratios(result.metrics, assets.reference_times))
        elif assets.timing_problem:
            result.notes.append(f"no reference timing: {assets.timing_problem}")
        evidence = Evidence(profile, answers, reference_profile, spec.reference, result.metrics,
                            test_cell_outcomes(report), extras)
        result.checks = [run_check(check, evidence) for check in checks]
    except NotGraded as exc:
        result.status = exc.status
        result.error = {"kind": exc.kind, "message": exc.message, "cell": exc.cell}
        # the test cells that ran keep their points, as in nbgrader; the harness checks need a submitted model
        evidence = Evidence({}, {}, reference_profile, spec.reference, result.metrics,
                            test_cell_outcomes(report) if report else {})
        result.checks = [run_check(c, evidence) if c.kind == "notebook_test" and report
                         else not_graded(c, exc.message) for c in checks]
    finally:
        box.remove()
        result.run["wall_s"] = round(time.monotonic() - t0, 3)
    return result


MEASURED_METRICS = ("params", "trainable_params", "macs", "accuracy", "latency_ms", "activation_shapes", "architecture",
                    "weights", "weight_bits", "activation_bits", "structured_sparsity", "unstructured_sparsity",
                    "latency_device", "throughput_per_s", "throughput_batch")
EXTRA_MODEL_METRICS = ("params", "trainable_params", "macs", "accuracy", "weights", "weight_bits", "activation_bits",
                       "structured_sparsity", "unstructured_sparsity")  # metrics.models[name] for extra models


def grading_parameters(spec: AssignmentSpec, overrides: dict, selfcheck: bool) -> dict:
    """[parameters], then [selfcheck] in student mode, then -p overrides. The harness adds its own at prepare."""
    for name in overrides:
        if name in HARNESS_PARAMETERS:
            raise NotGraded("invalid", "bad_parameter", f"parameter '{name}' is set by the harness and cannot be set")
    return {**spec.parameters, **(spec.selfcheck if selfcheck else {}), **overrides}


def time_ratios(metrics: dict, reference: dict) -> dict:
    """time_ratio and exec_ratio of a run's `metrics` against the reference's times (a calibration entry, or the
    metrics of a reference run), on the run's `time_basis`.

    The training time charged (`charged_train_s`, which `time_ratio` compares and the leaderboard ranks) is the
    time of the cells tagged `train`, or, when larger, the whole notebook's time less what the reference spent
    outside its `train` cells: any cell may train (an untagged one, a function a test cell calls), and the cells
    every notebook shares cost the same in each, so training moved out of the `train` cells is still charged."""

    def ratio(mine, theirs):
        return round(mine / theirs, 4) if mine is not None and theirs else None

    cpu = metrics["time_basis"] == "cpu"
    train, whole = ("train_cpu_s", "exec_cpu_s") if cpu else ("train_time_s", "exec_time_s")
    charged = None
    if metrics[train] is not None and None not in (metrics[whole], reference[whole], reference[train]):
        charged = round(max(metrics[train], metrics[whole] - (reference[whole] - reference[train])), 3)
    return {"charged_train_s": charged,
            "time_ratio": ratio(charged, reference[train]),
            "exec_ratio": ratio(metrics[whole], reference[whole]),
            "reference_train_time_s": reference["train_time_s"],
            "reference_train_cpu_s": reference["train_cpu_s"]}


def time_basis(device: str) -> str:
    """Which time ranks and is compared with the reference. On a CPU runner, the CPU time of the kernel's process
    tree: other processes on the machine stretch wall time, not the CPU time the training needs (with the kernel's
    threads fixed). On a GPU, wall time: CPU time does not see the GPU's work (train cells end with a device
    synchronize)."""
    return "cpu" if device == "cpu" else "wall"


# 1 prepare ------------------------------------------------------------------------------------------------------

def prepare(notebook: Path, spec: AssignmentSpec, parameters: dict, box: Sandbox, device: str,
            hidden_tests: bool = True) -> tuple[nbformat.NotebookNode, list[str]]:
    try:
        nb = read_notebook(notebook)
    except InvalidNotebook as exc:
        raise NotGraded("invalid", "invalid_notebook", str(exc)) from None
    missing = restore_locked_cells(nb, nbformat.read(spec.notebook, as_version=4), hidden_tests)
    notes = [f"locked cell '{cell_id}' of the assignment is missing from this notebook" for cell_id in missing]
    parameters = {**parameters, "output_dir": str(box.output_dir), "data_dir": str(box.data_dir), "device": device}
    return inject_parameters(nb, parameters, spec.kernel), notes


# 2 execute: harness.execute --------------------------------------------------------------------------------------

def require_complete_run(report: ExecutionReport) -> None:
    """Every code cell must have executed; the run must not have asked to stop."""
    # exit() makes ipykernel shut down after the cell: the exit, not the dead kernel, is the cause
    stopped = next((c for c in report.cells if c.exit_requested), None)
    if stopped is not None:
        raise NotGraded("failed", "stopped_early",
                        f"{cell_text(report, stopped.index)} calls sys.exit()/exit(): the notebook stopped early. "
                        "Remove it: the grader runs every cell and grades the whole notebook.",
                        student_cell(report, stopped.index))
    running = next((c.index for c in report.cells if c.state == "interrupted"), None)
    where = f" (while running {cell_text(report, running)})" if running is not None else ""
    cell = student_cell(report, running) if running is not None else None
    if report.outcome in ("timeout", "cell_timeout"):
        raise NotGraded("timeout", report.outcome, report.message + where + ": make it faster or train less "
                        "with the grading parameters", cell)
    if report.outcome == "memory_limit":
        raise NotGraded("crashed", "memory_limit", report.message + where + ": use smaller batches or models", cell)
    if report.outcome == "gpu_memory_limit":
        raise NotGraded("crashed", "gpu_memory_limit", report.message + where + ": use smaller batches or a smaller "
                        "model, and keep no tensors you no longer need (e.g. keep loss.item(), not loss)", cell)
    if report.outcome == "kernel_died":
        raise NotGraded("crashed", "kernel_died", f"the Python kernel died{where}: the process exited "
                        "(os._exit, a crash in native code, or the system ran out of memory)", cell)
    if report.outcome != "completed":
        raise NotGraded("crashed", report.outcome, report.message)
    not_run = [c for c in report.cells if c.state != "executed"]
    if not_run:
        raise NotGraded("failed", "stopped_early", f"{cell_text(report, not_run[0].index)} did not run",
                        student_cell(report, not_run[0].index))


def test_cell_outcomes(report: ExecutionReport) -> dict[str, TestCellOutcome]:
    """grade_id -> how each nbgrader test cell ran. Errors come from the kernel's execute replies as recorded by
    the runner; stderr output is ignored (a torch warning is not a failed test)."""
    outcomes = {}
    for run in report.cells if report.notebook else []:
        cell = report.notebook.cells[run.index]
        meta = cell.metadata.get("nbgrader", {})
        if is_test_cell(cell.cell_type, meta):
            outcomes[meta["grade_id"]] = TestCellOutcome(run.state == "executed", run.error)
    return outcomes


def cell_times(report: ExecutionReport) -> dict:
    """Wall time (papermill's durations) and CPU time (the kernel's process tree) of the cells tagged `train`
    (None when there are none) and of all cells, where training hidden in untagged cells shows up; both measured
    by the runner, not the kernel."""
    train = [c for c in report.cells if "train" in c.tags]

    def total(cells, field):
        return round(sum(getattr(c, field) or 0.0 for c in cells), 3)

    return {"train_time_s": total(train, "duration_s") if train else None,
            "exec_time_s": total(report.cells, "duration_s"),
            "train_cpu_s": total(train, "cpu_s") if train else None,
            "exec_cpu_s": total(report.cells, "cpu_s")}


# 3 collect -------------------------------------------------------------------------------------------------------

def submitted(box: Sandbox, name: str) -> Path | None:
    """`name` in the run's output directory if the kernel wrote it as a regular file; a link (to another student's
    model, or to a grader file the measuring process could read) is refused, not followed."""
    path = box.output_dir / name
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise NotGraded("failed", "not_a_file", f"{name} in the output directory is not a regular file written by "
                        "harness.submit (a link or a directory): keep the assignment's submit cell as it is")
    return path if path.exists() else None


def collect(box: Sandbox, report: ExecutionReport) -> dict:
    """model.pt2 must exist; answers.json is the student's claims, read as bounded JSON."""
    if submitted(box, "model.pt2") is None:
        raise _no_submission(report)
    path = submitted(box, "answers.json")
    if path is None or path.stat().st_size > MAX_ANSWERS_BYTES:
        return {}
    try:
        answers = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return answers if isinstance(answers, dict) else {}


def _no_submission(report: ExecutionReport) -> NotGraded:
    submit_cell = next((c for c in reversed(report.cells) if c.error and "harness.submit" in _source(report, c)),
                       None)
    if submit_cell is not None and submit_cell.error["ename"] in ("ExportError", "SubmissionError"):
        return NotGraded("failed", "export_failed", submit_cell.error["evalue"],
                         student_cell(report, submit_cell.index))
    first_error = next((c for c in report.cells if c.error), None)
    if first_error is not None:
        return NotGraded("failed", "cell_error",
                         f"{cell_text(report, first_error.index)} raised {error_text(first_error.error).rstrip('.')}"
                         ". So no model was submitted: fix that cell, restart the kernel and run all cells.",
                         student_cell(report, first_error.index))
    return NotGraded("failed", "no_submission",
                     "the notebook never called harness.submit(model, example_input): keep the assignment's last "
                     "(locked) cell, which submits your model.")


def _source(report: ExecutionReport, cell) -> str:
    return report.notebook.cells[cell.index].source if report.notebook else ""


# 4 measure -------------------------------------------------------------------------------------------------------

def provide_backbone(spec: AssignmentSpec, assets: Assets, box: Sandbox) -> Path | None:
    """[backbone]: the prepared backbone file copied to the notebook's data_dir (the original stays masked)."""
    if not spec.backbone:
        return None
    if assets.backbone is None:
        raise ValueError(f"grade_one: assignment '{spec.id}' has a [backbone] but no prepared assets.backbone "
                         "(prepare the assignment first: harness.assets.prepare_assignment)")
    shutil.copyfile(assets.backbone, box.data_dir / "backbone.pt")
    return assets.backbone


def measure_model(box: Sandbox, spec: AssignmentSpec, dataset: str | None, data_source: str | None, device: str,
                  threads: int, backbone: Path | None, name: str = "model") -> dict:
    try:
        return measuring_process.measure(
            box.output_dir / f"{name}.pt2", spec.input_shape, spec.limits.measure_timeout_s, threads=threads,
            workdir=box.root / "tmp", dataset=dataset, data_source=data_source, device=device, backbone=backbone)
    except MeasureError as exc:
        which = "" if name == "model" else f"extra model '{name}': "
        raise NotGraded("failed", "measure_failed", which + str(exc)) from None


def measure_extra_models(box: Sandbox, spec: AssignmentSpec, dataset: str | None, data_source: str | None,
                         device: str, threads: int, backbone: Path | None) -> dict[str, dict]:
    """name -> profile of each extra model the assignment declares and the notebook submitted (`<name>.pt2`);
    files of other names are never read. A missing one fails only the checks that need it."""
    return {name: measure_model(box, spec, dataset, data_source, device, threads, backbone, name)
            for name in spec.extra_models if submitted(box, f"{name}.pt2") is not None}


@functools.lru_cache(maxsize=None)
def reference_profile(name: str) -> dict:
    """Profile of a reference model, measured in this (trusted) process and cached for the batch."""
    from harness.measure import profile_module
    from reference.models import REGISTRY, build

    if name not in REGISTRY:
        raise KeyError(f"unknown reference model '{name}'")
    return profile_module(build(name), REGISTRY[name].input_shape)


# devices ---------------------------------------------------------------------------------------------------------

def device_name(device: str) -> str:
    """The GPU's name (NVML's, as torch.cuda.get_device_name gives it, without initialising CUDA) or "cpu"."""
    info = gpu_info() if device == "cuda" else None
    return info.name if info else "cpu"


def torch_version() -> str:
    import torch

    return torch.__version__

