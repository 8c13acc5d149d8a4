"""`dlgrade demo`: grade every example submission of every assignment, offline, and print one summary."""
from __future__ import annotations

import time
from pathlib import Path

from grading.console import format_summary
from harness.grade import grade_one
from harness.result import write_json_atomic
from harness.spec import ASSIGNMENTS_DIR, load_spec


def example_submissions() -> list[tuple[str, Path]]:
    pairs = []
    for toml in sorted(ASSIGNMENTS_DIR.glob("*/assignment.toml")):
        for notebook in sorted((toml.parent / "submissions").glob("*.ipynb")):
            pairs.append((toml.parent.name, notebook))
    return pairs


def run_demo(out: Path) -> int:
    pairs = example_submissions()
    results = []
    started = time.monotonic()
    for i, (assignment_id, notebook) in enumerate(pairs, 1):
        spec = load_spec(assignment_id)
        print(f"[{i}/{len(pairs)}] {assignment_id}/{notebook.name} ...", end=" ", flush=True)
        result = grade_one(notebook, spec)
        write_json_atomic(out / "results" / assignment_id / f"{result.submission}.json", result.to_json())
        print(f"{result.status} {result.score:g}/{result.max_score:g} ({result.run['wall_s']:.1f} s)")
        results.append(result)
    print()
    print(format_summary(results))
    print(f"\n{len(results)} submissions in {time.monotonic() - started:.0f} s; results JSON in {out / 'results'}")
    return 0
