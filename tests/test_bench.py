"""`swaptron bench` for real: a short run against the embedded server, then its files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from swaptron.benchmarks import report, targets
from swaptron.cli import main
from swaptron.export.repository import parse_config

from helpers import processes_using

pytestmark = [pytest.mark.server, pytest.mark.slow]

REQUIRED_BASELINES = ("in_process_fps", "serial_fps", "stream_fps", "stream_p95_ms",
                      "realtime_24_fps", "realtime_24_p95_ms")
ROW_KEYS = ("model", "concurrency", "throughput", "p50_ms", "p95_ms", "p99_ms")


@pytest.fixture(scope="module")
def bench_run(exported_repository: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[Path, Path, dict]:
    """One short bench: both variants, concurrency 1, one-second windows and client runs."""
    root = tmp_path_factory.mktemp("bench")
    output, work = root / "results", root / "work"
    code = main(["bench", "--quick", "--seconds", "1", "--concurrency", "1",
                 "--variants", "default,no-batching", "--output-dir", str(output),
                 "--work-dir", str(work), "--model-repository", str(exported_repository)])
    assert code == 0
    return output, work, json.loads((output / "latest.json").read_text())


def test_latest_json_has_the_required_keys_and_sane_values(bench_run: tuple[Path, Path, dict]
                                                           ) -> None:
    output, _, results = bench_run
    assert {"host", "date", "perf_analyzer", "baselines", "targets", "profile"} <= set(results)
    dated = output / f"{results['host']}-{results['date']}.json"
    assert dated.read_text() == (output / "latest.json").read_text()
    assert results["command"].startswith("swaptron bench --quick")
    assert results["hardware"]["logical_cores"] >= 1 and results["hardware"]["cpu_model"]
    models = {(row["variant"], row["model"]) for row in results["perf_analyzer"]}
    assert {("default", m) for m in ("faceswap", "detector", "landmarker", "swapper")} <= models
    assert ("no-batching", "faceswap") in models
    for row in results["perf_analyzer"]:
        assert set(ROW_KEYS) <= set(row)
        assert row["concurrency"] == 1 and row["throughput"] > 0
        assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]
    baselines = results["baselines"]
    for key in REQUIRED_BASELINES:
        assert baselines[key] > 0, key
    assert baselines["realtime_24_fps"] <= 24 * 1.25  # a paced source cannot be beaten
    assert 0 <= baselines["realtime_24_dropped_pct"] <= 100
    assert results["profile"]["clients"]["stream"].keys() >= {"detector", "landmarker",
                                                              "swapper"}


def test_perf_analyzer_accepted_the_real_input_data(bench_run: tuple[Path, Path, dict]) -> None:
    output, work, results = bench_run
    swapper = json.loads((work / "input-data" / "swapper.json").read_text())
    first = swapper["data"][0]
    assert set(first) == {"FRAME", "LANDMARKS", "PRESENCE", "TARGET", "LARGEST_ONLY"}
    assert first["FRAME"]["shape"] == [results["frames"]["height"], results["frames"]["width"], 3]
    assert len(swapper["data"]) == len(results["frames"]["perf_analyzer_frames"]) > 1
    assert not [e for e in results["errors"] if "model" in e]
    header = (output / "csv" / "default-swapper.csv").read_text().splitlines()[0]
    assert "Inferences/Second" in header


def test_variants_are_generated_and_their_memory_measured(bench_run: tuple[Path, Path, dict]
                                                          ) -> None:
    _, work, results = bench_run
    variants = {entry["name"]: entry for entry in results["variants"]}
    assert set(variants) == {"default", "no-batching"}
    for entry in variants.values():
        assert entry["status"] == "measured"
        assert entry["memory_ready"]["rss_mb"] > 0 and entry["rss_peak_mb"] > 0
        assert entry["memory_ready"]["processes"] >= 4  # tritonserver and three backend stubs
    batched = parse_config(work / "variants" / "default" / "detector" / "config.pbtxt")
    unbatched = parse_config(work / "variants" / "no-batching" / "detector" / "config.pbtxt")
    assert batched.HasField("dynamic_batching") and not unbatched.HasField("dynamic_batching")
    assert processes_using(work) == []  # every server of the run is gone


def test_targets_are_checked_against_their_bars(bench_run: tuple[Path, Path, dict]) -> None:
    _, _, results = bench_run
    found = {target["name"]: target for target in results["targets"]}
    assert set(found) == {bar.name for bar in targets.BARS}
    for target in found.values():
        assert isinstance(target["met"], bool), target
        passes = (target["value"] >= target["bar"] if target["comparison"] == ">="
                  else target["value"] <= target["bar"])
        assert target["met"] == passes
        assert (target["gap"] is None) == target["met"]
    ratio = results["baselines"]["stream_fps"] / results["baselines"]["in_process_fps"]
    assert found["unpaced_chain_ratio"]["value"] == pytest.approx(ratio, abs=1e-3)
    sizes = results["frame_sizes"]
    assert sizes["face_found_1920x1080"] is True  # the padded frame still has its face
    p50 = sizes["p50_ms"]
    assert found["frame_1080_cost_ratio"]["value"] == pytest.approx(
        p50["frame-1920x1080"] / p50["frame-720x528"], abs=1e-2)
    aggregate = results["aggregate_realtime"]
    assert aggregate["streams"] == 4 and len(aggregate["fps"]) == aggregate["streams"]
    assert aggregate["stream_fps"] == pytest.approx(
        24 * results["baselines"]["in_process_fps"] / 80, abs=0.06)
    assert aggregate["single_stream_p95_ms"] > 0
    assert found["aggregate_realtime_ratio"]["value"] == pytest.approx(
        aggregate["qualifying_fps"] / results["baselines"]["in_process_fps"], abs=1e-3)


def test_met_and_missed_targets_say_by_how_much() -> None:
    latency = next(bar for bar in targets.BARS if bar.name == "realtime_24_p95_ms")
    unpaced = next(bar for bar in targets.BARS if bar.name == "unpaced_fps")
    assert targets.check(latency, 42.0).met is True
    missed = targets.check(latency, 60.0)
    assert missed.met is False and missed.gap == pytest.approx(10.0)
    assert missed.gap_text.startswith("over by 10 ms")
    short = targets.check(unpaced, 24.0)
    assert short.met is False and short.gap == pytest.approx(6.0)
    assert short.gap_text == "short by 6 FPS (80% of the bar)"
    assert targets.check(unpaced, None).met is None
    values = targets.measured_values({"stream_fps": 40.0, "serial_fps": 10.0,
                                      "in_process_fps": 20.0}, 15.0, 2000.0)
    outcome = {t["name"]: t["met"] for t in targets.evaluate(values)}
    assert outcome["unpaced_chain_ratio"] is True and outcome["serving_ratio"] is False
    assert outcome["server_rss_mb"] is False and outcome["realtime_24_p95_ms"] is None


def test_markdown_plots_and_readme_block(bench_run: tuple[Path, Path, dict],
                                         tmp_path: Path) -> None:
    output, _, results = bench_run
    text = (output / "latest.md").read_text()
    for heading in ("## Targets", "## Baselines", "## perf_analyzer", "## Config variants",
                    "## Profile"):
        assert heading in text
    for bar in targets.BARS:
        assert bar.description in text
    for name in (report.THROUGHPUT_PNG, report.LATENCY_PNG):
        data = (output / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and 10_000 < len(data) < 200_000
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{report.README_BEGIN}\nold\n{report.README_END}\n\nafter\n")
    assert report.update_readme(readme, results, output)
    updated = readme.read_text()
    assert "old" not in updated and updated.endswith("after\n")
    assert "## Targets" not in updated and "| target | value |" in updated
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", updated)
    assert len(links) == 2 and all((readme.parent / link).is_file() for link in links)


def test_per_network_table_at_batch_one_and_eight(exported_repository: Path,
                                                  megamind_frames: list, tmp_path: Path) -> None:
    from swaptron.benchmarks import models

    rows = models.measure(exported_repository, megamind_frames, threads=(1,), seconds=0.05)
    assert {(r["network"], r["batch"]) for r in rows} == {
        (n, b) for n in ("detector", "landmarker", "swapper") for b in (1, 8)}
    for row in rows:
        assert row["ms_per_call"] > 0
        assert row["ms_per_frame"] == pytest.approx(row["ms_per_call"] / row["batch"], abs=0.01)
    models.write(rows, tmp_path, "host", "2026-01-01")
    table = (tmp_path / "models.md").read_text()
    assert "| swapper | 1 |" in table
    assert json.loads((tmp_path / "models.json").read_text())["rows"] == rows
