"""What a student reads about the cells of their run: which cell (by number *and* its first line, since Jupyter
numbers no cells), what it raised, and what to change.

Cell numbers count every cell of the submitted notebook from 1, markdown included (papermill's injected
parameters cell is not counted); `error.cell` of a result is the same cell counted from 0.
"""
from __future__ import annotations

import re

from harness.execute import ExecutionReport

FIRST_LINE_CHARS = 50
ERROR_CHARS = 300
# harness.submit's own errors: no model was written, so each becomes the result's error (export_failed), whole
OUR_ERRORS = ("ExportError", "SubmissionError")

# What torch raises when a notebook calls .cuda() (or device="cuda") on a runner without a usable GPU.
NO_GPU = re.compile(r"Found no NVIDIA driver|Torch not compiled with CUDA enabled|No CUDA GPUs are available|"
                    r"CUDA driver initialization failed|no CUDA-capable device")
NO_GPU_HINT = ("This runner has no GPU: move the model and tensors with .to(device), using the notebook's `device` "
               "parameter (the grader sets it), instead of .cuda() or device=\"cuda\".")


def student_cell(report: ExecutionReport, index: int) -> int:
    """Index in the submitted notebook: papermill inserted one `injected-parameters` cell."""
    injected = next((c.index for c in report.cells if "injected-parameters" in c.tags), None)
    return index - 1 if injected is not None and index > injected else index


def first_line(source: str) -> str:
    line = next((line.strip() for line in source.splitlines() if line.strip()), "")
    return line if len(line) <= FIRST_LINE_CHARS else line[:FIRST_LINE_CHARS - 1].rstrip() + "…"


def cell_text(report: ExecutionReport, index: int) -> str:
    """`cell 9 ("for epoch, accuracy in enumerate(report…")`: the number, and the line the student sees first."""
    cell = report.notebook.cells[index] if report.notebook and index < len(report.notebook.cells) else None
    line = first_line(cell.source) if cell is not None else ""
    if not line and cell is not None:
        line = cell.metadata.get("nbgrader", {}).get("grade_id", "")
    label = f"cell {student_cell(report, index) + 1}"
    return f'{label} ("{line}")' if line else label


def shorten(text: str, limit: int = ERROR_CHARS) -> str:
    """At most `limit` characters, cut at the end of a sentence or a word, never inside one."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit]
    sentence = max(cut.rfind(". "), cut.rfind(": "))
    if sentence > limit // 2:
        return cut[:sentence + 1] + " …"
    return cut[:cut.rfind(" ")].rstrip(",;:") + " …" if " " in cut else cut + "…"


def error_text(error: dict) -> str:
    """`ename: evalue`, shortened, with a hint where we know the fix."""
    text = f"{error['ename']}: {shorten(error['evalue'])}".rstrip(": ")
    return f"{text}. {NO_GPU_HINT}" if NO_GPU.search(error["evalue"]) else text


def cell_error_notes(report: ExecutionReport) -> list[str]:
    """One note per failing cell, except NameErrors after the first failure: they are almost always the names that
    the failing cell never defined, and listing each drowns the error to fix. They become one line. harness.submit's
    own errors are the result's error, not repeated as a note."""
    failing = [c for c in report.cells if c.error and c.error["ename"] not in ("SystemExit", *OUR_ERRORS)]
    if not failing:
        return []
    first = failing[0]
    follow_on = [c for c in failing[1:] if c.error["ename"] == "NameError"]
    notes = [f"{cell_text(report, c.index)} raised {error_text(c.error)}" for c in failing if c not in follow_on]
    if follow_on:
        cells = ", ".join(str(student_cell(report, c.index) + 1) for c in follow_on)
        notes.append(f"{len(follow_on)} later cell{'s' if len(follow_on) > 1 else ''} ({cells}) raised NameError, "
                     f"most likely because {cell_text(report, first.index)} failed before defining those names: "
                     "fix that cell first")
    return notes
