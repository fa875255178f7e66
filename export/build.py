"""`swaptron export`: PyTorch modules -> ONNX -> Triton model repository for a target."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from swaptron import assets
from swaptron.export import onnx_export, tensorrt
from swaptron.export.pipeline import Pipeline, PipelineOptions, build_pipeline
from swaptron.export.repository import (
    ServingOptions,
    ensemble_config,
    model_config,
    write_model_folder,
)
from swaptron.export.specs import ModelSpec, model_specs

EXAMPLE_FRAMES = (120, 10)  # one face; a face with a second one in the background
SOURCE_FOLDER = Path(__file__).resolve().parent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportReport:
    """What an export did, per model."""

    repository: Path
    exported: list[str] = field(default_factory=list)
    up_to_date: list[str] = field(default_factory=list)
    max_difference: dict[str, dict[str, float]] = field(default_factory=dict)
    engine_script: Path | None = None


class ExportError(RuntimeError):
    """The export cannot be completed; the message says why."""


def tolerance(output: str) -> float:
    """Largest ONNX Runtime vs PyTorch difference accepted at export for an output."""
    return 1.0 if output == "SWAPPED" else 1e-2


def example_frames() -> np.ndarray:
    """Real demo frames the graphs are traced and checked on, and warmed up with."""
    return np.stack(assets.read_frames(assets.demo_video(), list(EXAMPLE_FRAMES)))


def source_files(pipeline_options: PipelineOptions) -> list[Path]:
    """Files whose bytes decide the graphs: the export code, weights and template."""
    files = sorted(SOURCE_FOLDER.glob("*.py")) + sorted((SOURCE_FOLDER / "assets").glob("*"))
    files += [assets.tflite_path(w) for w in assets.ALL_TFLITE]
    weights = pipeline_options.weights_file()
    if weights is not None:
        files.append(weights)
    return files


def export_repository(pipeline_options: PipelineOptions, serving: ServingOptions, output: Path,
                      *, force: bool = False, profiles: tensorrt.ProfileOptions | None = None,
                      progress: Callable[[str], None] = print) -> ExportReport:
    """Write ONNX graphs and configs for every model and the ensemble; skip what is current."""
    started = time.monotonic()
    report = ExportReport(repository=output)
    specs = model_specs(pipeline_options.max_faces)
    progress(f"building the pipeline (K={pipeline_options.max_faces}, "
             f"direction {pipeline_options.direction})")
    pipeline = build_pipeline(pipeline_options)
    frames = example_frames()
    tensors = pipeline.run(frames)
    files = source_files(pipeline_options)
    for spec in specs.values():
        export_model(pipeline, spec, tensors, output, pipeline_options, files, force, report,
                     progress)
        warmup = {name: tensors[name][:1] for name in spec.input_names()}
        write_model_folder(output, model_config(spec, serving, warmup), serving.target, warmup)
    write_model_folder(output, ensemble_config(pipeline_options.max_faces, serving),
                       serving.target, None)
    if serving.target == "tensorrt":
        report = prepare_engines(list(specs.values()), output, profiles or
                                 tensorrt.ProfileOptions(), report, progress)
    progress(f"repository {output} ready ({serving.target}) in "
             f"{time.monotonic() - started:.1f} s")
    return report


def export_model(pipeline: Pipeline, spec: ModelSpec, tensors: dict[str, np.ndarray],
                 output: Path, pipeline_options: PipelineOptions, files: list[Path],
                 force: bool, report: ExportReport, progress: Callable[[str], None]) -> None:
    """Export one network unless its ONNX already carries the same fingerprint."""
    path = output / spec.name / "1" / "model.onnx"
    fingerprint = onnx_export.fingerprint(
        {"model": spec.name, "opset": onnx_export.OPSET, **asdict(pipeline_options)}, files)
    module = pipeline.modules()[spec.name]
    if not force and onnx_export.stored_fingerprint(path) == fingerprint:
        report.up_to_date.append(spec.name)
        progress(f"[{spec.name}] ONNX up to date")
        return
    started = time.monotonic()
    model = onnx_export.to_onnx(module, spec, tensors, fingerprint)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".onnx.part")
    partial.write_bytes(model.SerializeToString())
    differences = onnx_export.max_difference(partial, module, spec, tensors)
    too_far = {k: v for k, v in differences.items() if v > tolerance(k)}
    if too_far:
        partial.unlink()
        raise ExportError(f"{spec.name}: ONNX Runtime disagrees with PyTorch: {too_far}")
    partial.replace(path)
    report.exported.append(spec.name)
    report.max_difference[spec.name] = differences
    worst = ", ".join(f"{k} {v:.1e}" for k, v in differences.items())
    progress(f"[{spec.name}] exported in {time.monotonic() - started:.1f} s; "
             f"ONNX Runtime vs PyTorch max |diff|: {worst}")


def prepare_engines(specs: list[ModelSpec], output: Path, profiles: tensorrt.ProfileOptions,
                    report: ExportReport, progress: Callable[[str], None]) -> ExportReport:
    """Check ops against TensorRT's parser; build plans here or write the trtexec script."""
    for spec in specs:
        missing = tensorrt.unsupported(onnx_export.operator_types(
            output / spec.name / "1" / "model.onnx"))
        if missing:
            raise ExportError(f"{spec.name} uses ops TensorRT cannot parse: {sorted(missing)}")
    script = output / tensorrt.ENGINE_SCRIPT
    script.write_text(tensorrt.build_script(specs, profiles))
    script.chmod(0o755)
    if tensorrt.tensorrt_available():
        for spec in specs:
            progress(f"[{spec.name}] building TensorRT engine")
            folder = output / spec.name / "1"
            tensorrt.build_with_api(spec, folder / "model.onnx", folder / "model.plan", profiles)
    else:
        progress(f"TensorRT is not importable here: {script} builds the engines on the GPU "
                 "host (`docker compose up` runs it)")
    return ExportReport(report.repository, report.exported, report.up_to_date,
                        report.max_difference, script)
