"""What a student's feedback page may show. The page is nbgrader's `generate_feedback` HTML, configured here so that
nbgrader's and nbconvert's own steps enforce each rule (no edits of the finished HTML):

- hidden tests stay hidden: nbgrader's `ClearHiddenTests` runs on the assignment's test cells, and such a cell shows
  its error's name and message without the traceback, which quotes the failing line. The grade itself came from the
  full tests, run in the sandbox, and is read from the gradebook (`GetGrades`).
- nothing the student's notebook displayed runs in the reader's browser: nbconvert's `SanitizeHTML` drops every
  output type not on a list of inert ones (JavaScript, widgets) and escapes the HTML and Markdown outputs and the
  student's own Markdown cells with bleach: tags off an allowlist (<script>, <img onerror=...>) show as text. Images
  (PNG, JPEG, and SVG, which the template embeds as an <img>) stay.
- the grader's paths do not show: the run's sandbox directories become `<output_dir>`, `<data_dir>` and `<sandbox>`
  (`scrub_paths`, applied to the autograded notebook and to the check table).
- the list of graded cells at the top names each cell by its grade_id, the check id of the grader's table and of
  grades.csv, instead of nbgrader's "Test cell" (templates/dlgrade_feedback).
- the grader's check table (grading.course.check_table, rendered with autoescaping by grading.html) opens the page:
  `CheckTable` hands it to the template, which places it first in the body.
- the page works offline: templates/dlgrade_feedback/mathjax.html.j2 shadows nbconvert's MathJax macro, so no CDN
  script is written (formulas show as their TeX source).
"""
from __future__ import annotations

import re
from pathlib import Path

from markupsafe import Markup
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor, Preprocessor
from nbconvert.preprocessors.sanitize import SanitizeHTML
from nbgrader.preprocessors import ClearHiddenTests, GetGrades
from traitlets import Unicode
from traitlets.config import Config

TEMPLATES = Path(__file__).parent / "templates"

# harness.execute.Sandbox.create: tempfile.mkdtemp(prefix="dlgrade-run-") holding out/ (the notebook's output_dir),
# data/ (data_dir), work/ (its cwd), tmp/ (its TMPDIR). Matched by name, not by the run's own path: a result graded on
# another machine (Dask worker) names that machine's temporary directory.
RUN_DIR = re.compile(r"/dlgrade-run-\w+(?P<sub>/(?:out|data)(?![\w.-]))?")
PLACEHOLDERS = {"/out": "<output_dir>", "/data": "<data_dir>", None: "<sandbox>"}
# The directories above it, read backwards from each match over at most PATH_MAX characters: a pattern that started
# with them would backtrack over every path-like run of a printed output (quadratic on a student's 20 MB of output).
PARENTS_REVERSED = re.compile(r"(?:[\w.~+-]+/)*")
PATH_MAX = 4096


def scrub_paths(text: str) -> str:
    """The run's sandbox directories replaced by placeholders (the directories are gone once the run ends)."""
    parts, done = [], 0
    for match in RUN_DIR.finditer(text):
        before = text[max(done, match.start() - PATH_MAX):match.start()][::-1]
        parts += [text[done:match.start() - PARENTS_REVERSED.match(before).end()], PLACEHOLDERS[match["sub"]]]
        done = match.end()
    return "".join(parts) + text[done:]


def scrub_notebook(node):
    """scrub_paths on every string of a notebook (sources, outputs, tracebacks, metadata), in place."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        if isinstance(value, str):
            node[key] = scrub_paths(value)
        else:
            scrub_notebook(value)
    return node


def _is_assignment_cell(cell) -> bool:
    """A locked, non-solution cell: its source is the assignment's (restored by the grader before the run), and its
    nbgrader metadata the course's (grading.course.autograded_notebook), so the student wrote none of it."""
    meta = cell.metadata.get("nbgrader", {})
    return bool(meta.get("locked")) and not meta.get("solution")


class ClearHiddenTestsForFeedback(ClearHiddenTests):
    """nbgrader's ClearHiddenTests on the assignment's test cells only, and their tracebacks cut to the last line."""

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type != "code" or not _is_assignment_cell(cell):
            return cell, resources  # the student's own text stays as written, delimiters included
        if self._remove_hidden_test_region(cell):
            for output in cell.outputs:
                if output.output_type == "error":
                    output.traceback = [f"{output.ename}: {output.evalue}",
                                        "(traceback not shown: it quotes the hidden tests)"]
        return cell, resources


class SanitizeForFeedback(SanitizeHTML):
    """nbconvert's SanitizeHTML on every output and on the student's Markdown; the assignment's own Markdown cells
    are left to render in full (bleach would escape their headings and turn `->` in code into `-&gt;`)."""

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type == "markdown" and _is_assignment_cell(cell):
            return cell, resources
        return super().preprocess_cell(cell, resources, cell_index)


class CheckTable(Preprocessor):
    """Gives the page's template the grader's check table (HTML already rendered and escaped) as
    resources["dlgrade_check_table"]."""

    html = Unicode("", help="the check table's HTML").tag(config=True)

    def preprocess(self, nb, resources):
        resources["dlgrade_check_table"] = Markup(self.html)
        return nb, resources


# What ordinary Markdown and a table render to; no img (a remote source would load from the network), no style,
# no id (it could shadow the page's anchors). Anything else is shown as escaped text.
SAFE_TAGS = ["a", "abbr", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
             "i", "li", "ol", "p", "pre", "span", "div", "strong", "sub", "sup", "ul", "table", "thead", "tbody",
             "tr", "th", "td"]
SAFE_ATTRIBUTES = {"*": ["class"], "a": ["href", "title"], "abbr": ["title"], "th": ["colspan", "rowspan"],
                   "td": ["colspan", "rowspan"]}


def feedback_config(check_table: Markup) -> Config:
    """Configuration of nbgrader's GenerateFeedback (and its HTMLExporter) for one student's feedback page, opened by
    `check_table`."""
    import nbgrader

    config = Config()
    config.GenerateFeedback.preprocessors = [GetGrades, ClearHiddenTestsForFeedback, SanitizeForFeedback,
                                             CSSHTMLHeaderPreprocessor, CheckTable]
    config.CheckTable.enabled = True
    config.CheckTable.html = str(check_table)
    config.ClearHiddenTestsForFeedback.enforce_metadata = False
    config.SanitizeForFeedback.enabled = True  # nbconvert's preprocessors are off by default, nbgrader's on
    config.SanitizeForFeedback.tags = SAFE_TAGS
    config.SanitizeForFeedback.attributes = SAFE_ATTRIBUTES
    config.SanitizeForFeedback.safe_output_keys = {"metadata", "text/plain", "text/latex", "application/json",
                                                   "image/png", "image/jpeg", "image/svg+xml"}
    # templates/dlgrade_feedback/dlgrade_feedback.html.j2 extends nbgrader's feedback/index.html.j2 (the template
    # chain's first index.html.j2); not named index.html.j2 itself, so that it does not shadow its parent
    config.HTMLExporter.template_name = "dlgrade_feedback"
    config.HTMLExporter.template_file = "dlgrade_feedback.html.j2"
    config.HTMLExporter.extra_template_basedirs = [
        str(TEMPLATES), str(Path(nbgrader.__file__).parent / "server_extensions" / "formgrader" / "templates")]
    return config
