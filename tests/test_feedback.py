"""Feedback pages show a student their notebook and grades, and nothing else: no hidden test, no path of the grader's
sandbox, nothing of theirs that would run in the reader's browser; the list of graded cells names the check ids.

The first tests record a hand-made executed notebook (fast: no kernel); the slow one grades real submissions through
`dlgrade grade`'s batch path and opens the page in headless Chromium."""
from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import nbformat
import pytest
from selenium.webdriver.common.by import By

from grading import course as nbcourse
from grading.batch import grade_batch
from grading.feedback import scrub_paths
from harness.spec import load_spec
from tests.browser import load
from tests.conftest import MODEL, nbgrader_test_cell, notebook

HIDDEN_ASSERT = "sum(p.numel() for p in model.parameters()) == 490"
TEST_CELL = ("assert model(torch.zeros(1, 3, 4, 4)).shape == (1, 10)\n"
             f"### BEGIN HIDDEN TESTS\nassert {HIDDEN_ASSERT}\n### END HIDDEN TESTS")
SHOWN_TEST_CELL = "assert model(torch.zeros(1, 3, 4, 4)).shape == (1, 10)"
SANDBOX = "/tmp/dlgrade-run-k2j_9xq1"
DISPLAYS = ("from IPython.display import HTML, Javascript, display\n"
            "display(HTML('<script>window.pwned = 1</script><b>bold</b><img src=x onerror=\"window.pwned = 2\">'))\n"
            "display(Javascript('window.pwned = 3'))\n"
            "print('saved in', output_dir, 'read from', data_dir)")
NO_BIAS = MODEL.replace("10)", "10, bias=False)")  # 480 parameters: the visible test passes, the hidden one fails
PNG = base64.b64encode(bytes.fromhex("89504e470d0a1a0a")).decode()


@pytest.fixture
def hidden_tests_assignment(tiny):
    """The tiny assignment whose nbgrader test cell `test_model` (2 points) has hidden tests."""
    spec, _ = tiny()
    source = notebook([MODEL])
    source.cells[2:2] = [nbgrader_test_cell(TEST_CELL, "test_model", 2)]
    nbformat.write(source, spec.notebook)
    return load_spec(spec.root)


REPORT = nbformat.v4.new_markdown_cell("My report", metadata={"nbgrader": {
    "grade": True, "grade_id": "report", "locked": False, "points": 2, "schema_version": 3, "solution": True,
    "task": False}})


def executed_notebook() -> nbformat.NotebookNode:
    """What a run of a hostile submission gives back: papermill's parameters cell, a cell that displayed HTML and
    JavaScript and printed sandbox paths, a Markdown cell with a script, the test cell failing on its hidden test."""
    nb = notebook([NO_BIAS + "\n" + DISPLAYS])
    nb.cells.insert(1, nbformat.v4.new_code_cell(f'output_dir = "{SANDBOX}/out"\ndata_dir = "{SANDBOX}/data"',
                                                 metadata={"tags": ["injected-parameters"]}))
    nb.cells[2].outputs = [
        nbformat.v4.new_output("display_data", data={
            "text/html": '<script>window.pwned = 1</script><b>bold</b><img src=x onerror="window.pwned = 2">',
            "text/plain": "<IPython.core.display.HTML object>"}),
        nbformat.v4.new_output("display_data", data={"application/javascript": "window.pwned = 3",
                                                     "text/plain": "<IPython.core.display.Javascript object>"}),
        nbformat.v4.new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"}),
        nbformat.v4.new_output("stream", name="stdout", text=f"saved in {SANDBOX}/out read from {SANDBOX}/data\n")]
    nb.cells.insert(3, nbformat.v4.new_markdown_cell("My notes <script>window.pwned = 4</script>"))
    test_cell = nbgrader_test_cell(TEST_CELL, "test_model", 2)
    test_cell.outputs = [nbformat.v4.new_output("error", ename="AssertionError", evalue="", traceback=[
        "Traceback (most recent call last)", f"File {SANDBOX}/tmp/ipykernel_7/2107.py:3",
        f"----> 3 assert {HIDDEN_ASSERT}", "AssertionError: "])]
    nb.cells.insert(-1, test_cell)
    return nb


