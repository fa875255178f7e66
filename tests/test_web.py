"""`swaptron web` in a real browser: Debian's headless Chromium plays Megamind as its camera, the
gateway (the real command, in its own process) streams it through a real Triton, and the page
shows the swapped frames with its counters. Refusals are tried with a raw websocket client."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import cv2
import numpy as np
import psutil
import pytest

from swaptron.assets import project_dir
from swaptron.server.launcher import TritonServer, free_ports
from swaptron.web.browser import CHROMIUM, chromium, write_y4m
from swaptron.web.cli import TOKEN_VARIABLE
from swaptron.web.session import TIMESTAMP

pytestmark = [pytest.mark.server, pytest.mark.slow]

SCREENSHOT = project_dir() / "out" / "web-page.png"  # the README's picture, copied from here


class Gateway:
    """A running `swaptron web --url` process."""

    def __init__(self, url: str, log: Path, *extra: str) -> None:
        self.port = free_ports().http
        self.token = secrets.token_urlsafe(24)
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "swaptron", "web", "--url", url, "--port", str(self.port),
             f"--token={self.token}", "--max-sessions", "1", *extra],
            stdout=log.open("w"), stderr=subprocess.STDOUT)
        self.log = log
        deadline = time.monotonic() + 60
        while "open http" not in log.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                raise RuntimeError(f"the gateway did not start: {log.read_text()}")
            time.sleep(0.2)

    def page_url(self, token: str | None = None) -> str:
        """The page's address with the token."""
        return f"{self.base}/?token={token or self.token}"

    def stop(self) -> None:
        """SIGTERM, and wait."""
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def gateway(faceswap_server: TritonServer, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Gateway]:
    """The gateway in front of the module's server: one session at most, a token."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: `make debs` installs Debian's chromium")
    gateway = Gateway(faceswap_server.grpc_url,
                      tmp_path_factory.mktemp("web") / "gateway.log")
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def camera(megamind_frames: list[np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Megamind frames 100-171 (the man's face) as the fake camera's .y4m."""
    return write_y4m(megamind_frames[100:172], tmp_path_factory.mktemp("camera") / "mm.y4m")


def decode(jpeg_base64: str) -> np.ndarray:
    """A JPEG from the page as a BGR array."""
    return cv2.imdecode(np.frombuffer(base64.b64decode(jpeg_base64), np.uint8), cv2.IMREAD_COLOR)


def face_regions(shape: tuple[int, ...], faces: list[list[float]]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(the core of each face box: its middle 60%, everything beyond the boxes grown by half)."""
    core, near = np.zeros(shape[:2], bool), np.zeros(shape[:2], bool)
    for x1, y1, x2, y2, _score in faces:
        width, height = x2 - x1, y2 - y1
        core[int(y1 + 0.2 * height):int(y2 - 0.2 * height),
             int(x1 + 0.2 * width):int(x2 - 0.2 * width)] = True
        near[max(0, int(y1 - 0.5 * height)):int(y2 + 0.5 * height),
             max(0, int(x1 - 0.5 * width)):int(x2 + 0.5 * width)] = True
    return core, ~near


def wait_for(page: object, condition: str, timeout_s: float = 90.0) -> dict[str, object]:
    """Poll the page's stats until a JS condition on them (`s`) holds."""
    deadline = time.monotonic() + timeout_s
    while True:
        stats = page.evaluate("window.swaptron.stats()")  # type: ignore[attr-defined]
        if page.evaluate(f"(s) => {condition}", stats):  # type: ignore[attr-defined]
            return stats
        if time.monotonic() > deadline:
            raise AssertionError(f"the page never got {condition}: {stats}")
        time.sleep(0.5)


def test_the_page_streams_swapped_frames_and_refuses_a_second_session(
        gateway: Gateway, camera: Path) -> None:
    with chromium(camera) as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.goto(gateway.page_url())
        page.click("#start")
        stats = wait_for(page, "s.received >= 24")
        assert page.locator("#identity option").all_inner_texts() == ["a", "b"]
        assert "faceswap_stream_checked" in stats["status"]
        pair = page.evaluate("window.swaptron.lastPair()")
        assert pair is not None and pair["faces"], pair
        sent, swapped = decode(pair["input"]), decode(pair["output"])
        assert sent.shape == swapped.shape == (528, 720, 3)
        core, outside = face_regions(sent.shape, pair["faces"])
        difference = np.abs(sent.astype(int) - swapped.astype(int)).mean(axis=2)
        print(f"mean difference inside the face {difference[core].mean():.1f}, "
              f"outside {difference[outside].mean():.2f}")
        assert difference[outside].mean() < 1.5  # two JPEG passes, nothing else
        assert difference[core].mean() > max(4.0, 5 * difference[outside].mean())

        # a second session past --max-sessions 1 is told so, and does not hang
        second = browser.new_page()
        second.goto(gateway.page_url())
        second.click("#start")
        busy = wait_for(second, "s.status.includes('server busy')", 20)
        assert busy["sent"] == 0
        second.close()

        page.wait_for_timeout(1000)
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT))
        page.click("#stop")
        final = wait_for(page, "s.status === 'stopped'", 10)
    print(json.dumps({k: v for k, v in final.items() if k != "latencies"}))
    # every sent frame came back, or was dropped for a newer one (Stop waits for the last)
    assert final["failed"] == 0
    assert final["received"] == len(final["latencies"]) >= 24
    assert final["received"] + final["dropped"] == final["sent"]
    assert final["inflight"] == 0
    assert all(0 < latency < 10_000 for latency in final["latencies"])
    assert final["fake_score"] is not None and 0.0 <= final["fake_score"] <= 1.0
    assert "stopped" in final["status"]


