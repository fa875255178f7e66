"""`swaptron bench --against REF`: the working tree against a reference commit, side by side.

REF's source is unpacked beside the checkout (build/against/<sha>/src) and runs on this
environment's packages with its own code first on PYTHONPATH; it exports its own repository. Both
builds serve at once, and the same stream runs are made alternately (REF, HEAD, REF, HEAD), so
a noisy machine moves both alike. The ratios HEAD/REF are what the bars read.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tarfile
import tomllib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from swaptron.assets import CHECKOUT, demo_video

READY_TIMEOUT_S = 900.0  # a first export of REF takes minutes on 2 cores
RUNS = {"unpaced": (), "realtime_24": ("--realtime", "--fps", "24")}
CONCURRENT_STREAMS = 4  # realtime streams at once, each offered CONCURRENT_SHARE of the build's
CONCURRENT_SHARE = 0.225  # own unpaced FPS: 90% of what one unpaced stream takes, in all

Progress = Callable[[str], None]


class AgainstError(RuntimeError):
    """REF cannot be built or served; the message names what failed."""


@dataclass(frozen=True)
class Build:
    """A source tree to measure and the environment its commands run in."""

    name: str
    root: Path
    env: dict[str, str]
    export_args: tuple[str, ...] = ()  # added to its `swaptron export`
    repository: Path | None = None  # where it exports to (None: its own model_repository)

    def command(self, *args: str) -> list[str]:
        """`swaptron ARGS` of this build."""
        return [sys.executable, "-m", "swaptron", *args]


def git(*args: str) -> str:
    """Output of a git command in the checkout; AgainstError naming it when it fails."""
    result = subprocess.run(["git", "-C", str(CHECKOUT), *args], capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        raise AgainstError(f"git {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout.strip()


def link_packages(source: Path) -> None:
    """Make REF's package-dir mapping (swaptron.client = client/ ...) importable from source:
    a link swaptron/<name> -> ../<folder> for each subpackage."""
    mapping = tomllib.loads((source / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"]
    for package, folder in mapping.items():
        parts = package.split(".")
        if len(parts) == 2 and parts[0] == "swaptron":
            link = source / "swaptron" / parts[1]
            if not link.exists():
                link.symlink_to(Path("..") / folder)


def reference_build(ref: str, work: Path) -> Build:
    """REF unpacked (once per commit) into work/<sha>/src, ready to run."""
    sha = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    source = work / sha[:12] / "src"
    if not (source / ".unpacked").is_file():
        source.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(CHECKOUT), "archive", sha],
                                 capture_output=True, check=True).stdout
        archive_path = source.parent / "src.tar"
        archive_path.write_bytes(archive)
        with tarfile.open(archive_path) as tar:
            tar.extractall(source, filter="data")
        archive_path.unlink()
        link_packages(source)
        (source / ".unpacked").write_text(sha + "\n")
    env = dict(os.environ, PYTHONPATH=str(source))
    return Build(f"REF {ref} ({sha[:7]})", source, env)


def head_build(work: Path, export_args: tuple[str, ...] = ()) -> Build:
    """The working tree, as installed in this environment; exported with `export_args` into
    work/head-repository when there are any (the committed repository stays as it is)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if not export_args:
        return Build("HEAD (working tree)", CHECKOUT, env)
    return Build(f"HEAD (working tree) exported with {' '.join(export_args)}", CHECKOUT, env,
                 export_args, work / "head-repository")


@contextmanager
def serving(build: Build, ports: tuple[int, int, int], log: Path, say: Progress
            ) -> Iterator[str]:
    """Export the build's default repository, serve it; yields its gRPC address."""
    repository = build.repository or build.root / "model_repository"
    say(f"{build.name}: export")
    export = build.command("export", *build.export_args) + (
        ["--output", str(repository)] if build.repository else [])
    exported = subprocess.run(export, env=build.env, cwd=build.root, capture_output=True,
                              text=True, check=False)
    if exported.returncode != 0:
        raise AgainstError(f"{build.name}: `swaptron export` failed: "
                           f"{(exported.stdout + exported.stderr).strip()[-800:]}")
    http, grpc, metrics = ports
    command = build.command("serve", "--model-repository", str(repository), "--http-port",
                            str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
                            "--log-file", str(log))
    with subprocess.Popen(command, env=build.env, cwd=build.root, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, start_new_session=True) as server:
        try:
            wait_ready(server, build.name)
            say(f"{build.name}: serving on 127.0.0.1:{grpc}")
            yield f"127.0.0.1:{grpc}"
        finally:
            stop(server)