def result_of(spec, student: str, passed: bool) -> dict:
    checks = [{"id": "test_model", "passed": passed, "points": 2.0 * passed, "max_points": 2.0, "expected": "passes",
               "got": "passes" if passed else "error", "message": "" if passed else "AssertionError"},
              {"id": "params", "passed": True, "points": 2.0, "max_points": 2.0, "expected": 490, "got": 490,
               "message": ""},
              {"id": "output", "passed": True, "points": 1.0, "max_points": 1.0, "expected": [10], "got": [10],
               "message": ""}]
    return {"assignment": spec.id, "submission": student, "status": "graded", "score": 3.0 + 2 * passed,
            "max_score": 5.0, "checks": checks, "error": {"kind": "cell_error", "message": (
                f"cell 3 raised FileNotFoundError: {SANDBOX}/data/x.pt"), "cell": 2}, "run": {"notes": []}}


@pytest.fixture
def page(hidden_tests_assignment, tmp_path) -> str:
    spec = hidden_tests_assignment
    course = tmp_path / "course"
    nbcourse.release(spec, course)
    nbcourse.record(spec, course, "mallory", result_of(spec, "mallory", passed=False), executed_notebook())
    return nbcourse.feedback(spec, course, "mallory", result_of(spec, "mallory", passed=False),
                             tmp_path / "mallory.html").read_text()


def test_sandbox_paths_become_placeholders():
    assert scrub_paths(f"File {SANDBOX}/tmp/ipykernel_7/2107.py:3, {SANDBOX}/out/model.pt2 {SANDBOX}/data "
                       f"{SANDBOX}/outputs '/var/tmp/x/dlgrade-run-ab_c/data/val.pt'") == (
        "File <sandbox>/tmp/ipykernel_7/2107.py:3, <output_dir>/model.pt2 <data_dir> <sandbox>/outputs "
        "'<data_dir>/val.pt'")


def test_the_page_shows_no_hidden_test(page):
    assert "HIDDEN TESTS" not in page and HIDDEN_ASSERT not in page
    assert SHOWN_TEST_CELL in re.sub(r"<[^>]+>", "", page)  # the visible tests are shown (highlighted)
    assert "AssertionError: \n(traceback not shown: it quotes the hidden tests)" in page


def test_the_page_shows_no_sandbox_path(page):
    assert "dlgrade-run-" not in page
    assert "saved in &lt;output_dir&gt; read from &lt;data_dir&gt;" in page
    assert "FileNotFoundError: &lt;data_dir&gt;/x.pt" in page  # the check table's error message too


class LiveMarkup(HTMLParser):
    """What a browser would run: the text of every <script> and every on* attribute (event handlers)."""

    def __init__(self, page: str):
        super().__init__()
        self.code, self.in_script = [], False
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.in_script = tag == "script"
        self.code += [value for name, value in attrs if name.startswith("on")]

    def handle_endtag(self, tag):
        self.in_script = False

    def handle_data(self, data):
        if self.in_script:
            self.code.append(data)


def test_the_students_html_and_javascript_are_shown_inert(page):
    assert [code for code in LiveMarkup(page).code if "pwned" in code] == []
    assert "&lt;script&gt;window.pwned = 1&lt;/script&gt;<b>bold</b>" in page  # escaped, shown as text
    assert "My notes &lt;script&gt;window.pwned = 4&lt;/script&gt;" in page
    assert f'src="data:image/png;base64,{PNG}"' in page  # images stay


def test_the_check_table_opens_the_page_and_nothing_loads_from_the_network(page):
    assert re.search(r'<body>\s*<section id="dlgrade-checks"', page)  # first in the body, before nbgrader's list
    assert page.count('id="dlgrade-checks"') == 1
    assert re.findall(r"<script[^>]*>", page) == []  # nbconvert's CDN MathJax is not written (templates/)


def test_the_check_table_shows_what_the_run_reported_as_text(hidden_tests_assignment):
    result = result_of(hidden_tests_assignment, "<b>mallory</b>", passed=False)
    result["checks"][0]["message"] = '<img src=x onerror="window.pwned = 6"> in ' + SANDBOX + "/work"
    result["checks"][1]["got"] = {"</td>": 1}
    result["run"]["notes"] = ["<script>window.pwned = 7</script>"]
    table = nbcourse.check_table(hidden_tests_assignment, result)
    assert LiveMarkup(table).code == []
    assert "<h2>dlgrade: tiny - &lt;b&gt;mallory&lt;/b&gt;</h2>" in table
    assert "<td>&lt;img src=x onerror=&#34;window.pwned = 6&#34;&gt; in &lt;sandbox&gt;/work</td>" in table
    assert "<td>{&#34;&lt;/td&gt;&#34;: 1}</td>" in table
    assert '<ul class="dlgrade-notes"><li>&lt;script&gt;window.pwned = 7&lt;/script&gt;</li></ul>' in table


