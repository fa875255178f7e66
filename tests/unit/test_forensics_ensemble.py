"""`swaptron forensics combine`: training runs of one detector as one file
(training/forensics_ensemble.py), loaded back as the served graph loads it."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from swaptron.networks.fake_score import load_network
from swaptron.networks.forensics import MeanLogit, build_detector
from swaptron.training.forensics_cli import run_combine
from swaptron.training.forensics_ensemble import combine
from swaptron.training.forensics_train import ForensicsTrainError

SIZE = 64


def write_run(folder: Path, seed: int, size: int = SIZE, recipe: str = "photo",
              steps: int = 10) -> Path:
    """A run's detector.pt and history.json as `swaptron forensics train` writes them."""
    torch.manual_seed(seed)
    network = build_detector("meso4", size)
    folder.mkdir(parents=True)
    path = folder / "detector.pt"
    torch.save({"model": "meso4", "input_size": size, "recipe": recipe,
                "state_dict": network.state_dict()}, path)
    (folder / "history.json").write_text(f'{{"steps": {steps}, "minutes": 1.5, "losses": []}}')
    return path


def test_combined_file_loads_as_the_mean_of_its_members(tmp_path: Path) -> None:
    members = [write_run(tmp_path / f"seed{seed}", seed) for seed in (0, 1)]
    target = tmp_path / "ensemble" / "meso4" / "photo" / "detector.pt"
    meta = combine(members, target)
    assert meta["members"] == 2
    network, loaded = load_network(target)
    assert isinstance(network, MeanLogit)
    assert loaded["members"] == 2 and loaded["model"] == "meso4"
    faces = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        logits = [load_network(path)[0](faces) for path in members]
        got = network(faces)
    assert not torch.allclose(logits[0], logits[1])
    torch.testing.assert_close(got, (logits[0] + logits[1]) / 2, rtol=0, atol=1e-5)
    history = (target.parent / "history.json").read_text()
    assert '"steps": 20' in history and '"members": 2' in history


@pytest.mark.parametrize("problem", ["one member", "same file twice", "input size",
                                     "recipe", "already combined", "not a detector",
                                     "missing", "run folder"])
def test_combine_refuses_bad_members_by_name(tmp_path: Path, problem: str) -> None:
    first = write_run(tmp_path / "a", 0)
    other = {"input size": lambda: write_run(tmp_path / "b", 1, size=SIZE * 2),
             "recipe": lambda: write_run(tmp_path / "b", 1, recipe="photo-sbi")}
    second = other[problem]() if problem in other else write_run(tmp_path / "b", 1)
    target = tmp_path / "out" / "detector.pt"
    members = [first, second]
    expected = ""
    if problem == "one member":
        members, expected = [first], "at least two"
    elif problem == "same file twice":
        members, expected = [first, first], "same --member file twice"
    elif problem in other:
        expected = f"{second} has {problem.replace(' ', '_')}"
    elif problem == "already combined":
        combine([first, second], tmp_path / "c" / "detector.pt")
        members, expected = [first, tmp_path / "c" / "detector.pt"], "already a combination"
    elif problem == "not a detector":
        second.write_bytes(b"\x80\x04not a pickle")
        expected = f"{second} is not a detector file"
    elif problem == "missing":
        second.unlink()
        expected = f"{second} does not exist"
    elif problem == "run folder":
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "checkpoint.pt").write_bytes(b"")
        expected = "training run's folder"
    with pytest.raises(ForensicsTrainError, match=expected.replace("(", r"\(")):
        combine(members, target)
    assert not target.exists()


def test_the_cli_step_reports_a_refusal_and_exits_1(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    first = write_run(tmp_path / "a", 0)
    args = argparse.Namespace(member=[first], output=tmp_path / "out" / "detector.pt")
    assert run_combine(args) == 1
    assert "error: combine needs at least two --member files" in capsys.readouterr().out


def test_combine_refuses_a_truncated_member_and_a_folder_as_output(tmp_path: Path) -> None:
    first, second = write_run(tmp_path / "a", 0), write_run(tmp_path / "b", 1)
    second.write_bytes(second.read_bytes()[:100])
    with pytest.raises(ForensicsTrainError, match=f"{second} is not a detector file"):
        combine([first, second], tmp_path / "out" / "detector.pt")
    second = write_run(tmp_path / "c", 1)
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(ForensicsTrainError, match="is a folder"):
        combine([first, second], folder)


def test_the_cli_step_reports_an_unwritable_output(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    members = [write_run(tmp_path / f"seed{seed}", seed) for seed in (0, 1)]
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    args = argparse.Namespace(member=members, output=blocker / "meso4" / "detector.pt")
    assert run_combine(args) == 1
    assert f"error: cannot write {args.output}" in capsys.readouterr().out