def wait_ready(server: subprocess.Popen[str], name: str) -> None:
    """Until `swaptron serve` prints its ready line; AgainstError with its output if it exits."""
    output = server.stdout
    if output is None:
        raise AgainstError(f"{name}: the server's output is not readable")
    lines = []
    for line in output:
        lines.append(line)
        if line.startswith("ready:"):
            return
    raise AgainstError(f"{name}: `swaptron serve` exited: {''.join(lines)[-800:]}")


def stop(server: subprocess.Popen[str]) -> None:
    """SIGINT the server's group, then SIGKILL what is left after a minute."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)


def stream_command(build: Build, url: str, extra: tuple[str, ...], frames: int, report: Path
                   ) -> list[str]:
    """`swaptron stream` of the demo video through the build's default ensemble."""
    return build.command("stream", "--source", str(demo_video()), "--url", url, "--no-display",
                         "--quiet", "--frames", str(frames), "--report", str(report), *extra)


def read_report(build: Build, report: Path, output: str) -> dict[str, float]:
    """FPS, p95, dropped share and each step's server time per frame of a stream's report."""
    if not report.is_file():
        raise AgainstError(f"{build.name}: `swaptron stream` wrote no report: {output[-800:]}")
    found = json.loads(report.read_text())
    captured = max(int(found["frames_captured"]), 1)
    sample = {"fps": float(found["fps"]), "p95_ms": float(found["latency_ms"]["p95"]),
              "dropped_pct": 100.0 * int(found["frames_dropped"]) / captured}
    # each step's server time per frame: its mean time per request x its requests per frame
    answered = max(int(found["frames_received"]), 1)
    for model, entry in (found.get("server") or {}).get("models", {}).items():
        sample[f"step_ms:{model}"] = round(
            float(entry["request_ms"]) * int(entry["requests"]) / answered, 2)
    return sample


def stream_run(build: Build, url: str, extra: tuple[str, ...], frames: int, report: Path
               ) -> dict[str, float]:
    """One stream; its figures."""
    result = subprocess.run(stream_command(build, url, extra, frames, report), env=build.env,
                            cwd=build.root, capture_output=True, text=True, check=False,
                            timeout=600)
    return read_report(build, report, result.stdout + result.stderr)


