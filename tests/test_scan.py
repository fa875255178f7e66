"""The scan service through a real server: `scan`, `faceswap_checked`, `swaptron scan`, and
`swaptron stream --check`, on real frames."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from swaptron import assets
from swaptron.export.repository import ServingOptions
from swaptron.networks.fake_score import EMPTY_SCORE
from swaptron.server.launcher import TritonServer, free_ports
from swaptron.specs import (
    CHECKED,
    ENSEMBLE,
    FACES,
    FAKE_SCORE,
    FORENSICS,
    FRAME,
    LANDMARKS,
    SCAN,
    STREAM_CHECKED,
    SWAPPED,
)

from helpers import infer_frame

pytestmark = pytest.mark.server

HELD_OUT = range(208, 262)  # Megamind's test segment: the man, never trained on
UNSEEN_FRAMES = 40  # the unseen video's first frames: a real person no detector trained on


@pytest.fixture(scope="module")
def scan_server(exported_repository: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[TritonServer]:
    """The embedded server on the default export (with the committed forgery detector)."""
    assert (exported_repository / SCAN / "config.pbtxt").is_file(), "no detector exported"
    log = tmp_path_factory.mktemp("scan-server") / "triton.log"
    with TritonServer(exported_repository, ports=free_ports(), log_path=log) as server:
        yield server


def frames_folder(folder: Path, frames: list[np.ndarray]) -> Path:
    """Frames as numbered PNG files."""
    folder.mkdir(parents=True)
    for index, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{index:04d}.png"), frame)
    return folder


def scan_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`swaptron scan` as a user runs it."""
    return subprocess.run([sys.executable, "-m", "swaptron", "scan", *args],
                          capture_output=True, text=True, timeout=600, check=False)


def test_scan_gives_scores_per_face_and_minus_one_for_empty_slots(
        scan_server: TritonServer, megamind_frames: list[np.ndarray]) -> None:
    one_face = infer_frame(scan_server.grpc_url, SCAN, megamind_frames[120][None],
                           (FACES, LANDMARKS, FAKE_SCORE))
    score = one_face[FAKE_SCORE][0]
    assert one_face[FACES][0, 0, 4] > 0.5 and 0.0 <= score[0] <= 1.0
    assert score[1] == EMPTY_SCORE  # K = 2: the second slot holds no face
    no_face = infer_frame(scan_server.grpc_url, SCAN, np.zeros((1, 240, 320, 3), np.uint8),
                          (FAKE_SCORE,))
    assert (no_face[FAKE_SCORE] == EMPTY_SCORE).all()


def test_the_checked_ensemble_adds_a_score_to_the_swap(scan_server: TritonServer,
                                                       megamind_frames: list[np.ndarray]
                                                       ) -> None:
    frame = megamind_frames[120][None]
    plain = infer_frame(scan_server.grpc_url, ENSEMBLE, frame, (SWAPPED, FACES))
    checked = infer_frame(scan_server.grpc_url, CHECKED, frame, (SWAPPED, FACES, FAKE_SCORE))
    assert np.abs(checked[SWAPPED].astype(int) - plain[SWAPPED]).max() <= 1
    np.testing.assert_allclose(checked[FACES], plain[FACES], atol=1e-3)
    assert 0.0 <= checked[FAKE_SCORE][0, 0] <= 1.0
    alone = infer_frame(scan_server.grpc_url, CHECKED, frame, (FAKE_SCORE,))  # no frame back
    np.testing.assert_allclose(alone[FAKE_SCORE], checked[FAKE_SCORE], atol=1e-4)


def test_a_held_out_real_clip_and_our_swap_of_it(scan_server: TritonServer,
                                                 megamind_frames: list[np.ndarray],
                                                 tmp_path: Path) -> None:
    """A real person's clip no detector trained on (the unseen video) reads "likely real" and
    our swap of it "likely swapped"; our swap of Megamind's held-out segment (a computer-drawn
    face, whose marked swaps the forgery detector mostly misses) carries the mark, which says
    it is ours whatever the forgery score."""
    real = assets.read_frames(assets.footage("single_face.mp4"))[:UNSEEN_FRAMES]
    clips = {"real": real, "swapped": swapped_frames(scan_server, real),
             "cartoon_swapped": swapped_frames(scan_server,
                                               [megamind_frames[i] for i in HELD_OUT])}
    verdicts = {}
    for name, frames in clips.items():
        report_path = tmp_path / f"{name}.json"
        result = scan_cli(str(frames_folder(tmp_path / name, frames)), "--url",
                          scan_server.grpc_url, "--report", str(report_path),
                          "--plot", str(tmp_path / f"{name}.png"),
                          "--output", str(tmp_path / f"{name}.mp4"))
        assert result.returncode == 0, result.stdout + result.stderr
        report = json.loads(report_path.read_text())
        verdicts[name] = report["verdict"]
        assert report["frames_read"] == len(frames) == len(report["frames"])
        assert sum(f["status"] == "received" for f in report["frames"]) == report[
            "frames_scored"]
        assert (tmp_path / f"{name}.png").stat().st_size > 5000
        assert len(assets.read_frames(tmp_path / f"{name}.mp4")) == len(frames)
        assert f"verdict: {report['verdict']}" in result.stdout
        if name != "real":  # our swaps carry the mark
            assert report["marked"] is True and "mark: present" in result.stdout
        if name == "real":  # an unmarked real video reads as unmarked, face by face
            assert report["marked"] is False and report["marks"]
            assert all(face["marked"] is False for frame in report["frames"]
                       for face in frame["faces"])
            assert "mark: absent" in result.stdout and "mark: present" not in result.stdout
    assert verdicts["real"] == "likely real" and verdicts["swapped"] == "likely swapped"


