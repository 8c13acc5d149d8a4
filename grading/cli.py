"""`dlgrade` command line.

Exit codes: 0 = ran and every check passed; 1 = ran but a check failed or scored below max; 2 = bad input or usage,
the instructor's assignment errors included (found before any notebook runs); 3 = internal error (dlgrade's own
failure, never the notebook's)."""
from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
import traceback
from pathlib import Path

from harness.errors import BadInput, InternalError, UsageError

EXAMPLES = {
    "check": "example:\n  dlgrade check assignments/shapes_params/submissions/correct.ipynb --assignment shapes_params"
             "\n  dlgrade check my.ipynb --assignment shapes_params --selfcheck -p seed=1 --json result.json",
    "profile": "examples:\n  dlgrade profile reference:resnet18 --json -\n"
               "  dlgrade profile 'reference:resnet18,width=0.5,blocks=(1,1,1,1)'\n"
               "  dlgrade profile dlgrade_out/model.pt2\n"
               "  dlgrade profile mymodels.py:make_model --input-shape 3,32,32",
    "demo": "examples:\n  dlgrade demo --out demo_out      (then open demo_out/index.html)\n"
            "  dlgrade demo --out demo_out --assignment ~/course/assignments/lab2 --assignment shapes_params",
    "backbone": "examples:\n  dlgrade backbone --out backbones/digits32_0to4_resnet18.pt\n"
                "  dlgrade backbone --out bb.pt --epochs 15 --seed 1\n"
                "  dlgrade backbone --name digits32_teacher --out teacher.pt",
    "leaderboard": "examples:\n  dlgrade leaderboard graded/results --out graded/leaderboard\n"
                   "  (writes leaderboard.csv, .md, .html and a dated snapshot in history/ when the table changed)",
    "release": "examples:\n  dlgrade release lab1_pytorch_intro --out course\n"
               "  (then hand out course/release/lab1_pytorch_intro/lab1_pytorch_intro.ipynb;\n"
               "   nbgrader works in course/)",
    "grade": "examples:\n  dlgrade grade shapes_params submissions/ --out graded --workers 2\n"
             "  dlgrade grade lab1_pytorch_intro course/submitted --out graded    (an nbgrader course's submissions)\n"
             "  dlgrade grade lab1_pytorch_intro course/submitted --out graded --scheduler tcp://10.0.0.5:8786\n"
             "  dlgrade grade project1_size_accuracy_time submitted/ --out graded --runs-per-gpu 2   (GPU server)\n"
             "  dlgrade grade lab1_pytorch_intro course/submitted --out graded --slurm 8     (8 Slurm worker jobs)",
    "validate": "examples:\n  dlgrade validate lab1_transfer\n  dlgrade validate path/to/my_assignment      "
                "(prints every problem of assignment.toml and the notebooks; exit 2 if any)",
    "audit": "examples:\n  dlgrade audit lab1_transfer                 (seeds 0-3 x kernel threads 1 and 2)\n"
             "  dlgrade audit path/to/my_assignment --seeds 8 > audit.md\n"
             "  (exit 1 when a verdict flips or its margin is not above its spread: change the assignment)",
    "calibrate": "examples:\n  dlgrade calibrate lab1_pytorch_intro\n"
                 "  dlgrade calibrate lab1_pytorch_intro --threads 1 --runs 5\n"
                 "  dlgrade calibrate project1_size_accuracy_time -p dataset=cifar10 --data-dir ~/data/cifar10",
}


# Imported only by the coordinator's commands (release, grade, leaderboard, demo): the `course` extra of pyproject.toml.
COURSE_MODULES = {"nbgrader", "nbconvert", "pandas", "dask", "distributed"}


