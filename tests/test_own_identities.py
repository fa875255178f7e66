"""Your own identities from two different videos, end to end as the README tells a new user:
extract each, train, card, export, serve, and swap into either one per request."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from swaptron import assets
from swaptron.server.launcher import TritonServer, free_ports
from swaptron.specs import ENSEMBLE, SWAPPED
from swaptron.training.train import WEIGHTS

from helpers import swap_inputs

pytestmark = pytest.mark.server


def swaptron(*args: str) -> subprocess.CompletedProcess[str]:
    """A `swaptron` command as a user runs it; fails the test with its output if it fails."""
    result = subprocess.run([sys.executable, "-m", "swaptron", *args], capture_output=True,
                            text=True, timeout=900, check=False)
    assert result.returncode == 0, " ".join(args) + "\n" + result.stdout + result.stderr
    return result


def test_identities_from_two_videos_go_from_footage_to_a_served_swap(tmp_path: Path) -> None:
    dataset, weights, repository = tmp_path / "ds", tmp_path / "out", tmp_path / "repo"
    swaptron("extract", "--source", str(assets.footage("WolfgangLanger_Pexels.mp4")),
             "--identity", "w=0-59", "--output", str(dataset))
    swaptron("extract", "--source", str(assets.footage("single_face.mp4")), "--identity",
             "m=0-59", "--output", str(dataset))
    swaptron("train", "--dataset", str(dataset), "--identities", "w,m", "--steps", "20",
             "--output", str(weights), "--threads", "2")
    card = json.loads((weights / "card.json").read_text())
    assert set(card["swap_rate_by_direction"]) == {"m2w", "w2m"}
    assert card["holdout_frames"] > 0 and card["steps"] == 20
    assert "WolfgangLanger_Pexels.mp4" in (weights / "TRAINING.md").read_text()
    assert "single_face.mp4" in (weights / "TRAINING.md").read_text()
    swaptron("export", "--weights", str(weights / WEIGHTS), "--identity", "w", "--output",
             str(repository))
    frame = assets.read_frames(assets.footage("single_face.mp4"), [30])[0]
    with TritonServer(repository, ports=free_ports(), log_path=tmp_path / "triton.log") as server:
        listed = json.loads(swaptron("identities", "--url", server.grpc_url, "--json").stdout)
        assert listed["identities"] == ["m", "w"] and listed["default"] == "w"
        swapped = {}
        with grpcclient.InferenceServerClient(server.grpc_url) as client:
            for identity in (None, "w", "m"):
                swapped[identity] = client.infer(ENSEMBLE, swap_inputs(frame, identity)
                                                 ).as_numpy(SWAPPED)[0]
    np.testing.assert_array_equal(swapped[None], swapped["w"])
    assert np.abs(swapped["w"].astype(int) - frame).max() > 40  # the face was replaced
    assert np.abs(swapped["m"].astype(int) - swapped["w"]).max() > 40  # by another decoder
