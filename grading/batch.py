"""`dlgrade grade`: a batch of submissions through grade_one on local worker processes or a Dask cluster.

Workers only compute (grade_one: sandboxed run + measurements) and send back the result and the executed notebook.
The coordinator (this process) alone writes: per submission, the gradebook and autograded notebook, the feedback page,
then the result JSON last, atomically. The result file is the commit mark: a re-run skips submissions whose result
exists for the same file (sha256), so a batch killed at any point resumes without losing or duplicating anything.
A result records the assignment that graded it (`run.assignment_hash`): a re-run after the assignment changed refuses
to mix old and new rules unless told which to regrade. An exception in dlgrade's own code stops the batch (exit 3)
and records nothing for that submission: the grader's failure is never written down as the student's.
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import multiprocessing
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from harness import isolation
from harness.assets import prepare_assignment
from harness.devices import visible_gpus, worker_gpus
from harness.errors import BadInput, DlgradeError, InternalError
from harness.grade import Assets
from harness.preflight import prepare_device
from harness.result import write_json_atomic
from harness.spec import AssignmentSpec, load_spec


@dataclass(frozen=True)
class Submission:
    student: str
    path: Path
    sha256: str
    timestamp: datetime | None = None  # nbgrader's submitted/<student>/<id>/timestamp.txt; None: no time known
    timestamp_problem: str | None = None  # what is wrong with that timestamp.txt (an nbgrader tree's submission only)

    def timestamp_warning(self, results_dir: Path) -> str | None:
        """The instructor's warning about this submission's timestamp.txt, or None."""
        if self.timestamp_problem is None:
            return None
        return (f"{self.path.parent / 'timestamp.txt'} {self.timestamp_problem}: {self.student}'s submission is graded "
                "and recorded without a submission time (nbgrader never counts it late). Fix the file, delete "
                f"{results_dir / self.student}.json and run the same command again to record its time.")


SLURM_START_S = 1800  # how long the first Slurm worker job may wait in the queue


class BatchError(BadInput):
    """The batch cannot start (no submissions, bad course directory) or cannot go on (the disk is full); the message
    says what to do."""


def find_submissions(spec: AssignmentSpec, directory: Path) -> list[Submission]:
    """A directory of notebooks (<student>.ipynb) or an nbgrader submitted/ tree (<student>/<id>/<notebook>.ipynb)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BatchError(f"{directory} is not a directory of submissions")
    found = []
    for path in sorted(directory.glob("*.ipynb")):
        found.append(Submission(path.stem, path, _sha256(path)))
    for path in sorted(directory.glob(f"*/{spec.id}/*.ipynb")):
        student_dir = path.parent.parent
        if path.name != spec.notebook.name and len(list(path.parent.glob("*.ipynb"))) > 1:
            continue  # extra notebooks beside the assignment's
        found.append(Submission(student_dir.name, path, _sha256(path), *read_timestamp(path.parent)))
    if not found:
        raise BatchError(f"no submissions in {directory}: expected <student>.ipynb files or an nbgrader submitted/ "
                         f"tree (<student>/{spec.id}/{spec.notebook.name})")
    students = [s.student for s in found]
    duplicated = sorted({s for s in students if students.count(s) > 1})
    if duplicated:
        raise BatchError(f"more than one submission for {', '.join(duplicated)} in {directory}")
    return found


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_timestamp(folder: Path) -> tuple[datetime | None, str | None]:
    """The submission time in nbgrader's timestamp.txt (`nbgrader collect` writes it; nbgrader's late penalties
    compare it with the due date), as nbgrader reads it (UTC), and None; or None and what is wrong with the file
    (missing, empty, unreadable, not a time). Never the time of grading: a submission without a readable time is
    recorded without one, as nbgrader records a submission without timestamp.txt."""
    from nbgrader.utils import parse_utc

    try:
        text = (folder / "timestamp.txt").read_text().strip()
    except FileNotFoundError:
        return None, "is missing"
    except (OSError, ValueError) as exc:  # ValueError: UnicodeDecodeError
        return None, f"cannot be read ({getattr(exc, 'strerror', None) or exc})"
    if not text:
        return None, "is empty"
    try:
        return parse_utc(text), None
    except (ValueError, OverflowError):
        shown = text if len(text) <= 80 else text[:80] + "..."
        return None, (f"holds {shown!r}, which is not a time (nbgrader's format: "
                      "'2026-11-20 23:59:00.000000 UTC')")


# workers ---------------------------------------------------------------------------------------------------------

