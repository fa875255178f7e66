"""`swaptron forensics combine`: several training runs of one detector as one detector file.

    swaptron forensics combine --member RUN_A/detector.pt --member RUN_B/detector.pt \
        --output RUNS/meso4/photo/detector.pt

The members (runs of one model, input size and recipe that differ in their seed) become one
MeanLogit (networks/forensics.py): the file keeps the plain layout (`model`, `input_size`,
`recipe`, `state_dict`) and adds `members`, their count, and `member_files`. `swaptron forensics
evaluate` then fits one fusion and one cut on the mean logit, as for any run.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from swaptron.networks.forensics import MeanLogit
from swaptron.training.forensics_train import (
    CHECKPOINT,
    HISTORY,
    ForensicsTrainError,
    load_trained,
)

SHARED_KEYS = ("model", "input_size", "recipe")


def load_member(path: Path) -> tuple[torch.nn.Module, dict[str, object]]:
    """One member's network and metadata; ForensicsTrainError names a missing, unreadable or
    already combined file."""
    if not path.is_file():
        raise ForensicsTrainError(f"member {path} does not exist")
    network, meta = load_trained(path, network_only=True)
    if int(meta.get("members", 1)) != 1:
        raise ForensicsTrainError(f"member {path} is already a combination of "
                                  f"{meta['members']}; give its own members")
    return network, meta


def combine(members: list[Path], target: Path) -> dict[str, object]:
    """Write the MeanLogit of `members` (at least two distinct files of one model, input size
    and recipe) to `target`, with a history.json beside it summing the members' training;
    returns the written metadata."""
    if len(members) < 2:
        raise ForensicsTrainError(f"combine needs at least two --member files, got {len(members)}")
    resolved = [path.resolve() for path in members]
    if len(set(resolved)) != len(resolved):
        raise ForensicsTrainError("combine was given the same --member file twice")
    if target.resolve() in resolved:
        raise ForensicsTrainError(f"--output {target} is one of the members")
    if target.is_dir():
        raise ForensicsTrainError(f"--output {target} is a folder; give a file path")
    if (target.parent / CHECKPOINT).exists():
        raise ForensicsTrainError(f"--output {target} is in a training run's folder "
                                  f"({target.parent / CHECKPOINT}); give a folder of its own")
    loaded = [load_member(path) for path in members]
    first = loaded[0][1]
    for path, (_, meta) in zip(members[1:], loaded[1:], strict=True):
        for key in SHARED_KEYS:
            if meta.get(key) != first.get(key):
                raise ForensicsTrainError(f"member {path} has {key} {meta.get(key)!r}, the "
                                          f"first member {first.get(key)!r}")
    ensemble = MeanLogit([network for network, _ in loaded])
    saved = {**{key: first[key] for key in SHARED_KEYS}, "members": len(members),
             "member_files": [str(path) for path in members],
             "state_dict": ensemble.state_dict()}
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    torch.save(saved, partial)
    partial.replace(target)
    (target.parent / HISTORY).write_text(json.dumps(summed_history(members)))
    return {key: value for key, value in saved.items() if key != "state_dict"}


def summed_history(members: list[Path]) -> dict[str, object]:
    """The members' training steps and minutes, summed (null when a member kept no history)."""
    histories = [path.parent / HISTORY for path in members]
    if not all(path.is_file() for path in histories):
        return {"steps": None, "minutes": None, "members": len(members)}
    loaded = [json.loads(path.read_text()) for path in histories]
    return {"steps": sum(int(h["steps"]) for h in loaded),
            "minutes": round(sum(float(h["minutes"]) for h in loaded), 2),
            "members": len(members)}