async def websocket_answer(gateway: Gateway | str, headers: dict[str, str] | None = None,
                           token: str | None = "own") -> int | str:
    """The HTTP status that refuses an upgrade, or the first text message of a session (a
    gateway of this module with its token, or another one's base URL)."""
    base = gateway if isinstance(gateway, str) else gateway.base
    if token == "own":
        token = None if isinstance(gateway, str) else gateway.token
    query = f"?token={token}" if token else ""
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(f"{base}/ws{query}", headers=headers) as socket:
                message = await socket.receive(timeout=30)
                return str(message.data)
        except aiohttp.WSServerHandshakeError as error:
            return error.status


async def free_slot_seconds(gateway: Gateway, timeout_s: float = 120.0) -> float:
    """Seconds until a new session is welcomed (not told the server is busy)."""
    started = time.monotonic()
    while '"busy"' in str(await websocket_answer(gateway)):
        if time.monotonic() - started > timeout_s:
            break
        await asyncio.sleep(0.2)
    return round(time.monotonic() - started, 2)


async def hostile_session(gateway: Gateway) -> dict[str, str]:
    """A session sending what a page never would; what the gateway answered to each."""
    answers = {"slot free after an ordinary session, s": str(await free_slot_seconds(gateway))}
    async with (aiohttp.ClientSession() as session,
                session.ws_connect(f"{gateway.base}/ws?token={gateway.token}") as socket):
        hello = json.loads((await socket.receive(timeout=30)).data)
        assert hello["type"] == "hello", hello
        await asyncio.sleep(0.1)  # under the rate cap
        await socket.send_bytes(b"\x01\x02")
        answers["short"] = (await socket.receive(timeout=30)).data
        await asyncio.sleep(0.1)  # under the rate cap
        await socket.send_bytes(TIMESTAMP.pack(1.0) + b"not a jpeg" * 10)
        answers["not a JPEG"] = (await socket.receive(timeout=30)).data
        tiny = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))[1].tobytes()
        await asyncio.sleep(0.1)  # under the rate cap
        await socket.send_bytes(TIMESTAMP.pack(2.0) + tiny)
        answers["tiny frame"] = (await socket.receive(timeout=30)).data
        await socket.send_str(json.dumps({"type": "choose", "identity": "nobody"}))
        answers["unknown identity"] = (await socket.receive(timeout=30)).data
        await socket.send_str("{not json")
        answers["not JSON"] = (await socket.receive(timeout=30)).data
        await asyncio.sleep(0.1)  # under the rate cap
        await socket.send_bytes(b"\0" * (3 * 1024 * 1024))
        closing = await socket.receive(timeout=30)
        answers["oversized"] = f"{closing.type.name} {socket.close_code}"
    # the session vanished without a goodbye: its slot is free again within seconds
    answers["slot free after a closed session, s"] = str(await free_slot_seconds(gateway))
    return answers


