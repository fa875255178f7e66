"""Do requests for different identities still batch? perf_analyzer on `faceswap` with every
request naming the same identity, then with requests alternating between identities
(`swaptron bench --identities`).

How they batch: the selector turns each request's IDENTITY into TARGET, one index per frame, and
the swapper's dynamic batcher groups requests by shape only, so frames for different identities
share a batch. The swapper graph holds every decoder: on the CPU graph each decoder runs on the
faces whose index names it, on the fixed-shape TensorRT graph every decoder runs on every face
and a select keeps the named one. Measured per case: throughput, p50 and p95 at each
concurrency, and the swapper's mean batch size from the server's statistics.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from swaptron import assets
from swaptron.benchmarks import inputs, perf_analyzer
from swaptron.export.build import export_repository
from swaptron.export.repository import ServingOptions
from swaptron.networks.pipeline import PipelineOptions
from swaptron.server.launcher import TritonServer, free_ports
from swaptron.server.ort_session import OrtChain
from swaptron.specs import ENSEMBLE, FRAME, IDENTITY, SELECTOR, SWAPPER

CONCURRENCY = (1, 4, 8)
FRAMES = 6


def identity_entry(name: str) -> dict[str, object]:
    """IDENTITY in perf_analyzer's JSON: one string, with the ensemble's batch axis."""
    return {"content": [name], "shape": [1, 1]}


def write_cases(frames: list[np.ndarray], identities: list[str], folder: Path
                ) -> dict[str, Path]:
    """Input data: every request naming the default (last) identity, and requests cycling
    through all identities over the same frames."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = {"one identity": [identities[-1]] * len(identities),
             "mixed identities": identities}
    files = {}
    for case, names in cases.items():
        steps = [{FRAME: inputs.entry(frame[None]), IDENTITY: identity_entry(name)}
                 for frame in frames for name in names]
        path = folder / f"{case.replace(' ', '-')}.json"
        path.write_text(json.dumps({"data": steps}))
        files[case] = path
    return files


def batches(url: str, model: str) -> tuple[int, int]:
    """(inferences, executions) the server has counted for a model."""
    with grpcclient.InferenceServerClient(url) as client:
        stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))


def run_identities(output: Path, work: Path) -> dict[str, object]:
    """Export, serve and measure both cases; write identities.json and identities.md."""
    repository = work / "repository"
    export_repository(PipelineOptions(), ServingOptions(), repository, progress=lambda _: None)
    chain = OrtChain.open(repository)
    video = assets.read_frames(assets.demo_video())
    frames = [video[i] for i in inputs.one_face_frames(chain, video, FRAMES)]
    with TritonServer(repository, ports=free_ports(), log_path=work / "triton.log") as server:
        with grpcclient.InferenceServerClient(server.grpc_url) as client:
            config = client.get_model_config(SELECTOR, as_json=True)["config"]
        identities = config["parameters"]["identities"]["string_value"].split(",")
        files = write_cases(frames, identities, work / "input-data")
        results: dict[str, object] = {"identities": identities, "frames": len(frames),
                                      "concurrency": list(CONCURRENCY), "cases": {}}
        for case, data in files.items():
            before = batches(server.grpc_url, SWAPPER)
            rows = perf_analyzer.run(ENSEMBLE, server.grpc_url,
                                     work / f"{data.stem}.csv", concurrency=CONCURRENCY,
                                     input_data=data)
            after = batches(server.grpc_url, SWAPPER)
            executions = max(after[1] - before[1], 1)
            results["cases"][case] = {  # type: ignore[index]
                "rows": [asdict(row) for row in rows],
                "swapper_mean_batch": round((after[0] - before[0]) / executions, 2)}
    output.mkdir(parents=True, exist_ok=True)
    (output / "identities.json").write_text(json.dumps(results, indent=1) + "\n")
    (output / "identities.md").write_text(identities_markdown(results))
    return results


def identities_markdown(results: dict[str, object]) -> str:
    """One row per case and concurrency, and the ratio mixed / one identity."""
    cases: dict[str, dict[str, object]] = results["cases"]  # type: ignore[assignment]
    lines = ["# Identities per request: one identity against mixed identities", "",
             f"`swaptron bench --identities`: perf_analyzer on `{ENSEMBLE}` over "
             f"{results['frames']} one-face Megamind frames, each sent naming "
             f"{' and '.join(results['identities'])}.", "",  # type: ignore[arg-type]
             "| case | concurrency | frames/s | p50 ms | p95 ms | swapper mean batch |",
             "|---|---|---|---|---|---|"]
    for case, found in cases.items():
        for row in found["rows"]:  # type: ignore[attr-defined]
            lines.append(f"| {case} | {row['concurrency']} | {row['throughput']:.1f} | "
                         f"{row['p50_ms']:.1f} | {row['p95_ms']:.1f} | "
                         f"{found['swapper_mean_batch']} |")
    one, mixed = (cases[c]["rows"] for c in ("one identity", "mixed identities"))
    ratios = [f"c{a['concurrency']}: {b['throughput'] / a['throughput']:.2f}"  # type: ignore[index]
              for a, b in zip(one, mixed, strict=True)]  # type: ignore[call-overload]
    lines += ["", f"Throughput mixed / one identity: {', '.join(ratios)}."]
    return "\n".join(lines) + "\n"