def grade_task(notebook: bytes, name: str, assignment_root: str, assignment_hash: str, threads: int | None,
               data_source: str | None, runs_per_gpu: int | None = None, assets: Assets | None = None,
               no_sandbox: bool = False) -> dict:
    """Runs on a worker: grade one submission (its bytes: no shared filesystem needed for submissions). Raises
    DlgradeError only: bad input found here (the assignment differs from the coordinator's, a dataset is missing)
    as it is, any other exception as InternalError with its traceback: both stop the batch."""
    import traceback

    from harness.grade import grade_one

    try:
        spec = load_spec(assignment_root)
        if spec.hash != assignment_hash:
            raise BatchError(f"the assignment at {assignment_root} on this worker differs from the coordinator's "
                             "(edited during the batch, or another copy): grade again once every copy is the same")
        with tempfile.TemporaryDirectory(prefix="dlgrade-submission-") as tmp:
            path = Path(tmp) / f"{name}.ipynb"
            path.write_bytes(notebook)
            if assets is None:  # a Dask worker, maybe one that joined after prepare_worker ran: checked here too
                assets = prepare_worker(assignment_root, data_source, runs_per_gpu, no_sandbox)
            result = grade_one(path, spec, submission=name, threads=threads or _dask_threads(),
                               data_source=data_source, runs_per_gpu=runs_per_gpu, assets=assets)
        return {"result": result.to_json(), "executed": result.executed}
    except DlgradeError:
        raise
    except Exception as exc:
        raise InternalError(f"grading {name} failed in dlgrade's own code ({type(exc).__name__}: {exc}); nothing "
                            "was recorded for it. Once fixed, run the same command again: it resumes.",
                            traceback.format_exc()) from None


def _dask_threads() -> int | None:
    """On a Dask worker: the cores of this machine shared among the worker's task threads."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    from harness.execute import cpu_threads

    return cpu_threads(worker.state.nthreads)


def slot_environment(gpu: str | None) -> dict[str, str]:
    """Environment of a local worker pinned to `gpu` (a `CUDA_VISIBLE_DEVICES` entry as the scheduler gave it)."""
    return {"CUDA_VISIBLE_DEVICES": gpu} if gpu is not None else {}


def _init_worker(slots) -> None:
    """Local worker start: die with the fork server (which dies with the coordinator), take a slot, pin its GPU."""
    from harness.processes import die_with_parent

    die_with_parent()
    os.environ.update(slots.get())


def local_executor(gpus: list[str | None]) -> concurrent.futures.Executor:
    """One worker process per entry of `gpus` (harness.devices.worker_gpus), each pinned to its GPU.
    Workers fork from a fork server that has imported the grading path once (torch included, CUDA never
    initialised: harness/devices.py) and nothing else: never a fork of this coordinator, no import cost per worker."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["grading.worker_preload"])
    slots = context.Queue()
    for gpu in gpus:
        slots.put(slot_environment(gpu))
    return concurrent.futures.ProcessPoolExecutor(len(gpus), mp_context=context, initializer=_init_worker,
                                                  initargs=(slots,))


def dask_executor(address: str, runs_per_gpu: int | None, wait_s: float = 60):
    """An executor on a Dask cluster whose GPU workers are pinned: each sees exactly one GPU and says so with a
    `GPU` resource (`dask worker --resources GPU=1`, CUDA_VISIBLE_DEVICES set per worker: docs/instructor.md); each
    task then takes 1/runs_per_gpu of it. Workers without GPUs take tasks as before (one per worker thread)."""
    from distributed import Client

    client = Client(address, set_as_default=False)
    try:
        try:
            client.wait_for_workers(1, timeout=wait_s)
        except TimeoutError:
            raise BatchError(f"no Dask worker joined {address} within {wait_s:g} s (Slurm jobs: see `squeue --me` "
                             "and their logs); nothing was graded") from None
        workers = client.scheduler_info()["workers"]
        gpus = client.run(visible_gpus)
        check_dask_workers({a: (gpus.get(a, []), w.get("resources", {})) for a, w in workers.items()})
    except BaseException:
        client.close()
        raise
    on_gpus = any(gpus.values())
    return client, client.get_executor(pure=False, resources={"GPU": 1 / (runs_per_gpu or 1)} if on_gpus else None)


def check_dask_workers(workers: dict[str, tuple[list[str], dict]]) -> None:
    """Refuse a cluster whose GPU workers are not pinned: address -> (its visible GPUs, its resources).
    A worker seeing several GPUs would run every task on its first; one without a GPU resource would run one task per
    thread side by side on its GPU unasked (with it, each task takes 1/runs_per_gpu of the GPU, whatever the
    threads)."""
    problems = []
    for address, (gpus, resources) in sorted(workers.items()):
        if len(gpus) > 1:
            problems.append(f"{address} sees {len(gpus)} GPUs ({','.join(gpus)}): start one worker per GPU with "
                            "CUDA_VISIBLE_DEVICES=<that GPU>")
        elif gpus and resources.get("GPU") != 1:
            problems.append(f"{address} has a GPU but no GPU=1 resource: start it with --resources GPU=1")
    if problems:
        raise BatchError("the Dask workers are not pinned one run per GPU:\n  " + "\n  ".join(problems))


