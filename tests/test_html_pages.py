"""dlgrade's own pages come from autoescaping templates (grading/html.py): a submission's name, which the student
chose, shows as text on the leaderboard page and the demo index, and a link to it stays one link."""
from __future__ import annotations

import json
from html.parser import HTMLParser
from types import SimpleNamespace

from grading.demo import write_index
from grading.leaderboard import write_leaderboard
from tests.test_leaderboard import PROJECT, result

NAMES = ["<script>alert(1)</script>", 'a"><b>']


class Elements(HTMLParser):
    """The tags of a page with their attributes, the text of its <script> elements, and its text."""

    def __init__(self, page: str):
        super().__init__()
        self.tags, self.scripts, self.text, self.in_script = [], [], [], False
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self.in_script = tag == "script"

    def handle_endtag(self, tag):
        self.in_script = False

    def handle_data(self, data):
        (self.scripts if self.in_script else self.text).append(data)


def test_a_submission_named_like_markup_shows_as_text_on_the_leaderboard(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    for i, name in enumerate(NAMES):  # graded: named in the table and on the plots
        (results / f"{i}.json").write_text(json.dumps(result(name, params=1000 * (i + 1))))
    page = write_leaderboard(PROJECT, results, tmp_path / "board").html.read_text()
    elements = Elements(page)
    assert [tag for tag, _ in elements.tags].count("script") == 1  # the page's own sorting script
    assert "alert" not in "".join(elements.scripts)
    assert [tag for tag, _ in elements.tags if tag == "b"] == []
    cells = [attrs["data-sort"] for tag, attrs in elements.tags if tag == "td" and attrs.get("data-sort") in NAMES]
    assert sorted(cells) == sorted(NAMES)  # each name whole in its cell's sort key, not cut at the quote
    assert all(elements.text.count(name) == 1 for name in NAMES)  # and shown once as text in the table
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "a&#34;&gt;&lt;b&gt;" in page


def test_a_submission_named_like_markup_shows_as_text_on_the_demo_index(tmp_path):
    report = SimpleNamespace(feedback_dir=tmp_path / "p1" / "feedback", grades_csv=tmp_path / "p1" / "grades.csv")
    board = SimpleNamespace(html=tmp_path / "p1" / "leaderboard" / "leaderboard.html")
    results = [{"submission": name, "score": 1.0, "max_score": 5.0} for name in [*NAMES, "javascript:alert(1)"]]
    page = write_index(tmp_path, [(SimpleNamespace(title="<i>P1</i>"), report, board, results)]).read_text()
    elements = Elements(page)
    assert [tag for tag, _ in elements.tags if tag in ("script", "b", "i")] == []
    assert [attrs["href"] for tag, attrs in elements.tags if tag == "a"] == [
        "p1/leaderboard/leaderboard.html", "p1/grades.csv", "p1/feedback/%3Cscript%3Ealert%281%29%3C/script%3E.html",
        "p1/feedback/a%22%3E%3Cb%3E.html", "p1/feedback/javascript%3Aalert%281%29.html"]  # relative, quoted
    assert "<h2>&lt;i&gt;P1&lt;/i&gt;</h2>" in page
    assert "".join(elements.text).rstrip().endswith(
        "feedback: <script>alert(1)</script> (1/5) a\"><b> (1/5) javascript:alert(1) (1/5)")