def test_the_gateway_refuses_what_it_must(gateway: Gateway) -> None:
    assert asyncio.run(websocket_answer(gateway, {"Origin": "http://evil.example"})) == 403
    rebound = {"Host": f"evil.example:{gateway.port}",
               "Origin": f"http://evil.example:{gateway.port}"}
    assert asyncio.run(websocket_answer(gateway, rebound)) == 403  # DNS rebinding
    assert asyncio.run(websocket_answer(gateway, token=None)) == 401
    assert asyncio.run(websocket_answer(gateway, token="x" * 32)) == 401
    own_origin = asyncio.run(websocket_answer(gateway, {"Origin": gateway.base}))
    assert json.loads(own_origin)["type"] == "hello"
    answers = asyncio.run(hostile_session(gateway))
    print(json.dumps(answers, indent=1))
    assert "8-byte timestamp" in answers["short"]
    assert "not a JPEG" in answers["not a JPEG"]
    assert "16x16 pixels" in answers["tiny frame"]
    assert "unknown identity 'nobody'" in answers["unknown identity"]
    assert "a text message must be JSON" in answers["not JSON"]
    assert answers["oversized"].endswith("1009")
    # freed at all (a held slot never frees; the bound only keeps a broken gateway finite)
    assert float(answers["slot free after an ordinary session, s"]) < 120
    assert float(answers["slot free after a closed session, s"]) < 120


def test_the_gateway_forwards_no_triton_api(gateway: Gateway) -> None:
    async def statuses() -> dict[str, int]:
        found = {}
        async with aiohttp.ClientSession() as session:
            for method, path in (("GET", "/v2/repository/index"), ("POST", "/v2/repository/index"),
                                 ("POST", "/v2/models/faceswap/infer"), ("GET", "/v2/health/ready"),
                                 ("POST", "/v2/systemsharedmemory/region/x/register"),
                                 ("GET", "/../pyproject.toml"), ("GET", "/static/../cli.py")):
                async with session.request(method, gateway.base + path) as response:
                    found[f"{method} {path}"] = response.status
        return found

    found = asyncio.run(statuses())
    assert all(status in (404, 405) for status in found.values()), found


def test_a_token_is_required_beyond_loopback(faceswap_server: TritonServer) -> None:
    result = subprocess.run([sys.executable, "-m", "swaptron", "web", "--url",
                             faceswap_server.grpc_url, "--host", "0.0.0.0"],
                            capture_output=True, text=True, timeout=60,
                            env={k: v for k, v in os.environ.items() if k != TOKEN_VARIABLE})
    assert result.returncode == 1
    assert "--host 0.0.0.0 reaches beyond this machine: pass --token" in result.stdout


def test_web_alone_starts_the_embedded_server_and_stops_it(exported_repository: Path,
                                                           tmp_path: Path) -> None:
    port = free_ports().http
    log = tmp_path / "web.log"
    web = subprocess.Popen([sys.executable, "-m", "swaptron", "web", "--pair", "megamind",
                            "--model-repository", str(exported_repository), "--port", str(port),
                            "--output-dir", str(tmp_path)],
                           stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while "open http" not in log.read_text():
            assert web.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        servers = [p for p in psutil.Process(web.pid).children(recursive=True)
                   if p.name() == "tritonserver"]
        assert len(servers) == 1
        hello = json.loads(str(asyncio.run(websocket_answer(f"http://127.0.0.1:{port}"))))
        assert hello["identities"] == ["a", "b"]
    finally:
        web.terminate()
        assert web.wait(timeout=60) == 0, log.read_text()
    assert not servers[0].is_running()
    assert "stopped" in log.read_text()