# coordinator -----------------------------------------------------------------------------------------------------

@dataclass
class BatchReport:
    graded: list[dict]  # result JSON of the submissions graded in this run
    skipped: int  # already recorded for the same file
    regraded_changed: int  # of `graded`: recorded before under an older version of the assignment
    results_dir: Path
    grades_csv: Path
    feedback_dir: Path
    course: Path
    wall_s: float
    warnings: list[str] = field(default_factory=list)  # e.g. a timestamp.txt that gives no submission time


def grade_batch(spec: AssignmentSpec, submissions_dir: Path, out: Path, workers: int | None = None,
                scheduler: str | None = None, force: bool = False, threads: int | None = None,
                course: Path | None = None, data_source: str | None = None, progress: bool = True,
                regrade_changed: bool = False, runs_per_gpu: int | None = None,
                no_sandbox: bool = False, slurm_jobs: int | None = None) -> BatchReport:
    """`force`: grade every submission again; `regrade_changed`: those recorded under an older version of the
    assignment (without either, such results stop the batch before it starts: never two rule sets in one run).
    `workers`: local worker processes, by default one per visible GPU (times `runs_per_gpu`), else 1.
    `no_sandbox`: grade even where kernels cannot be sandboxed (refused otherwise, on every worker's machine).
    `slurm_jobs`: workers started as that many Slurm jobs (grading/slurm.py) instead of local ones."""
    from grading import course as nbcourse
    from grading.grades_csv import write_grades_csv

    started = time.monotonic()
    out = Path(out).resolve()
    remote = bool(scheduler or slurm_jobs)
    if not remote:  # Dask workers run elsewhere: dask_executor checks their GPUs, prepare_worker their sandbox
        require_sandbox(no_sandbox)
        worker_gpus(workers, runs_per_gpu, visible_gpus())  # refuses too many workers before anything runs
        prepare_device(spec)  # a kernel in the sandbox can use the GPUs, else the CPU loudly, or refuse
    gpus = [] if remote else worker_gpus(workers, runs_per_gpu, visible_gpus())
    submissions = find_submissions(spec, submissions_dir)
    results_dir, feedback_dir = out / "results", out / "feedback"
    recorded = {s.student: recorded_result(results_dir, s) for s in submissions}
    changed = {name for name, r in recorded.items() if r and r["run"].get("assignment_hash") != spec.hash}
    if changed and not (force or regrade_changed):
        were = "results were" if len(changed) != 1 else "result was"
        raise BatchError(f"{len(changed)} {were} graded with an older version of the assignment: re-run with "
                         "--regrade-changed to regrade them, or --force to regrade all")
    course = Path(course).resolve() if course else course_for(Path(submissions_dir).resolve(), out)
    if not nbcourse.is_released(spec, course):
        nbcourse.release(spec, course)
    results_dir.mkdir(parents=True, exist_ok=True)
    remove_partial_writes(results_dir, feedback_dir)
    todo = [s for s in submissions if force or recorded[s.student] is None or s.student in changed]
    warnings = [w for s in submissions if (w := s.timestamp_warning(results_dir))]
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    if threads is None and not remote:
        from harness.execute import cpu_threads

        threads = cpu_threads(len(gpus))
    # the assets step, before any student runs: here for local workers, on every Dask worker's machine for a cluster
    assets = prepare_assignment(spec, data_source=data_source, runs_per_gpu=runs_per_gpu) if todo and not remote \
        else None
    graded = []
    cluster = None
    if slurm_jobs and todo:
        from grading.slurm import start_cluster

        cluster = start_cluster(spec, slurm_jobs, out)
        scheduler = cluster.scheduler_address
        print(f"submitted {slurm_jobs} Slurm worker job{'s' if slurm_jobs != 1 else ''} (logs in {out}/slurm-logs); "
              "grading starts when the first one runs", file=sys.stderr, flush=True)
    try:
        client, executor = dask_executor(scheduler, runs_per_gpu, SLURM_START_S if cluster else 60) \
            if scheduler else (None, local_executor(gpus))
    except BaseException:
        if cluster is not None:
            cluster.close()
        raise
    if client is not None and todo:
        client.run(prepare_worker, str(spec.root), data_source, runs_per_gpu, no_sandbox)
    bar = _progress(len(todo), progress)
    try:
        futures = {executor.submit(grade_task, s.path.read_bytes(), s.student, str(spec.root), spec.hash, threads,
                                   data_source, runs_per_gpu, assets, no_sandbox): s for s in todo}
        for future in concurrent.futures.as_completed(futures):
            submission = futures[future]
            outcome = _outcome(future, spec, submission)
            result = outcome["result"]
            result["run"]["submission_sha256"] = submission.sha256
            if submission.timestamp_problem:  # on the feedback page too: the student knows no time was recorded
                result["run"]["notes"].append(f"timestamp.txt {submission.timestamp_problem}: recorded without a "
                                              "submission time")
            try:
                nbcourse.record(spec, course, submission.student, result, outcome["executed"], submission.timestamp)
                nbcourse.feedback(spec, course, submission.student, result,
                                  feedback_dir / f"{submission.student}.html")
                write_json_atomic(results_dir / f"{submission.student}.json", result)  # last: the commit mark
            except OSError as exc:  # a full disk, a read-only or vanished output directory: stop, lose nothing
                raise BatchError(f"could not record {submission.student} in {out} ({exc.strerror or exc}); "
                                 f"{len(graded)} results of this run are recorded. Fix it and run the same command "
                                 "again: it grades what is not recorded.") from exc
            graded.append(result)
            bar.set_postfix_str(f"{submission.student}: {result['status']} {result['score']:g}", refresh=False)
            bar.update()
    finally:
        bar.close()
        if client is None:
            executor.shutdown(wait=True, cancel_futures=True)
        else:  # Dask's executor cannot cancel on shutdown: closing the client releases its tasks
            executor.shutdown(wait=False)
            client.close()
        if cluster is not None:  # cancels its Slurm jobs
            cluster.close()
    grades_csv = write_grades_csv(spec, course, results_dir, out / "grades.csv")
    return BatchReport(graded, len(submissions) - len(todo), len(changed & {s.student for s in todo}), results_dir,
                       grades_csv, feedback_dir, course, round(time.monotonic() - started, 3), warnings)


