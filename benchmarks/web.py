"""The page, glass to glass (`swaptron bench --web`): headless Chromium plays Megamind as its
camera at 24 FPS into `swaptron web` for a fixed time; the page's own counters give latency from
its capture of a frame to its display of the swapped frame (JPEG encoding in the page, decoding
and re-encoding in the gateway, and decoding and drawing in the page all included). The Python
client streams the same frames at the same rate through the same server in the same run, and the
in-process chain's FPS scales the bar (benchmarks/targets.py).

Chromium, the gateway and Triton share the machine's cores, as they would on a laptop serving its
own webcam.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from swaptron import assets
from swaptron.benchmarks import inputs
from swaptron.benchmarks.targets import Bar, check, scaled_bar
from swaptron.client.metrics import summary
from swaptron.export.build import export_repository
from swaptron.export.repository import ServingOptions
from swaptron.networks.pipeline import PipelineOptions
from swaptron.server.launcher import TritonServer, free_ports
from swaptron.server.ort_session import OrtChain
from swaptron.specs import STREAM_CHECKED
from swaptron.web.browser import chromium, write_y4m

FPS = 24
PAGE_FPS_SHARE = 0.9  # of the camera's frames the page shows
PAGE_EXTRA_MS = 40.0  # the page's p95 glass to glass over the Python client's p95
CLIENT_DROPPED_PCT = 2.0  # the Python client's drops on the checked stream
CLIP = slice(100, 172)  # Megamind frames with the man's face, looped by the fake camera
BAR = Bar("web_p95_ms", "the page at 24 FPS: p95 glass-to-glass latency", 80.0, "ms",
          higher_is_better=False, scaled=True)


def start_gateway(url: str, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`swaptron web --url` in its own process, once it listens: (process, port)."""
    port = free_ports().http
    process = subprocess.Popen([sys.executable, "-m", "swaptron", "web", "--url", url,
                                "--port", str(port)], stdout=log.open("wb"),
                               stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while b"open http" not in log.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the gateway did not start: {log.read_text()}")
        time.sleep(0.2)
    return process, port


def page_run(port: int, camera: Path, seconds: float) -> dict[str, object]:
    """Stream from the page for `seconds`; its counters and latency percentiles."""
    with chromium(camera) as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.goto(f"http://127.0.0.1:{port}/?fps={FPS}")
        page.click("#start")
        page.wait_for_function("window.swaptron.stats().received > 0", timeout=60_000)
        started = page.evaluate("window.swaptron.stats()")
        time.sleep(seconds)
        page.click("#stop")
        page.wait_for_function("window.swaptron.stats().status === 'stopped'", timeout=10_000)
        ended = page.evaluate("window.swaptron.stats()")
    latencies = np.array(ended["latencies"][len(started["latencies"]):])
    counts = {key: int(ended[key]) - int(started[key])
              for key in ("sent", "received", "dropped", "failed", "skipped")}
    offered = counts["sent"] + counts["skipped"]
    return {**counts, "seconds": seconds, "fps": round(counts["received"] / seconds, 2),
            "dropped_pct": round(100 * (offered - counts["received"]) / max(offered, 1), 1),
            "glass_to_glass_ms": summary(latencies),
            "gateway_wait_p50_ms": ended["gateway_wait_p50"],
            "triton_round_trip_ms": {"p50": ended["triton_p50"], "p95": ended["triton_p95"]}}


def client_run(url: str, folder: Path, seconds: float, report: Path) -> dict[str, object]:
    """The Python client on the same frames at the same rate: its report's figures."""
    subprocess.run([sys.executable, "-m", "swaptron", "stream", "--source", str(folder),
                    "--realtime", "--fps", str(FPS), "--loop", "--frames",
                    str(int(seconds * FPS)), "--url", url, "--check", "--no-display",
                    "--quiet", "--report", str(report), "--max-failed", "1"],
                   check=True, capture_output=True)
    found = json.loads(report.read_text())
    captured = int(found["frames_captured"])
    return {"fps": found["fps"], "received": found["frames_received"],
            "dropped_pct": round(100 * (captured - int(found["frames_received"]))
                                 / max(captured, 1), 1),
            "latency_ms": found["latency_ms"]}


def run_web(output: Path, work: Path, seconds: float = 30.0) -> dict[str, object]:
    """Export, serve, measure the page and the client; write web.json and web.md."""
    repository = work / "repository"
    export_repository(PipelineOptions(), ServingOptions(), repository, progress=lambda _: None)
    video = assets.read_frames(assets.demo_video())
    clip = video[CLIP]
    camera = write_y4m(clip, work / "camera.y4m", FPS)
    folder = work / "frames"
    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(clip):
        cv2.imwrite(str(folder / f"{index:04d}.png"), frame)
    chain = OrtChain.open(repository)
    chain_fps = float(inputs.in_process_baseline(chain, clip, 8.0)["fps"])
    del chain
    with TritonServer(repository, ports=free_ports(), log_path=work / "triton.log") as server:
        gateway, port = start_gateway(server.grpc_url, work / "gateway.log")
        try:
            page = page_run(port, camera, seconds)
        finally:
            gateway.terminate()
            gateway.wait(timeout=30)
        client = client_run(server.grpc_url, folder, seconds, work / "client-report.json")
    p95 = page["glass_to_glass_ms"]["p95"]  # type: ignore[index]
    results = {"model": STREAM_CHECKED, "fps_offered": FPS, "in_process_chain_fps": chain_fps,
               "page": page, "python_client": client,
               "target": asdict(check(scaled_bar(BAR, chain_fps), p95)),
               "bar_at_80_fps": BAR.bar, "targets": same_run_targets(page, client)}
    output.mkdir(parents=True, exist_ok=True)
    (output / "web.json").write_text(json.dumps(results, indent=1) + "\n")
    (output / "web.md").write_text(web_markdown(results))
    return results


def same_run_targets(page: dict[str, Any], client: dict[str, Any]) -> list[dict[str, object]]:
    """The page's targets against this run alone: it shows at least 90% of the camera's frames,
    its p95 glass to glass is within 40 ms of the Python client's p95, and the Python client
    on the checked stream drops at most 2%."""
    client_p95 = float(client["latency_ms"]["p95"])
    rows = [("page_fps", "page FPS", float(page["fps"]), ">=", PAGE_FPS_SHARE * FPS),
            ("page_p95_ms", "page p95 glass to glass (client p95 + 40 ms)",
             float(page["glass_to_glass_ms"]["p95"]), "<=", client_p95 + PAGE_EXTRA_MS),
            ("client_dropped_pct", "Python client dropped %", float(client["dropped_pct"]), "<=",
             CLIENT_DROPPED_PCT)]
    return [{"name": name, "description": words, "value": value, "comparison": comparison,
             "bar": round(bar, 2),
             "met": value >= bar if comparison == ">=" else value <= bar}
            for name, words, value, comparison, bar in rows]


def web_markdown(results: dict[str, object]) -> str:
    """The page beside the Python client, and the target."""
    page: dict = results["page"]  # type: ignore[assignment]
    client: dict = results["python_client"]  # type: ignore[assignment]
    target: dict = results["target"]  # type: ignore[assignment]
    g2g, latency = page["glass_to_glass_ms"], client["latency_ms"]
    lines = [
        "# The page, glass to glass", "",
        f"`swaptron bench --web`: Debian's headless Chromium plays Megamind frames "
        f"{CLIP.start}-{CLIP.stop - 1} as its camera at {results['fps_offered']} FPS into "
        f"`swaptron web` ({results['model']}) for {page['seconds']:.0f} s; the Python client "
        "streams the same frames at the same rate through the same server right after. "
        f"In-process chain on this machine: {results['in_process_chain_fps']} FPS.", "",
        "| client | FPS | p50 ms | p95 ms | p99 ms | dropped % |", "|---|---|---|---|---|---|",
        f"| page (glass to glass: capture in the page to display in the page) | {page['fps']} | "
        f"{g2g['p50']} | {g2g['p95']} | {g2g['p99']} | {page['dropped_pct']} |",
        f"| Python client (capture to receive) | {client['fps']} | {latency['p50']} | "
        f"{latency['p95']} | {latency['p99']} | {client['dropped_pct']} |", "",
        f"Page: sent {page['sent']}, received {page['received']}, dropped by the gateway for a "
        f"newer frame {page['dropped']}, failed {page['failed']}, not sent because the window was "
        f"full (frames encoding or awaiting their answer) or the socket still sending "
        f"{page['skipped']}. Gateway: waiting for a window "
        f"slot p50 {page['gateway_wait_p50_ms']} ms; Triton round trip p50 "
        f"{page['triton_round_trip_ms']['p50']} ms, p95 {page['triton_round_trip_ms']['p95']} ms.",
        "",
        f"Target: {target['description']} {target['comparison']} {target['bar']} ms on this "
        f"machine ({results['bar_at_80_fps']} ms where the chain runs 80 FPS): "
        f"{'met' if target['met'] else 'MISSED'} ({target['value']} ms; {target['gap_text']}).",
        "", "Targets in this run alone:", "", "| target | value | bar | result |",
        "|---|---|---|---|",
        *(f"| {row['description']} | {row['value']} | {row['comparison']} {row['bar']} | "
          f"{'met' if row['met'] else 'MISSED'} |"
          for row in results.get("targets", [])),  # type: ignore[union-attr]
    ]
    return "\n".join(lines) + "\n"
