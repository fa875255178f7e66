"""What `swaptron bench` is asked to do (BenchRequest) and how long and wide each part runs
(BenchPlan), with the error that says the bench cannot run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from swaptron.benchmarks import variants
from swaptron.benchmarks.cli import DEFAULT_RESULTS, DEFAULT_SEED, DEFAULT_WORK

FULL_LEVELS = (1, 2, 4, 8)
QUICK_LEVELS = (1, 2, 4)
QUICK_VARIANT_LEVELS = (1, 4)
PERF_FRAMES = 8


class BenchError(RuntimeError):
    """The bench cannot run; the message says why and what to do."""


@dataclass(frozen=True)
class BenchRequest:
    """What the user asked for (the `swaptron bench` options)."""

    quick: bool = False
    url: str | None = None
    variants: tuple[str, ...] | None = None
    concurrency: tuple[int, ...] | None = None
    seconds: float | None = None
    output_dir: Path = DEFAULT_RESULTS
    work_dir: Path = DEFAULT_WORK
    seed_repository: Path | None = DEFAULT_SEED
    readme: Path | None = None
    command: str = "swaptron bench"


@dataclass(frozen=True)
class BenchPlan:
    """How long and how wide each part runs."""

    mode: str
    ensemble_levels: tuple[int, ...]
    network_levels: tuple[int, ...]
    variant_levels: tuple[int, ...]
    measurement_ms: int
    client_seconds: float
    in_process_seconds: float
    variants: tuple[str, ...]
    inflight: tuple[int, ...]
    perf_frames: int = PERF_FRAMES


def make_plan(request: BenchRequest) -> BenchPlan:
    """Quick (about two minutes) or full (under 20 minutes on 2 cores), with overrides applied."""
    quick = request.quick
    levels = request.concurrency or (QUICK_LEVELS if quick else FULL_LEVELS)
    names = request.variants or (("default", "no-batching") if quick
                                 else tuple(v.name for v in variants.VARIANTS))
    for name in names:
        try:
            variants.find_variant(name)
        except ValueError as error:
            raise BenchError(str(error)) from error
    if "default" not in names:
        names = ("default", *names)
    seconds = request.seconds
    return BenchPlan(
        mode="quick" if quick else "full",
        ensemble_levels=tuple(sorted({1, *levels})),
        network_levels=levels[:1] if quick else levels,
        variant_levels=(request.concurrency or (QUICK_VARIANT_LEVELS if quick else FULL_LEVELS)),
        measurement_ms=int(seconds * 1000) if seconds else (1500 if quick else 2500),
        client_seconds=seconds or (5.0 if quick else 15.0),
        in_process_seconds=seconds or (4.0 if quick else 10.0),
        variants=tuple(dict.fromkeys(names)),
        inflight=(2,) if quick else (2, 3),
    )
