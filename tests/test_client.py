"""`swaptron stream` against a real server: counts, order, shared memory, faults, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from swaptron import assets
from swaptron.client.credentials import describe, read_manifest
from swaptron.client.h264 import probe
from swaptron.server import access
from swaptron.server.launcher import TritonServer, free_ports
from swaptron.specs import STREAM

pytestmark = pytest.mark.server


def stream(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `swaptron stream` as a user would."""
    return subprocess.run([sys.executable, "-m", "swaptron", "stream", "--no-display", "--quiet",
                           *args], capture_output=True, text=True, timeout=timeout, check=False)


def read_video(path: Path) -> list[np.ndarray]:
    """Decode every frame of a video file."""
    return assets.read_frames(path)


def expected_swaps(server: TritonServer, frames: list[np.ndarray]) -> list[np.ndarray]:
    """`faceswap_stream`'s answers for frames sent as one sequence, asked directly."""
    found = []
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        for index, frame in enumerate(frames):
            tensor = grpcclient.InferInput("FRAME", [1, *frame.shape], "UINT8")
            tensor.set_data_from_numpy(frame[None])
            found.append(client.infer(STREAM, [tensor], sequence_id=99, sequence_start=index == 0,
                                      sequence_end=index == len(frames) - 1
                                      ).as_numpy("SWAPPED")[0])
    return found


def check_counts(report: dict) -> None:
    """Every captured frame ended exactly once as received, dropped or failed."""
    assert report["frames_captured"] == (report["frames_received"] + report["frames_dropped"]
                                         + report["frames_failed"])
    statuses = [frame["status"] for frame in report["frames"]]
    assert len(statuses) == report["frames_captured"]
    assert set(statuses) <= {"received", "dropped", "failed"}
    assert [frame["index"] for frame in report["frames"]] == list(range(len(statuses)))


