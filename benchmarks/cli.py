"""Command-line options of `swaptron bench` (light: nothing heavy is imported at parse time)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from swaptron.arguments import positive_float, positive_int
from swaptron.assets import project_dir
from swaptron.specs import DETECTOR

DEFAULT_RESULTS = project_dir() / "benchmarks" / "results"
DEFAULT_WORK = project_dir() / "build" / "bench"
DEFAULT_SEED = project_dir() / "model_repository"
AGAINST_FRAMES = 144  # frames of each --against run (--quick: half; --seconds S: 24 x S)
AGAINST_MIN_FRAMES = 24
AGAINST_ROUNDS = 2  # alternating rounds of each --against run (--rounds N)


def int_list(text: str) -> tuple[int, ...]:
    """`1,2,4` -> (1, 2, 4); every level at least 1."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,2,4, got {text!r}") from error
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected levels of at least 1, got {text!r}")
    return values


def name_list(text: str) -> tuple[str, ...]:
    """`default,no-batching` -> ("default", "no-batching")."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise argparse.ArgumentTypeError("expected at least one variant name")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `swaptron bench`."""
    parser.add_argument("--quick", action="store_true",
                        help="a run of about two minutes: fewer levels and variants, shorter "
                             "windows (default: the full run, under 20 minutes on 2 cores)")
    parser.add_argument("--url", default=None, metavar="HOST:PORT",
                        help="bench a server already running there (gRPC), e.g. the compose "
                             "deployment, instead of starting the embedded one; config variants "
                             "are then skipped")
    parser.add_argument("--variants", type=name_list, default=None,
                        help="config variants to serve, comma-separated, from default, "
                             "no-batching, instances-2, threads-1, spinning (default: all; "
                             "--quick: default,no-batching)")
    parser.add_argument("--concurrency", type=int_list, default=None,
                        help="perf_analyzer concurrency levels (default 1,2,4,8; --quick 1,2,4)")
    parser.add_argument("--seconds", type=positive_float, default=None,
                        help="override: length of each perf_analyzer window and of each client "
                             "run (for smoke tests)")
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_RESULTS,
                        help="results: JSON, markdown, plots, CSVs (default: %(default)s)")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK,
                        help="variant repositories, input data, server logs, client reports "
                             "(default: %(default)s)")
    parser.add_argument("--model-repository", type=Path, default=DEFAULT_SEED,
                        help="exported repository whose ONNX graphs seed the variants when they "
                             "are current; never modified (default: %(default)s)")
    parser.add_argument("--models", action="store_true",
                        help="only the per-network table: each graph in-process at batch 1 and "
                             "8, 1 and 2 threads (models.md, about a minute)")
    parser.add_argument("--range", action="store_true",
                        help="only the face detector range table: recall by face size, false "
                             "faces and cost of each BlazeFace variant (detector_range.md)")
    parser.add_argument("--stability", action="store_true",
                        help="only the stability table: jitter, flicker, pops and lag of "
                             "stateless swaps against the stabilized stream (stability.md)")
    parser.add_argument("--identities", action="store_true",
                        help="only the identities table: perf_analyzer on faceswap with one "
                             "identity against mixed identities per request (identities.md)")
    parser.add_argument("--capacity", action="store_true",
                        help="only the capacity table: how many concurrent realtime 24 FPS "
                             "streams one server holds (p95 <= 50 ms, <= 2%% dropped; "
                             "capacity.md)")
    parser.add_argument("--web", action="store_true",
                        help="only the page, glass to glass: headless Chromium streams Megamind "
                             "at 24 FPS through `swaptron web` (--seconds, default 30), beside "
                             "the Python client (web.md)")
    parser.add_argument("--against", default=None, metavar="REF",
                        help="only the regression guard: REF (a commit or tag) is built beside "
                             "the working tree and both are streamed alternately (REF, HEAD, "
                             "REF, HEAD); prints the ratios HEAD/REF (against-REF.md)")
    parser.add_argument("--check", action="store_true",
                        help="with --against: stream the checked stream (the forgery score with "
                             "each frame) instead of the default one (against-REF-checked.md)")
    parser.add_argument("--head-export", default="", metavar="ARGS",
                        help="with --against: extra `swaptron export` options for the working "
                             "tree, e.g. '--dfm model.dfm' (DFMs loaded) or '--no-mark' "
                             "(against-REF-<options>.md)")
    parser.add_argument("--rounds", type=positive_int, default=AGAINST_ROUNDS,
                        help="with --against: alternating rounds (REF, HEAD) of each run; the "
                             f"medians over them are reported (default {AGAINST_ROUNDS})")
    parser.add_argument("--readme", type=Path, default=None,
                        help="README whose `<!-- bench:begin -->`...`<!-- bench:end -->` block "
                             "gets the latest table (default: benchmarks/README.md when "
                             "writing to benchmarks/results, none otherwise)")