def test_the_page_says_why_nbgraders_total_is_larger_than_the_automatic_score(hidden_tests_assignment, tmp_path):
    """A 2-point written report, not graded yet: the check table's 5 / 5 and nbgrader's 5.0 / 7.0 side by side."""
    spec = hidden_tests_assignment
    source = nbformat.read(spec.notebook, as_version=4)
    source.cells.insert(-1, REPORT)
    nbformat.write(source, spec.notebook)
    spec = load_spec(spec.root)
    course, executed = tmp_path / "course", executed_notebook()
    executed.cells.insert(-1, REPORT)
    nbcourse.release(spec, course)
    result = result_of(spec, "ada", passed=True)
    nbcourse.record(spec, course, "ada", result, executed)
    page = nbcourse.feedback(spec, course, "ada", result, tmp_path / "ada.html").read_text()
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", page))
    assert ("Status graded, score 5 / 5: the points graded automatically, by the notebook's test cells and the "
            "grader's checks (the rows below). The assignment is out of 7: nbgrader's score under this table also "
            "counts the 2 points of the answers graded by hand (report), which count once your instructor has graded "
            "them (0 until then).") in text
    assert "tiny (Score: 5.0 / 7.0)" in text  # nbgrader's heading, under the table


def test_without_hand_graded_cells_the_page_says_nothing_of_them(page):
    assert "score <b>3 / 5</b>: the points graded automatically" in page
    assert "graded by hand" not in page and "dlgrade-by-hand" not in page
    assert "(Score: 3.0 / 5.0)" in page


def test_graded_cells_are_listed_by_their_check_ids(page):
    toc = re.search(r'<div id="toc">(.*?)</div>', page, re.S)[1]
    assert re.findall(r'<li><a href="#([^"]+)">([^<]+)</a>', toc) == [
        ("test_model", "test_model"), ("params", "params"), ("output", "output")]
    assert "Test cell" not in page


def test_a_students_own_cell_marked_graded_or_locked_is_theirs(hidden_tests_assignment, tmp_path):
    spec = hidden_tests_assignment
    nb = executed_notebook()
    nb.cells[3].metadata["nbgrader"] = {"grade": True, "grade_id": "bonus", "locked": True, "points": 5,
                                        "schema_version": 3, "solution": False, "task": False}
    nb.cells[3].source = "### BEGIN HIDDEN TESTS\n<script>window.pwned = 5</script>"  # no END: nbgrader would raise
    course = tmp_path / "course"
    nbcourse.release(spec, course)
    nbcourse.record(spec, course, "mallory", result_of(spec, "mallory", passed=False), nb)
    page = nbcourse.feedback(spec, course, "mallory", result_of(spec, "mallory", passed=False),
                             tmp_path / "mallory.html").read_text()
    assert "bonus" not in page and "&lt;script&gt;window.pwned = 5&lt;/script&gt;" in page


@pytest.mark.slow
def test_a_graded_hostile_submission_gets_an_inert_page_without_hidden_tests(hidden_tests_assignment, browser,
                                                                              tmp_path):
    spec = hidden_tests_assignment
    submissions = tmp_path / "submissions"
    submissions.mkdir()
    hostile = notebook([NO_BIAS + "\n" + DISPLAYS, "open(data_dir + '/missing.pt')"])
    hostile.cells.insert(2, nbformat.v4.new_markdown_cell("My notes <script>window.pwned = 4</script>"))
    hostile.cells[-1:-1] = [nbgrader_test_cell(SHOWN_TEST_CELL, "test_model", 2)]  # as released: no hidden tests
    nbformat.write(hostile, submissions / "mallory.ipynb")
    report = grade_batch(spec, submissions, tmp_path / "out", threads=1, progress=False)

    path = report.feedback_dir / "mallory.html"
    page = path.read_text()
    assert "HIDDEN TESTS" not in page and HIDDEN_ASSERT not in page
    assert "AssertionError: \n(traceback not shown: it quotes the hidden tests)" in page  # the hidden test failed
    assert "dlgrade-run-" not in page and "saved in &lt;output_dir&gt; read from &lt;data_dir&gt;" in page
    assert "&lt;data_dir&gt;/missing.pt" in page  # in the traceback and in the check table's notes
    assert load(browser, path) == []
    assert browser.execute_script("return typeof window.pwned") == "undefined"
    assert [code for code in LiveMarkup(page).code if "pwned" in code] == []
    assert [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#toc li a")] == ["test_model", "params", "output"]
