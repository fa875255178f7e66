"""`swaptron bench --against REF --head-export ARGS`: HEAD exported with extra options goes to a
work folder (never over the committed repository), and its results are named by the options."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from swaptron.benchmarks.against import CHECKOUT, export_suffix, head_build
from swaptron.benchmarks.cli import AGAINST_ROUNDS, add_arguments, command_line


def test_head_with_export_options_exports_into_the_work_folder(tmp_path: Path) -> None:
    plain = head_build(tmp_path)
    assert plain.repository is None and plain.root == CHECKOUT and plain.export_args == ()
    loaded = head_build(tmp_path, ("--dfm", "/models/a.dfm:a"))
    assert loaded.repository == tmp_path / "head-repository"
    assert loaded.export_args == ("--dfm", "/models/a.dfm:a")
    assert "--dfm /models/a.dfm:a" in loaded.name


def test_results_are_named_by_the_export_options() -> None:
    assert export_suffix(()) == ""
    assert export_suffix(("--dfm", "/m/a.dfm", "--dfm", "b.dfm:b")) == "-dfm"
    assert export_suffix(("--no-mark",)) == "-no-mark"


def test_rounds_are_an_option_recorded_with_the_command() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    default = parser.parse_args(["--against", "b4a309f"])
    assert default.rounds == AGAINST_ROUNDS and "--rounds" not in command_line(default)
    more = parser.parse_args(["--against", "b4a309f", "--rounds", "6"])
    assert more.rounds == 6 and command_line(more).endswith("--against b4a309f --rounds 6")
    with pytest.raises(SystemExit):
        parser.parse_args(["--against", "b4a309f", "--rounds", "0"])
