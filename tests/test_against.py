"""`swaptron bench --against REF` for real: REF built beside the working tree, both served."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swaptron.cli import main

from helpers import processes_using

pytestmark = [pytest.mark.server, pytest.mark.slow]


def test_against_head_builds_it_beside_and_streams_both_alternately(tmp_path: Path) -> None:
    output, work = tmp_path / "results", tmp_path / "work"
    code = main(["bench", "--against", "HEAD", "--seconds", "1", "--output-dir", str(output),
                 "--work-dir", str(work)])
    assert code == 0
    results = json.loads((output / "against-HEAD.json").read_text())
    reference, head = results["builds"]
    assert reference.startswith("REF HEAD") and head.startswith("HEAD")
    assert (work / "against").is_dir() and any((work / "against").glob("*/src/swaptron"))
    for name in (reference, head):
        for run in ("unpaced", "realtime_24"):
            samples = results["samples"][name][run]
            assert len(samples) == results["rounds"] == 2  # REF, HEAD, REF, HEAD
            assert all(sample["fps"] > 0 and sample["p95_ms"] > 0 for sample in samples)
    assert set(results["warmup_unpaced_fps"]) == {reference, head}  # one unrecorded each
    assert any(work.rglob("warmup-0.json")) and any(work.rglob("warmup-1.json"))
    for key in ("unpaced_fps", "realtime_24_p95_ms"):
        assert results["ratios_head_over_ref"][key] > 0
    for name in (reference, head):  # four realtime streams at once, beside one alone
        row = results["concurrent_realtime"][name]
        assert len(row["fps"]) == len(row["dropped_pct"]) == 4 and row["alone_p95_ms"] > 0
    # the working tree streams through its tracker; each step's time per frame is reported
    assert "tracker" in results["step_ms_per_frame"][head]
    table = (output / "against-HEAD.md").read_text()
    assert "| unpaced_fps |" in table and "HEAD/REF" in table
    assert processes_using(work) == []  # both servers are gone
