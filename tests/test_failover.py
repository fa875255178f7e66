"""Streams over several servers: gRPC round_robin over a --url of three embedded servers on
loopback. A stream stays on one server; when that server is killed mid-run the stream reconnects
to a live one with a new sequence, and every frame is still counted once; new streams spread over
the survivors."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from swaptron import assets
from swaptron.client.infer import (
    SequenceFlags,
    frame_request,
    new_sequence_id,
    open_channel,
    open_stub,
    stream_answers,
    sync_client,
)
from swaptron.client.metrics import STATUSES
from swaptron.server.launcher import TritonServer, free_ports
from swaptron.specs import FACES, STREAM

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
    deadline = time.monotonic() + 300  # a loaded machine starts the client slowly
    busy: list[TritonServer] = []
    while not busy and time.monotonic() < deadline:
        time.sleep(0.5)
        busy = [server for server in servers if stream_requests(server.grpc_url) > 24]
    assert len(busy) == 1, "the stream should run on exactly one server"
    victim = busy[0]
    survivors = [server for server in servers if server is not victim]
    before_kill = sum(stream_requests(server.grpc_url) for server in survivors)
    os.killpg(victim.pid, signal.SIGKILL)  # the whole server: Triton and its stubs
    output, _ = stream.communicate(timeout=300)
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


def served_since(before: list[int], live: list[TritonServer], expected: int) -> list[int]:
    """Each server's stream requests since `before`, read until they add up to `expected` (a
    server counts a request in its statistics just after it answered it) or for 60 s."""
    deadline = time.monotonic() + 60
    while True:
        after = [stream_requests(server.grpc_url) for server in live]
        served = [b - a for a, b in zip(before, after, strict=True)]
        if sum(served) >= expected or time.monotonic() > deadline:
            return served
        time.sleep(0.2)


async def short_streams(url: str, frame: np.ndarray, streams: int, frames: int) -> None:
    """`streams` streams one after the other on one channel (as the web gateway holds one),
    each a sequence of `frames` frames."""
    async with open_channel(url) as channel:
        stub = open_stub(channel)
        # round_robin picks among the servers it has connected to: wait until every one has
        # answered a call on this channel before counting streams
        await channel.channel_ready()
        for _ in range(4 * streams):
            await stub.ServerReady(service_pb2.ServerReadyRequest())
        await asyncio.sleep(1.0)
        for _ in range(streams):
            sequence_id = new_sequence_id()

            async def requests(sequence_id: int = sequence_id
                               ) -> AsyncIterator[service_pb2.ModelInferRequest]:
                for index in range(frames):
                    flags = SequenceFlags(sequence_id, start=index == 0,
                                          end=index == frames - 1)
                    yield frame_request(STREAM, str(index), frame, [FACES], sequence=flags)

            answers = [answer async for answer in stream_answers(stub, requests())]
            assert [a.error for a in answers] == [None] * frames


def test_new_streams_spread_over_the_live_servers(servers: list[TritonServer],
                                                  megamind_frames: list[np.ndarray]) -> None:
    live = [server for server in servers if server.alive()]
    assert len(live) >= 2
    url = ",".join(server.grpc_url for server in live)
    before = [stream_requests(server.grpc_url) for server in live]
    asyncio.run(short_streams(url, megamind_frames[120], 3 * len(live), 3))
    served = served_since(before, live, expected=9 * len(live))
    print(f"stream requests per live server: {served}")
    assert sum(served) == 9 * len(live)
    assert all(count % 3 == 0 for count in served), served  # each stream stayed on one server
    assert min(served) >= 6, served  # round robin: at least two of the three streams each