def concurrent_runs(build: Build, url: str, fps: float, frames: int, work: Path,
                    stream_options: tuple[str, ...] = ()) -> dict[str, object]:
    """CONCURRENT_STREAMS realtime streams offered `fps` each, at once, beside one stream
    alone at that rate: each stream's drops and its p95 over the lone stream's."""
    extra = ("--realtime", "--fps", f"{fps:.2f}", *stream_options)
    alone = stream_run(build, url, extra, frames, work / "alone.json")
    reports = [work / f"stream-{index}.json" for index in range(CONCURRENT_STREAMS)]
    running = [subprocess.Popen(stream_command(build, url, extra, frames, report),
                                env=build.env, cwd=build.root, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for report in reports]
    outputs = [process.communicate(timeout=600)[0] for process in running]
    streams = [read_report(build, report, output)
               for report, output in zip(reports, outputs, strict=True)]
    return {"fps_offered_each": round(fps, 2), "alone_p95_ms": alone["p95_ms"],
            "fps": [s["fps"] for s in streams], "p95_ms": [s["p95_ms"] for s in streams],
            "dropped_pct": [round(s["dropped_pct"], 2) for s in streams],
            "worst_dropped_pct": round(max(s["dropped_pct"] for s in streams), 2),
            "worst_p95_over_alone": round(max(s["p95_ms"] for s in streams)
                                          / max(alone["p95_ms"], 1e-9), 2)}


def measure(ref: str, work: Path, rounds: int, frames: int, say: Progress,
            stream_options: tuple[str, ...] = (), head_export: tuple[str, ...] = ()
            ) -> dict[str, object]:
    """Both builds served at once; one unrecorded unpaced warm-up stream each (REF, HEAD: a
    cold server's first stream runs slower), then each run alternates REF, HEAD over `rounds`
    rounds; `stream_options` go to every stream (`--check`: the checked stream), `head_export`
    to HEAD's export (`--dfm ...`: DFMs loaded; `--no-mark`)."""
    from swaptron.server.launcher import free_ports

    builds = (reference_build(ref, work), head_build(work, head_export))
    samples: dict[str, dict[str, list[dict[str, float]]]] = {
        b.name: {run: [] for run in RUNS} for b in builds}
    with ExitStack() as stack:
        urls = {}
        for index, build in enumerate(builds):
            ports = free_ports()
            urls[build.name] = stack.enter_context(serving(
                build, (ports.http, ports.grpc, ports.metrics), work / f"triton-{index}.log", say))
        warmup = {}
        for index, build in enumerate(builds):
            sample = stream_run(build, urls[build.name], (*RUNS["unpaced"], *stream_options),
                                frames, work / f"warmup-{index}.json")
            warmup[build.name] = sample
            say(f"warm-up {build.name}: {sample['fps']:.1f} FPS (not recorded)")
        for round_index in range(rounds):
            for run, extra in RUNS.items():
                for index, build in enumerate(builds):
                    report = work / f"r{round_index}-{run}-{index}.json"
                    sample = stream_run(build, urls[build.name], (*extra, *stream_options),
                                        frames, report)
                    samples[build.name][run].append(sample)
                    say(f"round {round_index + 1} {run} {build.name}: {sample['fps']:.1f} FPS, "
                        f"p95 {sample['p95_ms']:.0f} ms, {sample['dropped_pct']:.1f}% dropped")
        concurrent = {}
        for index, build in enumerate(builds):
            rate = CONCURRENT_SHARE * statistics.median(
                s["fps"] for s in samples[build.name]["unpaced"])
            folder = work / f"concurrent-{index}"
            folder.mkdir(exist_ok=True)
            concurrent[build.name] = concurrent_runs(build, urls[build.name], rate, frames,
                                                     folder, stream_options)
            say(f"{CONCURRENT_STREAMS} streams at {rate:.1f} FPS each, {build.name}: "
                f"{concurrent[build.name]}")
    results = summarise(ref, builds, samples, rounds, frames)
    results["warmup_unpaced_fps"] = {name: round(sample["fps"], 2)
                                     for name, sample in warmup.items()}
    results["concurrent_realtime"] = concurrent
    return results


def summarise(ref: str, builds: tuple[Build, Build],
              samples: dict[str, dict[str, list[dict[str, float]]]], rounds: int, frames: int
              ) -> dict[str, object]:
    """Medians per build and run, and the ratios HEAD/REF."""
    medians = {b.name: {f"{run}_{key}": statistics.median(s[key] for s in runs)
                        for run, runs in samples[b.name].items() for key in runs[0]
                        if not key.startswith("step_ms:")}
               for b in builds}
    steps = {b.name: {key.split(":", 1)[1]: statistics.median(
                 s.get(key, 0.0) for s in samples[b.name]["realtime_24"])
                 for key in samples[b.name]["realtime_24"][0] if key.startswith("step_ms:")}
             for b in builds}
    reference, head = (medians[b.name] for b in builds)
    ratios = {key: (round(head[key] / reference[key], 3) if reference[key] else None)
              for key in reference if not key.endswith("dropped_pct")}
    return {"ref": ref, "builds": [b.name for b in builds], "rounds": rounds, "frames": frames,
            "medians": medians, "ratios_head_over_ref": ratios, "step_ms_per_frame": steps,
            "samples": samples}


def warmup_words(results: dict[str, object]) -> str:
    """The warm-up streams' FPS, as the table's heading says them (older results had none)."""
    warmup = results.get("warmup_unpaced_fps")
    if not isinstance(warmup, dict):
        return ""
    return ", after one unrecorded unpaced warm-up stream per build (" + ", ".join(
        f"{name}: {fps} FPS" for name, fps in warmup.items()) + ")"


def markdown(results: dict[str, object]) -> str:
    """The side-by-side table: each build's medians and the ratio HEAD/REF."""
    reference_name, head_name = results["builds"]  # type: ignore[misc]
    medians: dict[str, dict[str, float]] = results["medians"]  # type: ignore[assignment]
    ratios: dict[str, float | None] = results["ratios_head_over_ref"]  # type: ignore[assignment]
    lines = [f"# HEAD against {results['ref']}", "",
             f"`{results['command']}`, {results['date']}, host {results['host']}: both builds "
             f"served at once, {results['rounds']} alternating rounds of {results['frames']} "
             "frames of Megamind per run, each build's default stream; medians"
             + warmup_words(results) + ".", "",
             f"| measure | {reference_name} | {head_name} | HEAD/REF |", "|---|---|---|---|"]
    for key, value in medians[reference_name].items():
        ratio = ratios.get(key)
        lines.append(f"| {key} | {value:.2f} | {medians[head_name][key]:.2f} | "
                     f"{'' if ratio is None else f'{ratio:.2f}x'} |")
    steps: dict[str, dict[str, float]] = results["step_ms_per_frame"]  # type: ignore[assignment]
    lines += ["", "Each step's server time per frame in the realtime-24 runs (Triton statistics: "
              "ms per request x requests per frame; an ensemble's time holds its steps', a "
              "step called by another step is also inside the caller's):", "",
              f"| model | {reference_name} | {head_name} |", "|---|---|---|"]
    for model in sorted({*steps[reference_name], *steps[head_name]}):
        cells = [f"{steps[name][model]:.2f}" if model in steps[name] else "-"
                 for name in (reference_name, head_name)]
        lines.append(f"| {model} | {' | '.join(cells)} |")
    concurrent: dict[str, dict[str, object]] = results.get(  # type: ignore[assignment]
        "concurrent_realtime", {})
    if concurrent:
        lines += ["", f"{CONCURRENT_STREAMS} realtime streams at once, each offered "
                  f"{CONCURRENT_SHARE} x the build's own unpaced FPS (targets: each <= 2% "
                  "dropped, each p95 <= 2x one stream's alone at that rate):", "",
                  "| build | FPS offered each | FPS each | dropped % each | p95 ms each | "
                  "one alone p95 ms | worst p95 / alone |", "|---|---|---|---|---|---|---|"]
        for name, row in concurrent.items():
            lines.append(f"| {name} | {row['fps_offered_each']} | {row['fps']} | "
                         f"{row['dropped_pct']} | {row['p95_ms']} | {row['alone_p95_ms']} | "
                         f"{row['worst_p95_over_alone']} |")
    return "\n".join(lines) + "\n"


def export_suffix(head_export: tuple[str, ...]) -> str:
    """The result files' suffix for HEAD's extra export options: the option names
    (`--dfm a.dfm --no-mark` -> `-dfm-no-mark`)."""
    names = dict.fromkeys(arg.lstrip("-") for arg in head_export if arg.startswith("--"))
    return "".join(f"-{name}" for name in names)


def run_against(ref: str, output: Path, work: Path, frames: int, command: str,
                say: Progress, check: bool = False, head_export: tuple[str, ...] = (),
                rounds: int = 2) -> dict[str, object]:
    """Measure (`rounds` alternating rounds), then write against-<ref>.json and .md into
    output; returns the results."""
    import datetime

    from swaptron.benchmarks.bench import host_name

    work.mkdir(parents=True, exist_ok=True)
    results = measure(ref, work, rounds=rounds, frames=frames, say=say,
                      stream_options=("--check",) if check else (), head_export=head_export)
    results["stream"] = "checked" if check else "default"
    results["head_export"] = list(head_export)
    results.update(command=command, host=host_name(),
                   date=datetime.datetime.now(datetime.UTC).isoformat(timespec="minutes"))
    output.mkdir(parents=True, exist_ok=True)
    safe_ref = "".join(c if c.isalnum() or c in "-_." else "-" for c in ref) + (
        "-checked" if check else "") + export_suffix(head_export)
    (output / f"against-{safe_ref}.json").write_text(json.dumps(results, indent=1) + "\n")
    (output / f"against-{safe_ref}.md").write_text(markdown(results))
    return results
