"""`dlgrade demo --assignment DIR`: the examples of an assignment kept outside assignments/, checked against its own
submissions/expected.toml."""
from __future__ import annotations

import json
import shutil

import pytest

from grading.cli import main
from harness.spec import ASSIGNMENTS_DIR


def copy_of_shapes_params(root, examples=("correct", "wrong_params")):
    """shapes_params (the fastest: nothing trains) elsewhere, with two of its examples."""
    shutil.copytree(ASSIGNMENTS_DIR / "shapes_params", root, ignore=shutil.ignore_patterns("*.ipynb"))
    shutil.copy(ASSIGNMENTS_DIR / "shapes_params" / "shapes_params.ipynb", root)
    for name in examples:
        shutil.copy(ASSIGNMENTS_DIR / "shapes_params" / "submissions" / f"{name}.ipynb", root / "submissions")
    return root


@pytest.mark.slow
def test_demo_grades_the_examples_of_an_assignment_elsewhere(tmp_path, capsys):
    lab = copy_of_shapes_params(tmp_path / "elsewhere" / "my_lab")
    out = tmp_path / "demo"
    command = ["demo", "--out", str(out), "--assignment", str(lab), "--workers", "1"]
    assert main(command) == 0
    printed = capsys.readouterr().out
    assert "== shapes_params: grading 2 example submissions on 1 worker(s)" in printed
    assert [line.split()[:4] for line in printed.splitlines() if line.startswith("shapes_params ")] == [
        ["shapes_params", "2", "2", "2/2"]]
    assert sorted(p.name for p in (out / "shapes_params" / "results").iterdir()) == ["correct.json",
                                                                                      "wrong_params.json"]
    assert json.loads((out / "shapes_params" / "results" / "correct.json").read_text())["score"] == 14.0
    assert (out / "index.html").is_file() and (out / "shapes_params" / "leaderboard" / "leaderboard.html").is_file()

    # its own expected.toml decides: a changed expectation is reported (the re-run grades nothing again)
    expected = lab / "submissions" / "expected.toml"
    expected.write_text(expected.read_text().replace("score = 12.6", "score = 12.0"))
    assert main(command) == 1
    printed = capsys.readouterr().out
    assert "grading 2 example" in printed and "1/2" in printed


def test_demo_refuses_an_assignment_without_expected_outcomes_before_running(tmp_path, capsys, monkeypatch):
    import grading.demo

    def must_not_run(*args, **kwargs):
        raise AssertionError("a notebook was run")

    monkeypatch.setattr(grading.demo, "grade_batch", must_not_run)
    lab = copy_of_shapes_params(tmp_path / "my_lab")
    (lab / "submissions" / "expected.toml").unlink()
    assert main(["demo", "--out", str(tmp_path / "demo"), "--assignment", "shapes_params", "--assignment",
                 str(lab)]) == 2
    assert capsys.readouterr().err == (
        f"dlgrade demo: {lab}: the demo grades an assignment's examples: it needs submissions/*.ipynb and their "
        "expected outcomes in submissions/expected.toml\n")
    assert not (tmp_path / "demo").exists()


def test_demo_refuses_two_assignments_with_the_same_id(tmp_path, capsys, monkeypatch):
    import grading.demo

    monkeypatch.setattr(grading.demo, "grade_batch", None)
    lab = copy_of_shapes_params(tmp_path / "my_lab")
    assert main(["demo", "--out", str(tmp_path / "demo"), "--assignment", "shapes_params", "--assignment",
                 str(lab)]) == 2
    assert "two of the --assignment directories have the same id (shapes_params, shapes_params)" in \
        capsys.readouterr().err