def swapped_frames(server: TritonServer, frames: list[np.ndarray]) -> list[np.ndarray]:
    """Each frame through the served faceswap ensemble."""
    return [infer_frame(server.grpc_url, ENSEMBLE, frame[None], (SWAPPED,))[SWAPPED][0]
            for frame in frames]


def test_a_real_photo_of_an_unseen_person_is_never_called_swapped(scan_server: TritonServer,
                                                                  tmp_path: Path) -> None:
    photo = next(path for path in assets.fetch_stills()["face_recognition"]
                 if path.name == "obama.jpg")  # nobody of the training videos; never trained on
    report_path = tmp_path / "photo.json"
    result = scan_cli(str(photo), "--url", scan_server.grpc_url, "--report", str(report_path))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(report_path.read_text())
    assert report["frames_with_faces"] == 1
    assert report["verdict"] in ("likely real", "uncertain"), report["frames"]
    assert f"verdict: {report['verdict']}" in result.stdout
    assert report["real_below"] <= report["threshold"]


def test_a_clip_without_faces_is_a_verdict(scan_server: TritonServer) -> None:
    result = scan_cli(str(assets.footage("no_face.mp4")), "--url", scan_server.grpc_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verdict: no faces found" in result.stdout


@pytest.mark.parametrize(("make", "message"), [
    ("missing", "is neither a camera number, a video file nor an image folder"),
    ("corrupt", "cannot decode video"),
    ("text", "cannot decode video"),
    ("empty folder", "holds no image"),
])
def test_bad_input_is_named_and_the_server_keeps_serving(
        scan_server: TritonServer, megamind_frames: list[np.ndarray], tmp_path: Path,
        make: str, message: str) -> None:
    target = {"missing": tmp_path / "nowhere.mp4", "corrupt": tmp_path / "corrupt.mp4",
              "text": tmp_path / "notes.txt", "empty folder": tmp_path / "empty"}[make]
    if make == "corrupt":
        target.write_bytes(np.random.default_rng(1).bytes(40_000))
    elif make == "text":
        target.write_text("not a video\n")
    elif make == "empty folder":
        target.mkdir()
    result = scan_cli(str(target), "--url", scan_server.grpc_url)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stdout
    healthy = infer_frame(scan_server.grpc_url, SCAN, megamind_frames[120][None], (FAKE_SCORE,))
    assert 0.0 <= healthy[FAKE_SCORE][0, 0] <= 1.0


def test_stream_check_reports_the_fake_score(scan_server: TritonServer, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "swaptron", "stream", "--no-display", "--quiet", "--check",
         "--source", str(assets.demo_video()), "--frames", "24", "--url",
         scan_server.grpc_url, "--report", str(report)],
        capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(report.read_text())
    assert data["model"] == STREAM_CHECKED  # the stateful checked ensemble
    assert data["fake_score"]["frames_scored"] > 10
    assert all(0.0 <= f["fake_score"] <= 1.0 for f in data["frames"]
               if f["fake_score"] is not None)
    assert "fake score (checked)" in result.stdout


def model_requests(url: str, model: str) -> int:
    """How many requests a model has answered so far."""
    with grpcclient.InferenceServerClient(url) as client:
        stats = client.get_inference_statistics(model, as_json=True)
    return int(stats["model_stats"][0]["inference_stats"]["success"].get("count", 0))


def test_a_checked_stream_samples_its_scores_and_carries_them(
        scan_server: TritonServer, megamind_frames: list[np.ndarray]) -> None:
    frames = megamind_frames[100:148]
    interval = ServingOptions().score_interval
    before = model_requests(scan_server.grpc_url, FORENSICS)
    scores = []
    with grpcclient.InferenceServerClient(scan_server.grpc_url) as client:
        for index, frame in enumerate(frames):
            tensor = grpcclient.InferInput(FRAME, [1, *frame.shape], "UINT8")
            tensor.set_data_from_numpy(frame[None])
            result = client.infer(STREAM_CHECKED, [tensor], sequence_id=4242,
                                  sequence_start=index == 0,
                                  sequence_end=index == len(frames) - 1,
                                  outputs=[grpcclient.InferRequestedOutput(FAKE_SCORE),
                                           grpcclient.InferRequestedOutput(FACES)])
            faces, score = result.as_numpy(FACES)[0], result.as_numpy(FAKE_SCORE)[0]
            for slot in range(len(score)):  # a score where a face is, EMPTY_SCORE elsewhere
                assert (score[slot] == EMPTY_SCORE) == (faces[slot, 4] <= 0), (index, slot)
            scores.append(score)
    scored = model_requests(scan_server.grpc_url, FORENSICS) - before
    print(f"forensics ran {scored} times for {len(frames)} frames; scores {scores}")
    # the first frame on the path, then about one sample per interval beside it
    assert 1 <= scored <= 2 + len(frames) // interval
    assert all(0.0 <= s[0] <= 1.0 for s in scores)
