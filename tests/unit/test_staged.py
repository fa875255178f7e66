"""A prepared folder is whole or absent: `staged` replaces it only when writing succeeded."""

from __future__ import annotations

from pathlib import Path

import pytest

from swaptron.training.forensics_data import staged


def test_a_finished_stage_replaces_the_folder_and_a_failed_one_leaves_it(tmp_path: Path) -> None:
    output = tmp_path / "set"
    output.mkdir()
    (output / "old").write_text("old")
    with pytest.raises(RuntimeError), staged(output) as staging:
        (staging / "new").write_text("new")
        raise RuntimeError("half-way")
    assert (output / "old").is_file() and not (tmp_path / "set.part").exists()
    with staged(output) as staging:
        (staging / "new").write_text("new")
    assert sorted(p.name for p in output.iterdir()) == ["new"]
    assert not (tmp_path / "set.part").exists()