def test_sixty_frames_come_back_in_order(faceswap_server: TritonServer,
                                         megamind_frames: list[np.ndarray],
                                         tmp_path: Path) -> None:
    result = stream("--source", str(assets.demo_video()), "--frames", "60", "--url",
                    faceswap_server.grpc_url, "--output", str(tmp_path / "frames"),
                    "--report", str(tmp_path / "report.json"), "--max-inflight", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    check_counts(report)
    assert report["frames_captured"] == 60 and report["frames_received"] == 60
    assert report["fps"] > 0
    assert 0 < report["latency_ms"]["p50"] <= report["latency_ms"]["p95"] <= report[
        "latency_ms"]["max"]
    for frame in report["frames"]:
        assert frame["capture"] <= frame["send"] < frame["receive"]
    # the default is the stateful ensemble: one sequence, ended by one more request
    assert report["server"]["models"][STREAM]["requests"] == 61
    written = sorted((tmp_path / "frames").glob("*.png"))
    assert [p.stem for p in written] == [f"{i:06d}" for i in range(60)]
    wanted = expected_swaps(faceswap_server, megamind_frames[:60])
    for index in (0, 17, 42, 59):
        got = cv2.imread(str(written[index]))
        assert np.abs(got.astype(int) - wanted[index]).max() <= 1, index
    assert "fps" in result.stdout and "p95" in result.stdout


def test_output_video_is_written_and_readable(faceswap_server: TritonServer,
                                              tmp_path: Path) -> None:
    video = tmp_path / "out.mp4"
    result = stream("--source", str(assets.demo_video()), "--frames", "24", "--url",
                    faceswap_server.grpc_url, "--output", str(video))
    assert result.returncode == 0, result.stdout + result.stderr
    frames = read_video(video)
    assert len(frames) == 24
    assert frames[0].shape == (528, 720, 3)
    facts = probe(video)  # H.264 a browser plays, with the manifest of the swap
    assert (facts["codec"], facts["pix_fmt"], facts["faststart"]) == ("h264", "yuv420p",
                                                                           True)
    manifest = read_manifest(video)
    assert manifest is not None and "faces swapped by swaptron" in describe(manifest)
    assert not list(tmp_path.glob(".*unsigned*"))


def test_mp4v_and_an_unsigned_file_are_explicit_choices(faceswap_server: TritonServer,
                                                        tmp_path: Path) -> None:
    for name, extra in (("mp4v.mp4", ("--codec", "mp4v")), ("plain.mp4", ("--no-sign",))):
        result = stream("--source", str(assets.demo_video()), "--frames", "6", "--url",
                        faceswap_server.grpc_url, "--output", str(tmp_path / name), *extra)
        assert result.returncode == 0, result.stdout + result.stderr
        assert len(read_video(tmp_path / name)) == 6
        assert read_manifest(tmp_path / name) is None
    assert probe(tmp_path / "mp4v.mp4")["codec"] == "mpeg4"
    assert probe(tmp_path / "plain.mp4")["codec"] == "h264"


def test_shared_memory_gives_the_same_frames(faceswap_server: TritonServer,
                                             tmp_path: Path) -> None:
    outputs = {}
    for name, extra in (("grpc", ()), ("shm", ("--shm",))):
        result = stream("--source", str(assets.demo_video()), "--frames", "20", "--url",
                        faceswap_server.grpc_url, "--output", str(tmp_path / name),
                        "--report", str(tmp_path / f"{name}.json"), *extra)
        assert result.returncode == 0, result.stdout + result.stderr
        outputs[name] = sorted((tmp_path / name).glob("*.png"))
        assert json.loads((tmp_path / f"{name}.json").read_text())["frames_received"] == 20
    assert len(outputs["grpc"]) == len(outputs["shm"]) == 20
    for plain, shared in zip(outputs["grpc"], outputs["shm"], strict=True):
        np.testing.assert_array_equal(cv2.imread(str(plain)), cv2.imread(str(shared)))
    with grpcclient.InferenceServerClient(faceswap_server.grpc_url) as client:
        status = client.get_system_shared_memory_status(
            as_json=True, headers=access.grpc_metadata(faceswap_server.admin_key))
        assert status.get("regions", {}) == {}


def test_serial_mode_sends_one_frame_at_a_time(faceswap_server: TritonServer,
                                               tmp_path: Path) -> None:
    result = stream("--source", str(assets.demo_video()), "--frames", "12", "--mode", "serial",
                    "--url", faceswap_server.grpc_url, "--report", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    check_counts(report)
    assert report["frames_received"] == 12
    frames = report["frames"]
    for earlier, later in pairwise(frames):
        assert later["send"] >= earlier["receive"]  # nothing overlaps


def test_unreachable_server_gives_a_message_exit_code_and_report(tmp_path: Path) -> None:
    port = free_ports().grpc
    started = time.monotonic()
    result = stream("--source", str(assets.demo_video()), "--url", f"127.0.0.1:{port}",
                    "--connect-timeout", "3", "--report", str(tmp_path / "report.json"))
    assert result.returncode == 2
    assert f"cannot reach Triton at 127.0.0.1:{port}" in result.stdout
    assert "swaptron serve" in result.stdout
    assert "retrying" in result.stderr
    # it gave up after its 3 s, not the default 30 s per try (a bound loose enough for a
    # loaded machine's interpreter start)
    assert time.monotonic() - started < 120
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["outcome"].startswith("error: cannot reach Triton")
    check_counts(report)


def test_failed_frames_exit_non_zero_unless_allowed(faceswap_server: TritonServer,
                                                    tmp_path: Path) -> None:
    common = ("--source", str(assets.demo_video()), "--frames", "6", "--url",
              faceswap_server.grpc_url, "--model", "detector")  # no SWAPPED: every frame fails
    strict = stream(*common, "--report", str(tmp_path / "strict.json"))
    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert "6 of 6 frames failed" in strict.stdout
    report = json.loads((tmp_path / "strict.json").read_text())
    assert report["frames_failed"] == 6
    assert "SWAPPED" in report["frames"][0]["error"]
    tolerant = stream(*common, "--max-failed", "1")
    assert tolerant.returncode == 0, tolerant.stdout + tolerant.stderr


def image_folder(folder: Path, frames: list[np.ndarray]) -> Path:
    """Frames as numbered PNG files (an image-folder source)."""
    folder.mkdir()
    for index, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{index:03d}.png"), frame)
    return folder


def test_a_refused_frame_is_the_one_marked_failed(faceswap_server: TritonServer,
                                                  megamind_frames: list[np.ndarray],
                                                  tmp_path: Path) -> None:
    """Frame 2 is too small: its refusal overtakes frames 0 and 1, still being swapped. The
    client used to blame the oldest frame in flight, then crash on frame 0's real answer."""
    tiny = np.zeros((32, 32, 3), np.uint8)
    source = image_folder(tmp_path / "frames", [megamind_frames[120], megamind_frames[121],
                                                tiny, megamind_frames[122]])
    result = stream("--source", str(source), "--url", faceswap_server.grpc_url,
                    "--max-inflight", "3", "--max-failed", "0.5",
                    "--report", str(tmp_path / "report.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    check_counts(report)
    assert [f["status"] for f in report["frames"]] == ["received", "received", "failed",
                                                       "received"]
    assert "FRAME is 32x32 pixels" in report["frames"][2]["error"]


def test_a_model_failure_in_serial_mode_is_not_a_reconnect(faceswap_server: TritonServer,
                                                           megamind_frames: list[np.ndarray],
                                                           tmp_path: Path) -> None:
    """A frame too large for the bounded shared memory fails with INTERNAL; the client used to
    count that as a lost connection and reconnect."""
    huge = np.zeros((10000, 10000, 3), np.uint8)
    source = image_folder(tmp_path / "frames", [megamind_frames[120], huge,
                                                megamind_frames[121]])
    result = stream("--source", str(source), "--url", faceswap_server.grpc_url,
                    "--mode", "serial", "--max-failed", "0.5",
                    "--report", str(tmp_path / "report.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert [f["status"] for f in report["frames"]] == ["received", "failed", "received"]
    assert "INTERNAL" in report["frames"][1]["error"]
    assert report["reconnects"] == 0
    assert "reconnecting" not in result.stderr


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--frames", "-1", "must be at least 1"),
    ("--fps", "-5", "must be above 0"),
    ("--max-inflight", "0", "must be at least 1"),
    ("--max-failed", "2", "must be between 0 and 1"),
    ("--connect-timeout", "nan", "must be above 0"),
])
def test_invalid_numbers_are_refused_by_the_parser(option: str, value: str,
                                                   message: str) -> None:
    result = stream("--source", str(assets.demo_video()), option, value)
    assert result.returncode == 2
    assert f"argument {option}: {message}" in result.stderr


def test_unwritable_report_or_output_is_refused_before_streaming(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    port = free_ports().grpc  # nothing listens: the checks must come first
    for extra, message in ((("--report", str(blocker / "report.json")),
                            "cannot write the report"),
                           (("--output", str(tmp_path / "clip.xyz")), "unsupported format"),
                           (("--output", str(blocker / "clip.mp4")), "cannot create")):
        started = time.monotonic()
        result = stream("--source", str(assets.demo_video()), "--url", f"127.0.0.1:{port}",
                        "--connect-timeout", "600", *extra)
        assert result.returncode == 2, extra
        assert message in result.stdout, (extra, result.stdout)
        assert time.monotonic() - started < 300  # refused before a 600 s connection wait
    assert not (tmp_path / "clip.xyz").exists()


def test_realtime_video_lasts_as_long_as_the_stream(faceswap_server: TritonServer,
                                                    tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    result = stream("--source", str(assets.demo_video()), "--realtime", "--fps", "60",
                    "--frames", "90", "--url", faceswap_server.grpc_url, "--output", str(video),
                    "--report", str(tmp_path / "report.json"), "--max-failed", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    check_counts(report)
    assert report["frames_captured"] == 90
    assert len(read_video(video)) == 90  # dropped frames repeat the last swapped one
    lost = report["frames_dropped"] + report["frames_failed"]
    assert f"90 frames, {lost} of them repeating" in result.stdout


def start_stream(url: str, report: Path, *extra: str) -> subprocess.Popen[str]:
    """A realtime, looping stream in the background."""
    return subprocess.Popen(
        [sys.executable, "-m", "swaptron", "stream", "--no-display", "--quiet", "--source",
         str(assets.demo_video()), "--realtime", "--loop", "--url", url, "--report",
         str(report), "--connect-timeout", "120", "--max-failed", "0.5", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stream_answers(server: TritonServer) -> int:
    """How many stream ensemble requests the server has answered so far."""
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        stats = client.get_inference_statistics(STREAM, as_json=True)
    return int(stats["model_stats"][0]["inference_stats"]["success"].get("count", 0))


def wait_for_frames(server: TritonServer, count: int, timeout: float = 300) -> None:
    """Until the server has answered `count` ensemble requests."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stream_answers(server) >= count:
            return
        time.sleep(0.2)
    raise TimeoutError(f"fewer than {count} frames answered")


def test_server_killed_and_restarted_mid_stream(exported_repository: Path,
                                                tmp_path: Path) -> None:
    ports = free_ports()
    report = tmp_path / "report.json"
    first = TritonServer(exported_repository, ports=ports, log_path=tmp_path / "first.log")
    with first:
        process = start_stream(first.grpc_url, report)
        wait_for_frames(first, 20)
        assert first.pid is not None
        os.killpg(first.pid, signal.SIGKILL)  # the server dies with frames in flight
    time.sleep(1.0)
    with TritonServer(exported_repository, ports=ports, log_path=tmp_path / "second.log") as second:
        wait_for_frames(second, 20)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stdout + stderr
    data = json.loads(report.read_text())
    check_counts(data)
    assert data["reconnects"] >= 1
    assert data["frames_failed"] >= 1
    assert data["frames_received"] >= 40
    assert "reconnecting" in stderr


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_ends_cleanly_with_a_report(faceswap_server: TritonServer,
                                                  tmp_path: Path, stop: signal.Signals) -> None:
    report = tmp_path / "report.json"
    answered = stream_answers(faceswap_server)
    process = start_stream(faceswap_server.grpc_url, report)
    wait_for_frames(faceswap_server, answered + 16)
    process.send_signal(stop)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stdout + stderr
    data = json.loads(report.read_text())
    check_counts(data)
    assert data["outcome"] == "stopped by a signal"
    assert data["frames_received"] > 10
    assert "frames" in stdout and "latency" in stdout


def test_demo_exports_serves_streams_and_reports(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "swaptron", "demo", "--pair", "megamind", "--unpaced",
         "--output-dir", str(tmp_path / "out"), "--model-repository",
         str(tmp_path / "repository")],
        capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    check_counts(report)
    assert report["frames_received"] == 270
    assert len(read_video(tmp_path / "out" / "megamind-to-b.mp4")) == 270
    assert "fps" in result.stdout and "p95" in result.stdout


def test_demo_plays_the_real_pair_by_default(tmp_path: Path) -> None:
    """What `make run` plays: the man of single_face.mp4 becomes the woman (weights/people)."""
    result = subprocess.run(
        [sys.executable, "-m", "swaptron", "demo", "--unpaced", "--output-dir",
         str(tmp_path / "out"), "--model-repository", str(tmp_path / "repository")],
        capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "streaming single_face.mp4 into w" in result.stdout
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    check_counts(report)
    assert report["frames_received"] == 72
    swapped = read_video(tmp_path / "out" / "people-to-w.mp4")
    assert probe(tmp_path / "out" / "people-to-w.mp4")["codec"] == "h264"
    assert read_manifest(tmp_path / "out" / "people-to-w.mp4") is not None
    source = assets.read_frames(assets.footage("single_face.mp4"))
    assert len(swapped) == 72
    changed = [np.abs(a.astype(int) - b).max() > 40 for a, b in zip(swapped, source, strict=True)]
    assert sum(changed) > 60  # his face was replaced in nearly every frame
