"""`--cache DIR`: the calibrations and backbones of one run go to DIR instead of $DLGRADE_CACHE / ~/.cache/dlgrade."""
from __future__ import annotations

import json
import os

import pytest

from grading.cli import build_parser, main
from harness.cache import cache_root, use_cache
from harness.errors import UsageError
from tests.conftest import MODEL
from tests.test_timing import TIMING


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """$DLGRADE_CACHE set to tmp/env-cache, and restored after the test (--cache changes it for the process)."""
    monkeypatch.setenv("DLGRADE_CACHE", str(tmp_path / "env-cache"))
    return tmp_path / "env-cache"


def test_the_option_is_the_cache_of_the_commands_that_use_one():
    commands = build_parser()._subparsers._group_actions[0].choices
    assert sorted(name for name, p in commands.items() if "--cache DIR" in p.format_help()) == [
        "audit", "calibrate", "check", "demo", "grade"]


def test_use_cache_creates_the_directory_and_sets_the_environment(own_cache, tmp_path):
    assert use_cache(tmp_path / "shared" / "dlgrade") == tmp_path / "shared" / "dlgrade"
    assert (tmp_path / "shared" / "dlgrade").is_dir()
    assert os.environ["DLGRADE_CACHE"] == str(tmp_path / "shared" / "dlgrade") and cache_root() == \
        tmp_path / "shared" / "dlgrade"


def test_a_cache_that_cannot_be_a_directory_is_a_usage_error(own_cache, tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(UsageError, match="cannot create it"):
        use_cache(tmp_path / "a_file" / "cache")
    assert main(["calibrate", "shapes_params", "--cache", str(tmp_path / "a_file")]) == 2
    assert capsys.readouterr().err == (f"dlgrade calibrate: --cache {tmp_path / 'a_file'}: cannot create it (File "
                                       "exists)\n")
    assert os.environ["DLGRADE_CACHE"] == str(own_cache)


@pytest.mark.slow
def test_calibrate_with_cache_dir_puts_the_entry_there_and_check_reads_it(tiny, own_cache, tmp_path, capsys):
    spec, write = tiny(extra_toml=TIMING, reference_cells=([MODEL, "x = sum(range(10**6))"], {1: ["train"]}))
    shared = tmp_path / "shared-cache"
    assert main(["calibrate", str(spec.root), "--cache", str(shared)]) == 0
    assert "calibrating 'tiny'" in capsys.readouterr().err
    entries = list((shared / "calibration").glob("*.json"))
    assert len(entries) == 1 and json.loads(entries[0].read_text())["assignment"] == "tiny"
    assert not own_cache.exists()  # nothing in $DLGRADE_CACHE

    notebook = write([MODEL, "x = sum(range(10**6))"], tags={1: ["train"]})
    main(["check", str(notebook), "--assignment", str(spec.root), "--cache", str(shared), "--json", "-"])
    said = capsys.readouterr()
    assert "calibrating" not in said.err  # read from DIR, not timed again
    metrics = json.loads(said.out)["metrics"]
    assert metrics["reference_train_cpu_s"] == json.loads(entries[0].read_text())["train_cpu_s"]
    assert not own_cache.exists()
