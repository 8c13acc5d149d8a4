"""The feedback pages a grading batch writes, opened in a real headless Chromium (Debian's chromium and
chromium-driver, which .ci/run installs): they load without console errors and show the grader's check table.
A page that throws must be reported, or a clean result would mean nothing."""
from __future__ import annotations

import json

import pytest
from selenium.webdriver.common.by import By

from grading.batch import grade_batch
from tests.browser import load
from tests.test_batch import course_assignment  # noqa: F401  (the fixture, shared with test_batch.py)

pytestmark = pytest.mark.slow  # grades through kernels; still run in CI

RED, GREEN = "rgba(176, 0, 32, 1)", "rgba(27, 127, 59, 1)"  # the table's style for failed and passed checks


def test_feedback_pages_load_cleanly_and_show_the_check_table(course_assignment, browser, tmp_path):  # noqa: F811
    spec, submissions = course_assignment
    for name in ("cy", "dee"):  # two students are enough: ada passes every check, bob fails all three
        (submissions / f"{name}.ipynb").unlink()
    report = grade_batch(spec, submissions, tmp_path / "out", threads=1, progress=False)

    shown = {}
    for student in ("ada", "bob"):
        errors = load(browser, report.feedback_dir / f"{student}.html")
        assert errors == [], student  # nbgrader's CDN MathJax script is removed: nothing to fail offline
        section = browser.find_element(By.ID, "dlgrade-checks")
        assert section.is_displayed()
        assert browser.execute_script("return document.body.firstElementChild.id") == "dlgrade-checks"  # at the top
        assert section.find_element(By.TAG_NAME, "h2").text == f"dlgrade: tiny - {student}"
        headers = [th.text for th in section.find_elements(By.CSS_SELECTOR, "thead th")]
        assert headers == ["check", "result", "points", "expected", "got", "message"]
        rows = section.find_elements(By.CSS_SELECTOR, "tbody tr")
        shown[student] = [[td.text for td in row.find_elements(By.TAG_NAME, "td")] for row in rows]
        colors = {row.find_elements(By.TAG_NAME, "td")[0].text:
                  row.find_elements(By.TAG_NAME, "td")[1].value_of_css_property("color") for row in rows}
        assert colors == dict.fromkeys(["test_model", "params", "output"], GREEN if student == "ada" else RED)
        summary = section.find_element(By.TAG_NAME, "p").text
        assert summary.startswith("Status graded, score 5 / 5" if student == "ada" else "Status graded, score 0 / 5")

    assert [row[:5] for row in shown["ada"]] == [
        ["test_model", "passed", "2 / 2", "passes", "passes"],
        ["params", "passed", "2 / 2", "490", "490"], ["output", "passed", "1 / 1", "[10]", "[10]"]]
    assert [row[:5] for row in shown["bob"]] == [  # the nbgrader test cell, then the harness checks
        ["test_model", "failed", "0 / 2", "passes", "error"],
        ["params", "failed", "0 / 2", "490", "441"], ["output", "failed", "0 / 1", "[10]", "[9]"]]
    bob = json.loads((report.results_dir / "bob.json").read_text())
    assert [row[5] for row in shown["bob"]] == [c["message"] for c in bob["checks"]]
    assert "expected 490 parameters, got 441" in shown["bob"][1][5]


def test_a_page_that_throws_is_reported(browser, tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<!doctype html><html><body><p>feedback</p><script>\n"
                    "console.log('not an error');\n"
                    "throw new Error('check table script broke');\n"
                    "</script></body></html>")
    errors = load(browser, page)
    assert len(errors) == 1 and "Uncaught Error: check table script broke" in errors[0], errors

    clean = tmp_path / "clean.html"
    clean.write_text("<!doctype html><html><body><p>feedback</p><script>console.log('fine')</script></body></html>")
    assert load(browser, clean) == []  # and the error above is not carried over to the next page


def test_the_leaderboard_page_loads_cleanly_sorts_and_shows_three_plots(browser, tmp_path):
    from grading.leaderboard import write_leaderboard
    from tests.test_leaderboard import PROJECT, RESULTS

    results = tmp_path / "results"
    results.mkdir()
    for r in RESULTS:
        (results / f"{r['submission']}.json").write_text(json.dumps(r))
    page = write_leaderboard(PROJECT, results, tmp_path / "board").html
    assert load(browser, page) == []
    plots = browser.find_elements(By.CSS_SELECTOR, ".plots figure svg")
    assert len(plots) == 3 and all(p.is_displayed() and p.size["height"] > 150 for p in plots)

    def column(name):
        headers = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#leaderboard thead th")]
        index = headers.index(name)
        return [row.find_elements(By.TAG_NAME, "td")[index].text
                for row in browser.find_elements(By.CSS_SELECTOR, "#leaderboard tbody tr")]

    assert column("submission") == ["big", "small_half", "below_gate", "dominated", "crashed"]  # pareto rule
    assert column("architecture")[-1] == "crashed"  # the failed submission is listed, last, with its status
    browser.find_element(By.XPATH, "//th[text()='params']").click()
    assert column("params") == ["10", "1,000", "2,000", "100,000", ""]  # ascending, the empty cell last
    browser.find_element(By.XPATH, "//th[starts-with(text(), 'params')]").click()
    assert column("params") == ["100,000", "2,000", "1,000", "10", ""]  # descending, the empty cell still last