def parse_value(text: str):
    """`-p` values: Python literals (1, 0.5, True, [1, 2]) or else plain strings."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_parameters(pairs: list[str]) -> dict:
    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.isidentifier():
            raise UsageError(f"-p expects NAME=VALUE, got '{pair}'")
        params[name] = parse_value(value)
    return params


def write_json(data: dict, target: str) -> None:
    if target == "-":
        print(json.dumps(data, indent=1))
    else:
        from harness.result import write_json_atomic

        try:
            write_json_atomic(Path(target), data)
        except OSError as exc:
            raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None


def cmd_check(args) -> int:
    from grading.console import format_result
    from harness.assets import prepare_assignment
    from harness.grade import grade_one
    from harness.preflight import prepare_device
    from harness.spec import load_spec

    spec = load_spec(args.assignment)
    prepare_device(spec)
    overrides = parse_parameters(args.p)
    assets = prepare_assignment(spec, overrides, args.selfcheck, data_source=args.data_dir, threads=args.threads)
    result = grade_one(Path(args.notebook), spec, overrides, selfcheck=args.selfcheck, threads=args.threads,
                       data_source=args.data_dir, assets=assets)
    if args.json:
        write_json(result.to_json(), args.json)
    if args.json != "-":
        print(format_result(result))
    if result.status == "invalid":
        return 2
    return 0 if result.full_marks else 1


def cmd_profile(args) -> int:
    from grading.console import format_profile
    from grading.targets import profile_target

    try:
        shape = tuple(int(d) for d in args.input_shape.split(",")) if args.input_shape else None
    except ValueError:
        raise UsageError(f"--input-shape expects whole numbers like 3,32,32, got '{args.input_shape}'") from None
    profile = profile_target(args.target, shape)
    if args.json:
        write_json(profile, args.json)
    if args.json != "-":
        print(format_profile(profile))
    return 0


def cmd_calibrate(args) -> int:
    from harness.calibrate import calibrate
    from harness.grade import grading_parameters
    from harness.preflight import prepare_device
    from harness.spec import load_spec

    spec = load_spec(args.assignment)
    parameters = grading_parameters(spec, parse_parameters(args.p), selfcheck=args.selfcheck)
    prepare_device(spec)
    entry = calibrate(spec, parameters, args.data_dir, args.threads, args.runs)

    def times(key):
        return f"{key} {entry[key]} (median of {', '.join(str(r[key]) for r in entry['runs'])})"

    print(f"{spec.id}: reference solution on {entry['device']} (torch {entry['torch']}, {entry['threads']} threads) "
          f"with {parameters}:\n  {times('train_time_s')}, {times('train_cpu_s')}, exec_time_s "
          f"{entry['exec_time_s']}, exec_cpu_s {entry['exec_cpu_s']}, accuracy {entry['accuracy']}\n"
          "cached for time_ratio / exec_ratio of later checks")
    return 0


def cmd_release(args) -> int:
    from grading.course import release
    from harness.spec import load_spec

    spec = load_spec(args.assignment)
    student_version = release(spec, Path(args.out))
    print(f"released {spec.id}: student version {student_version}\nnbgrader course directory {Path(args.out)} "
          f"(gradebook.db, source/, release/); `nbgrader` commands work there")
    return 0


def cmd_validate(args) -> int:
    from harness.spec import load_spec

    spec = load_spec(args.assignment)  # raises SpecError with every problem
    kinds = sorted({c.kind for c in spec.harness_checks})
    tests = len(spec.checks) - len(spec.harness_checks)
    print(f"{spec.id}: OK ({spec.root})\n  assignment.toml: {len(spec.harness_checks)} checks ({', '.join(kinds)}), "
          f"max score {sum(c.points for c in spec.checks):g}\n  {spec.notebook.name}: parameters cell, locked "
          f"submit cell, {tests} nbgrader test cells\n  assignment hash {spec.hash[:16]}")
    return 0


def cmd_audit(args) -> int:
    from grading.audit import format_audit, run_audit, summarize
    from harness.preflight import prepare_device
    from harness.spec import load_spec

    spec = load_spec(args.assignment)
    prepare_device(spec)
    started = time.monotonic()
    runs = run_audit(spec, args.seeds, data_source=args.data_dir, workers=args.workers)
    rows = summarize(spec, runs)
    print(format_audit(spec, rows, runs, args.seeds))
    print(f"\n{len(runs)} runs, {args.workers} at a time, in {time.monotonic() - started:.0f} s on a machine with "
          f"{os.cpu_count()} CPU cores.")
    return 1 if any(row.fragile for row in rows) else 0


def cmd_grade(args) -> int:
    from grading.batch import grade_batch
    from grading.console import format_batch_summary
    from harness.spec import load_spec

    if args.slurm and (args.scheduler or args.workers):
        raise UsageError("--slurm starts its own workers as Slurm jobs: leave out --scheduler and --workers")
    spec = load_spec(args.assignment)
    report = grade_batch(spec, Path(args.submissions), Path(args.out), workers=args.workers,
                         scheduler=args.scheduler, force=args.force, regrade_changed=args.regrade_changed,
                         threads=args.threads, runs_per_gpu=args.runs_per_gpu,
                         course=Path(args.course) if args.course else None, data_source=args.data_dir,
                         progress=not args.no_progress, no_sandbox=args.no_sandbox, slurm_jobs=args.slurm)
    print(format_batch_summary(report.graded, report.skipped))
    if report.regraded_changed:
        print(f"\n{report.regraded_changed} results graded with an older version of the assignment were regraded")
    if report.warnings:
        print(f"\n{len(report.warnings)} warning{'s' if len(report.warnings) > 1 else ''}:\n  "
              + "\n  ".join(report.warnings))
    print(f"\n{len(report.graded)} graded in {report.wall_s:.0f} s. results {report.results_dir}, feedback "
          f"{report.feedback_dir}, grades {report.grades_csv}, gradebook {report.course / 'gradebook.db'}")
    return 0 if all(r["status"] == "graded" and r["score"] == r["max_score"] for r in report.graded) else 1


def cmd_leaderboard(args) -> int:
    from grading.leaderboard import format_console, results_assignment, write_leaderboard
    from harness.spec import load_spec

    results_dir = Path(args.results)
    spec = load_spec(args.assignment) if args.assignment else results_assignment(results_dir)
    files = write_leaderboard(spec, results_dir, Path(args.out))
    print(format_console(files.table, spec))
    print(f"\nleaderboard {files.html} (also .csv, .md)"
          + (f"; snapshot {files.snapshot}" if files.snapshot else "; unchanged since the last snapshot"))
    return 0


def cmd_backbone(args) -> int:
    from reference.backbones import pretrain_digits_backbone

    meta = pretrain_digits_backbone(Path(args.out), epochs=args.epochs, seed=args.seed, name=args.name)
    print(f"{meta['name']}: {meta['model']} {meta['kwargs']} pretrained on {meta['dataset']} ({meta['epochs']} epochs, "
          f"seed {meta['seed']}, {meta['train_time_s']:.1f} s of training): val accuracy {meta['val_accuracy']:.1%}, "
          f"held-out test accuracy {meta['test_accuracy']:.1%}\nsaved {args.out}")
    return 0


def cmd_demo(args) -> int:
    from grading.demo import run_demo

    return run_demo(Path(args.out), args.workers, args.assignment)


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got '{text}'")
    return int(text)


def add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=positive_int, help="CPU threads of the measuring process (default: every "
                   "core available). The notebook always runs with the assignment's [limits] threads (default 1), "
                   "so that its training, and every verdict, is the same on any machine")


def add_cache(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache", metavar="DIR", help="cache of the reference's calibrated times and pretrained backbones "
                   "for this run (default: $DLGRADE_CACHE, else ~/.cache/dlgrade); created if missing. A directory "
                   "shared by the runs of one account keeps one calibration per runner (docs/instructor.md)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dlgrade", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str, fn):
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=EXAMPLES[name],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(fn=fn)
        return p

    p = add("check", "Run one notebook through the grading path and print its checks.", cmd_check)
    p.add_argument("notebook", help="the student notebook (.ipynb)")
    p.add_argument("--assignment", required=True, help="assignment id (assignments/<id>) or a directory")
    p.add_argument("-p", action="append", default=[], metavar="NAME=VALUE", help="override a notebook parameter")
    p.add_argument("--json", metavar="FILE", help="write the SubmissionResult JSON to FILE ('-' = stdout only)")
    p.add_argument("--selfcheck", action="store_true",
                   help="student mode: fast [selfcheck] parameters, hidden checks left out")
    p.add_argument("--data-dir", help="directory of a dataset that is not bundled (cifar10: holds cifar-10-batches-py)")
    add_threads(p)
    add_cache(p)

    p = add("profile", "Parameters, MACs and activation shapes of a model, measured like a submission.",
            cmd_profile)
    p.add_argument("target", help="reference:NAME[,k=v...] | model.pt2 | file.py:factory")
    p.add_argument("--input-shape", metavar="C,H,W", help="shape of one example (default: the model's own)")
    p.add_argument("--json", metavar="FILE", help="write the profile JSON to FILE ('-' = stdout only)")

    p = add("calibrate", "Time the assignment's reference solution on this runner (cached; used for time_ratio).",
            cmd_calibrate)
    p.add_argument("assignment", help="assignment id (assignments/<id>) or a directory")
    p.add_argument("-p", action="append", default=[], metavar="NAME=VALUE", help="override a grading parameter")
    p.add_argument("--selfcheck", action="store_true", help="calibrate the fast [selfcheck] parameters")
    p.add_argument("--data-dir", help="directory of a dataset that is not bundled (cifar10)")
    add_threads(p)
    p.add_argument("--runs", type=positive_int, help="runs of the reference; its times are their median "
                   "(default: [timing] runs, 3)")
    add_cache(p)

    p = add("release", "Set up an nbgrader course directory and generate the student version of an assignment.",
            cmd_release)
    p.add_argument("assignment", help="assignment id (assignments/<id>) or a directory")
    p.add_argument("--out", required=True, help="the nbgrader course directory (created or updated)")

    p = add("validate", "Check an assignment (assignment.toml and its notebooks) without running anything.",
            cmd_validate)
    p.add_argument("assignment", help="assignment id (assignments/<id>) or a directory")

    p = add("audit", "Grade the reference solution and every example under several seeds and thread counts; print "
            "each check's values, spread and margin, and flag the fragile ones.", cmd_audit)
    p.add_argument("assignment", help="assignment id (assignments/<id>) or a directory")
    p.add_argument("--seeds", type=positive_int, default=4, help="seeds 0..N-1 of the `seed` parameter (default 4)")
    p.add_argument("--workers", type=positive_int, default=1, help="runs graded at the same time (default 1: "
                   "a 2-thread kernel sharing the cores with another run spins idle threads, which inflates the CPU "
                   "time that the time checks compare)")
    p.add_argument("--data-dir", help="directory of a dataset that is not bundled (cifar10)")
    add_cache(p)

    p = add("grade", "Grade a directory of submissions: results JSON, gradebook, feedback HTML, grades.csv.",
            cmd_grade)
    p.add_argument("assignment", help="assignment id (assignments/<id>) or a directory")
    p.add_argument("submissions", help="directory of <student>.ipynb, or an nbgrader submitted/ directory")
    p.add_argument("--out", required=True, help="output directory (results/, feedback/, grades.csv)")
    p.add_argument("--workers", type=positive_int,
                   help="local worker processes (default: one per visible GPU, each pinned to its GPU; 1 without "
                   "GPUs, where the workers share the cores)")
    p.add_argument("--runs-per-gpu", type=positive_int, metavar="N",
                   help="let N runs share each GPU (default 1: more workers than GPUs are refused); recorded in "
                   "every result and shown next to its time ratio, and the reference is timed under the same sharing")
    p.add_argument("--scheduler", metavar="ADDRESS", help="a Dask scheduler (tcp://host:8786) instead of local workers")
    p.add_argument("--slurm", type=positive_int, metavar="JOBS", help="start JOBS Slurm jobs as the workers "
                   "(dask-jobqueue; partition, account, walltime, GPUs from its jobqueue.slurm configuration: "
                   "docs/instructor.md); cancelled when the batch ends")
    p.add_argument("--force", action="store_true", help="grade again submissions that are already recorded")
    p.add_argument("--regrade-changed", action="store_true", help="grade again the results recorded with an older "
                   "version of the assignment (its assignment.toml, notebooks or dlgrade changed)")
    p.add_argument("--course", help="nbgrader course directory (default: the parent of a submitted/ directory, "
                   "else OUT/course)")
    p.add_argument("--data-dir", help="directory of a dataset that is not bundled (cifar10)")
    add_threads(p)
    add_cache(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-sandbox", action="store_true", help="grade even where student notebooks cannot be "
                   "sandboxed (not root and no working bubblewrap: refused without this); every such result says so")

    p = add("leaderboard", "Rank the graded results of one assignment on size, accuracy and training time.",
            cmd_leaderboard)
    p.add_argument("results", help="a results/ directory written by `dlgrade grade`")
    p.add_argument("--out", required=True, help="directory for leaderboard.csv/.md/.html and history/")
    p.add_argument("--assignment", help="assignment id or directory (default: the one named in the results)")

    p = add("backbone", "Pretrain one of the offline reference networks a lab is given: Lab 1's transfer backbone "
            "(digits32 classes 0-4) or lab_distillation's teacher (all ten digits).", cmd_backbone)
    p.add_argument("--out", required=True, help="the backbone file to write (.pt)")
    p.add_argument("--name", default="digits32_resnet18",
                   help="which recipe: digits32_resnet18 (the default, Lab 1's) or digits32_teacher")
    p.add_argument("--epochs", type=positive_int, help="training epochs (default: the recipe's)")
    p.add_argument("--seed", type=int, help="seed of the initial weights, batch order and augmentation (default: the "
                   "recipe's)")

    p = add("demo", "The whole pipeline on the example submissions of every bundled assignment (or of those given "
            "with --assignment), offline: grade, feedback, grades CSV, leaderboard, each example against its "
            "submissions/expected.toml.", cmd_demo)
    p.add_argument("--out", required=True, help="output directory (one folder per assignment, index.html)")
    p.add_argument("--workers", type=positive_int, help="local worker processes (default: one per core)")
    p.add_argument("--assignment", action="append", metavar="ID_OR_DIR",
                   help="the assignment whose examples to grade (an id, or a directory elsewhere with assignment.toml, "
                   "submissions/*.ipynb and submissions/expected.toml); repeat for several (default: every assignment "
                   "under assignments/)")
    add_cache(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "cache", None):
            from harness.cache import use_cache

            use_cache(args.cache)  # as $DLGRADE_CACHE: the workers this command starts read it too
        return args.fn(args)
    except BadInput as exc:
        print(f"dlgrade {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # `dlgrade ... | head`
        sys.stderr.close()
        return 1
    except Exception as exc:  # InternalError, or any other exception: a bug stays a bug, never "bad input"
        if isinstance(exc, ModuleNotFoundError) and (exc.name or "").partition(".")[0] in COURSE_MODULES:
            print(f"dlgrade {args.command}: this command needs `pip install 'dlgrade[course]'` (the coordinator's "
                  f"packages; this install has only what grading one notebook needs): no module named '{exc.name}'",
                  file=sys.stderr)
            return 2
        details = exc.details if isinstance(exc, InternalError) else traceback.format_exc()
        print(f"{details.rstrip()}\ndlgrade {args.command}: internal error (a bug in dlgrade, not in the notebook): "
              f"{exc}\nPlease report it with the traceback above.", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