def course_for(submissions_dir: Path, out: Path) -> Path:
    """An nbgrader submitted/ directory belongs to its course; anything else gets a course under --out."""
    if (submissions_dir.parent / "nbgrader_config.py").is_file() and submissions_dir.name == "submitted":
        return submissions_dir.parent
    return out / "course"


def recorded_result(results_dir: Path, submission: Submission) -> dict | None:
    """The result recorded for this very file (same sha256), or None: absent, unreadable, or a lost worker's (all
    graded again)."""
    import json

    path = results_dir / f"{submission.student}.json"
    try:
        result = json.loads(path.read_text())
        if (result["run"].get("submission_sha256") == submission.sha256
                and (result["error"] or {}).get("kind") != "worker_failed"):
            return result
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return None


def remove_partial_writes(*directories: Path) -> None:
    """Temporary files of atomic writes interrupted by a kill (the final names are never half written)."""
    for directory in directories:
        for pattern in (".*.tmp", ".*.json.*"):  # feedback/grades.csv temp names; write_json_atomic's mkstemp names
            for tmp in Path(directory).glob(pattern):
                tmp.unlink(missing_ok=True)


def require_sandbox(no_sandbox: bool) -> str:
    """How this machine sandboxes kernels (harness.isolation.mechanism); with no way to, refuse unless `no_sandbox`."""
    how, why = isolation.mechanism()
    if how == "none" and not no_sandbox:
        raise BatchError(f"student notebooks cannot be sandboxed on {socket.gethostname()}: {why}. Install "
                         "bubblewrap (Debian/Ubuntu: apt install bubblewrap) or grade as root; or pass --no-sandbox "
                         "to grade without a sandbox (each result will say so; docs/security.md)")
    return how


def prepare_worker(assignment_root: str, data_source: str | None, runs_per_gpu: int | None,
                   no_sandbox: bool = False) -> Assets:
    """The sandbox check and the assets step on a Dask worker's machine (its GPU, its cache): run on every worker
    before the batch."""
    require_sandbox(no_sandbox)
    return prepare_assignment(load_spec(assignment_root), data_source=data_source, runs_per_gpu=runs_per_gpu)


def _outcome(future, spec: AssignmentSpec, submission: Submission) -> dict:
    """The worker's answer. dlgrade's own errors (grade_task raises no other) stop the batch; a worker that died is
    recorded as a crash of this submission, graded again by the next run, and the batch goes on."""
    try:
        return future.result()
    except DlgradeError:
        raise
    except Exception as exc:  # BrokenProcessPool, a Dask worker lost, ...
        from harness.result import SubmissionResult

        message = f"the grading worker failed ({type(exc).__name__}: {str(exc)[:200]}); grade it again"
        result = SubmissionResult.not_graded(spec, submission.student, "crashed", "worker_failed", message)
        return {"result": result.to_json(), "executed": None}


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="submission", disable=not enabled or total == 0, file=sys.stderr,
                dynamic_ncols=True)
