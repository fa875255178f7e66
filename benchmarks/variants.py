"""Served config variants: repositories exported with other ServingOptions, and their memory.

Variants share the ONNX graphs; only `config.pbtxt` differs. A variant's graphs are hard links to
the seed repository's when their export fingerprints are current, so `export_repository` only
writes configs (otherwise it exports the graphs afresh into the variant's folder).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from swaptron.export.repository import ServingOptions

MB = 1e6


@dataclass(frozen=True)
class Variant:
    """A named set of serving options."""

    name: str
    serving: ServingOptions
    description: str

    def summary(self) -> dict[str, object]:
        """Name, description and the options that make it (JSON-ready)."""
        serving = asdict(self.serving)
        serving["preferred_batch_sizes"] = list(self.serving.preferred_batch_sizes)
        return {"name": self.name, "description": self.description, "serving": serving}


VARIANTS = (
    Variant("default", ServingOptions(),
            "as `swaptron export` writes it: dynamic batching, 1 instance, 2 ONNX Runtime threads "
            "per network that sleep when idle"),
    Variant("no-batching", ServingOptions(dynamic_batching=False),
            "dynamic batching off: every request runs alone"),
    Variant("instances-2", ServingOptions(instances=2),
            "2 instances per network, dynamic batching on"),
    Variant("threads-1", ServingOptions(intra_op_threads=1),
            "1 ONNX Runtime thread per network, dynamic batching on"),
    Variant("spinning", ServingOptions(intra_op_spinning=True),
            "2 threads per network that spin while idle (ONNX Runtime's default)"),
)


def find_variant(name: str) -> Variant:
    """The variant called `name`; ValueError naming the choices otherwise."""
    for variant in VARIANTS:
        if variant.name == name:
            return variant
    raise ValueError(f"unknown variant {name!r}: choose from "
                     f"{', '.join(v.name for v in VARIANTS)}")


def link_graphs(seed: Path, folder: Path, replace: bool) -> list[str]:
    """Hard-link (or copy) the seed's `<model>/1/model.onnx` files into folder.

    Graphs already in folder are kept unless `replace` (a seed known to be current); the export
    that follows re-exports whatever is stale either way. Returns the models linked.
    """
    linked = []
    for source in sorted(seed.glob("*/1/model.onnx")):
        target = folder / source.relative_to(seed)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() and (not replace or target.samefile(source)):
            continue
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)
        linked.append(source.parts[-3])
    return linked


def prepare_repository(variant: Variant, seed: Path | None, folder: Path,
                       progress: Callable[[str], None], *, replace_graphs: bool = False) -> Path:
    """Export a variant's repository into folder, reusing the seed's graphs when current."""
    from swaptron.export.build import export_repository
    from swaptron.networks.pipeline import PipelineOptions

    if seed is not None and seed.is_dir() and seed.resolve() != folder.resolve():
        link_graphs(seed, folder, replace_graphs)
    export_repository(PipelineOptions(), variant.serving, folder, progress=progress)
    return folder


def server_memory(pid: int) -> dict[str, object]:
    """RSS (and PSS, which counts shared pages once) of a server and its backend processes."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {"rss_mb": None, "pss_mb": None, "processes": 0, "names": []}
    rss = 0
    pss: int | None = 0
    names: list[str] = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            rss += process.memory_info().rss
            names.append(process.name())
            try:
                shared_once = process.memory_full_info().pss
            except psutil.AccessDenied:
                pss = None
            else:
                pss = None if pss is None else pss + shared_once
    return {"rss_mb": round(rss / MB, 1), "pss_mb": None if pss is None else round(pss / MB, 1),
            "processes": len(names), "names": sorted(set(names))}


def statistics(url: str) -> dict[str, dict[str, int]]:
    """Cumulative per-model counts and nanoseconds from Triton's statistics API."""
    from swaptron.client.connection import server_statistics

    return asyncio.run(server_statistics(url))


def statistics_delta(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]
                     ) -> dict[str, dict[str, float]]:
    """Mean queue and compute milliseconds per request, per model, between two snapshots."""
    from swaptron.client.connection import statistics_delta as delta

    models = delta(before, after)["models"]
    return models if isinstance(models, dict) else {}