def command_line(args: argparse.Namespace) -> str:
    """The `swaptron bench` command that reproduces these options (recorded with the results)."""
    parts = ["swaptron", "bench"]
    if args.quick:
        parts.append("--quick")
    if args.models:
        parts.append("--models")
    if args.range:
        parts.append("--range")
    if args.stability:
        parts.append("--stability")
    if args.identities:
        parts.append("--identities")
    if args.web:
        parts.append("--web")
    if args.capacity:
        parts.append("--capacity")
    if args.against:
        parts += ["--against", args.against]
    if args.check:
        parts.append("--check")
    if args.head_export:
        parts += ["--head-export", shlex.quote(args.head_export)]
    if args.rounds != AGAINST_ROUNDS:
        parts += ["--rounds", str(args.rounds)]
    if args.url:
        parts += ["--url", args.url]
    if args.variants:
        parts += ["--variants", ",".join(args.variants)]
    if args.concurrency:
        parts += ["--concurrency", ",".join(str(level) for level in args.concurrency)]
    if args.seconds:
        parts += ["--seconds", f"{args.seconds:g}"]
    for option, value, default in (("--output-dir", args.output_dir, DEFAULT_RESULTS),
                                   ("--work-dir", args.work_dir, DEFAULT_WORK),
                                   ("--model-repository", args.model_repository, DEFAULT_SEED)):
        if value.resolve() != default.resolve():
            parts += [option, str(value)]
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and write its results; 1 when it cannot run."""
    from swaptron.benchmarks.bench import BenchError, BenchRequest, run_bench

    if args.models:
        return run_models(args.model_repository, args.output_dir)
    if args.range:
        from swaptron.benchmarks.detector_range import range_markdown, run_range

        print(range_markdown(run_range(args.output_dir)))
        return 0
    if args.stability:
        from swaptron.benchmarks.stability import run_stability, stability_markdown

        print(stability_markdown(run_stability(  # type: ignore[arg-type]
            args.output_dir, args.work_dir / "stability")))
        return 0
    if args.identities:
        from swaptron.benchmarks.identities import identities_markdown, run_identities

        print(identities_markdown(run_identities(args.output_dir, args.work_dir / "identities")))
        return 0
    if args.capacity:
        from swaptron.benchmarks.capacity import capacity_markdown, run_capacity

        print(capacity_markdown(run_capacity(args.output_dir, args.work_dir / "capacity",
                                             args.seconds or 15.0)))
        return 0
    if args.against:
        return run_against(args)
    if args.web:
        from swaptron.benchmarks.web import run_web, web_markdown

        print(web_markdown(run_web(args.output_dir, args.work_dir / "web", args.seconds or 30.0)))
        return 0
    readme = args.readme
    if readme is None and args.output_dir.resolve() == DEFAULT_RESULTS.resolve():
        readme = project_dir() / "benchmarks" / "README.md"  # links there: results/...
    request = BenchRequest(quick=args.quick, url=args.url, variants=args.variants,
                           concurrency=args.concurrency, seconds=args.seconds,
                           output_dir=args.output_dir, work_dir=args.work_dir,
                           seed_repository=args.model_repository, readme=readme,
                           command=command_line(args))
    try:
        run_bench(request)
    except BenchError as error:
        print(f"error: {error}")
        return 1
    return 0


def run_against(args: argparse.Namespace) -> int:
    """The working tree against REF, alternating; 1 when REF cannot be built or served."""
    import shlex

    from swaptron.benchmarks.against import AgainstError, markdown
    from swaptron.benchmarks.against import run_against as measure_against

    try:
        frames = (max(AGAINST_MIN_FRAMES, round(args.seconds * 24)) if args.seconds
                  else AGAINST_FRAMES // 2 if args.quick else AGAINST_FRAMES)
        results = measure_against(args.against, args.output_dir, args.work_dir / "against",
                                  frames, command_line(args),
                                  lambda line: print(line, flush=True), args.check,
                                  tuple(shlex.split(args.head_export)), args.rounds)
    except AgainstError as error:
        print(f"error: {error}")
        return 1
    print(markdown(results))
    return 0


def run_models(repository: Path, output: Path) -> int:
    """Write the per-network compute table (models.json, models.md)."""
    import datetime

    from swaptron import assets
    from swaptron.benchmarks import models
    from swaptron.benchmarks.bench import host_name

    if not (repository / DETECTOR / "1" / "model.onnx").is_file():
        print(f"error: no exported graphs in {repository}: run `swaptron export`")
        return 1
    frames = assets.read_frames(assets.demo_video())
    rows = models.measure(repository, frames)
    date = datetime.date.today().isoformat()
    models.write(rows, output, host_name(), date)
    print(models.markdown(rows, host_name(), date))
    return 0
