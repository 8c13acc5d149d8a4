"""dlgrade's one error family: callers catch the family, and anything outside it is a bug that stays a bug.

The CLI maps the family to exit codes (docs/architecture.md, Contracts): `BadInput` -> 2 (the user's input, the
instructor's assignment included, is wrong: the message says what to change), `InternalError` -> 3 (dlgrade itself
failed). Any other exception reaching the CLI is also an internal error (exit 3), never "bad input".
"""
from __future__ import annotations


class DlgradeError(Exception):
    """Base of every error dlgrade raises on purpose."""

    exit_code = 3


class BadInput(DlgradeError):
    """A file, an option or an assignment the user gave is wrong; the message names it and says what to do."""

    exit_code = 2


class UsageError(BadInput):
    """A command-line argument is malformed."""


class SpecError(BadInput):
    """assignment.toml or the assignment's source notebook is wrong: carries every problem found, each naming its
    file, table and key (or cell), so that one run of `dlgrade validate` shows them all."""

    def __init__(self, problems: list[str] | str, where: str | None = None):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.where = where  # the assignment directory, when known
        if where is None and len(self.problems) == 1:
            text = self.problems[0]
        else:
            count = f"{len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}"
            text = f"{where}: {count} in the assignment (nothing was run; fix them, then run " \
                   f"`dlgrade validate {where}`):\n" + "\n".join(f"  {p}" for p in self.problems)
        super().__init__(text)

    def __reduce__(self):  # pickled between batch workers and the coordinator
        return type(self), (self.problems, self.where)


class MeasureError(BadInput):
    """The exported file cannot be measured; the message is meant for the student. Here, not in the torch-heavy
    harness/measure.py (which raises it, and from where it stays importable), so the grader can catch it cheaply."""


class InternalError(DlgradeError):
    """dlgrade's own code failed (a bug, or the grader's environment): never the student's fault. `details` keeps
    the original traceback, which is what a bug report needs."""

    def __init__(self, message: str, details: str = ""):
        super().__init__(message)
        self.message, self.details = message, details

    def __reduce__(self):
        return type(self), (self.message, self.details)
