"""Streams over several servers: gRPC round_robin over a --url of three embedded servers on
loopback. A stream stays on one server; when that server is killed mid-run the stream reconnects
to a live one with a new sequence, and every frame is still counted once; new streams spread over
the survivors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from swaptron import assets
from swaptron.client.infer import sync_client
from swaptron.client.metrics import STATUSES
from swaptron.server.launcher import TritonServer, free_ports
from swaptron.specs import STREAM

pytestmark = [pytest.mark.server, pytest.mark.slow]

SERVERS = 3


def stream_requests(url: str) -> int:
    """Requests the stream ensemble of one server has answered."""
    with sync_client(url) as client:
        stats = client.get_inference_statistics(STREAM, as_json=True)["model_stats"][0]
    return int(stats["inference_stats"]["success"].get("count", 0))


@pytest.fixture(scope="module")
def servers(exported_repository: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[list[TritonServer]]:
    """Three embedded servers on the same repository, started from this thread (each dies with
    the thread that started it: PR_SET_PDEATHSIG follows the thread, not the process)."""
    folder = tmp_path_factory.mktemp("failover")
    started = [TritonServer(exported_repository, ports=free_ports(),
                            log_path=folder / f"triton-{i}.log") for i in range(SERVERS)]
    with ExitStack() as stack:
        for server in started:
            stack.enter_context(server)
        yield started


def stream_command(url: str, report: Path, *extra: str) -> list[str]:
    """`swaptron stream` of the demo video at its own rate, through the stream ensemble."""
    return [sys.executable, "-m", "swaptron", "stream", "--source", str(assets.demo_video()),
            "--url", url, "--no-display", "--quiet", "--report", str(report),
            "--max-failed", "1", "--connect-timeout", "20", *extra]


def test_a_killed_server_fails_its_stream_over_and_loses_no_frame_from_the_count(
        servers: list[TritonServer], tmp_path: Path) -> None:
    url = ",".join(server.grpc_url for server in servers)
    report = tmp_path / "report.json"
    stream = subprocess.Popen(stream_command(url, report, "--realtime"),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    busy: list[TritonServer] = []
    while not busy and time.monotonic() < deadline:
        time.sleep(0.5)
        busy = [server for server in servers if stream_requests(server.grpc_url) > 24]
    assert len(busy) == 1, "the stream should run on exactly one server"
    victim = busy[0]
    survivors = [server for server in servers if server is not victim]
    before_kill = sum(stream_requests(server.grpc_url) for server in survivors)
    os.killpg(victim.pid, signal.SIGKILL)  # the whole server: Triton and its stubs
    output, _ = stream.communicate(timeout=120)
    print(output[-2000:])
    found = json.loads(report.read_text())
    frames = found["frames"]
    # every captured frame is counted exactly once, in a final status
    assert len({frame["index"] for frame in frames}) == len(frames) == found["frames_captured"]
    assert all(frame["status"] in STATUSES for frame in frames)
    assert (found["frames_received"] + found["frames_dropped"] + found["frames_failed"]
            == found["frames_captured"])
    assert found["reconnects"] >= 1
    # the stream went on elsewhere: a survivor answered frames after the kill
    assert sum(stream_requests(server.grpc_url) for server in survivors) - before_kill > 24
    assert found["frames_failed"] <= 10, found["frames_failed"]  # those in flight at the kill
    print(f"failover: {found['frames_received']} received, {found['frames_dropped']} dropped, "
          f"{found['frames_failed']} failed of {found['frames_captured']}")


def test_new_streams_spread_over_the_live_servers(servers: list[TritonServer],
                                                  tmp_path: Path) -> None:
    live = [server for server in servers if server.alive()]
    assert len(live) >= 2
    url = ",".join(server.grpc_url for server in live)
    before = [stream_requests(server.grpc_url) for server in live]
    streams = [subprocess.Popen(stream_command(url, tmp_path / f"report-{i}.json", "--frames",
                                               "12"), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL) for i in range(2 * len(live))]
    for stream in streams:
        assert stream.wait(timeout=180) == 0
    after = [stream_requests(server.grpc_url) for server in live]
    served = [b - a for a, b in zip(before, after, strict=True)]
    print(f"stream requests per live server: {served}")
    assert all(count >= 12 for count in served), served  # every live server took a stream
