"""`swaptron export`: PyTorch modules -> ONNX -> Triton model repository for a target."""

from __future__ import annotations

import importlib.util
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

import swaptron.networks
import swaptron.specs
import swaptron.triton_workarounds
from swaptron import assets
from swaptron.export import onnx_export, tensorrt, tensorrt_check
from swaptron.export.dfm_serving import ServedDfm, routes, write_dfm_models
from swaptron.export.repository import (
    ServingOptions,
    ensemble_config,
    model_config,
    parse_config,
    write_if_changed,
    write_model_folder,
)
from swaptron.networks.geometry import GraphOptions
from swaptron.networks.pipeline import Pipeline, PipelineOptions, build_pipeline
from swaptron.networks.watermark import build_mark
from swaptron.specs import (
    DEFAULT_MORPH,
    DETECTOR,
    DFM_PREFIX,
    DFM_ROUTER,
    FACE_CHOICES,
    FAKE_SCORE,
    FORENSICS,
    LANDMARKER,
    PRESENCE,
    SAMPLER,
    SELECTOR,
    SWAPPED,
    SWAPPER,
    TARGET,
    TRACK_KEYPOINT_LANDMARKS,
    TRACK_PRESENCE,
    TRACKER,
    ModelSpec,
    model_specs,
)
from swaptron.triton_workarounds import PUBLISHED_SUFFIX
from swaptron.wiring import ensembles

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportReport:
    """What an export did, per model."""

    repository: Path
    exported: list[str] = field(default_factory=list)
    up_to_date: list[str] = field(default_factory=list)
    max_difference: dict[str, dict[str, float]] = field(default_factory=dict)
    engine_script: Path | None = None


PYTHON_MODULES = {SELECTOR: "swaptron.server.selector_model",
                  TRACKER: "swaptron.server.tracker_model",
                  SAMPLER: "swaptron.server.sampler_model",
                  DFM_ROUTER: "swaptron.server.dfm_router_model"}  # copied as their model.py
# copied beside a Python model's model.py, as <last part of the name>.py (self-contained modules
# the model imports by that name: the Python backend puts the model's folder on sys.path)
SIDE_MODULES = {SELECTOR: ("swaptron.refusals",),
                TRACKER: ("swaptron.server.stream_side",),
                SAMPLER: ("swaptron.server.stream_side",),
                DFM_ROUTER: ("swaptron.server.stream_side",)}


class ExportError(RuntimeError):
    """The export cannot be completed; the message says why."""


FP16_TOLERANCE = {SWAPPED: 8.0, PRESENCE: 0.02, FAKE_SCORE: 0.05}  # float16: two runtimes


def tolerance(output: str, fp16: bool = False) -> float:
    """Largest ONNX Runtime vs PyTorch difference accepted at export for an output (pixels for
    frames, landmarks and boxes). Float16 networks round differently in the two runtimes: then
    half a pixel for coordinates, 8 levels for swapped pixels."""
    name = output.removesuffix(PUBLISHED_SUFFIX)
    if fp16:
        return FP16_TOLERANCE.get(name, 0.5)
    return 1.0 if name == SWAPPED else 1e-2


def example_frames() -> np.ndarray:
    """Real demo frames the graphs are traced and checked on, and warmed up with."""
    return np.stack(assets.read_frames(assets.demo_video(), list(assets.EXAMPLE_FRAMES)))


def source_files(pipeline_options: PipelineOptions) -> list[Path]:
    """Files whose bytes decide the graphs: the networks (code and template), the specs and the
    Triton workarounds that shape them (published copies), the tracing code, for fixed-shape
    graphs the rewrite in export/tensorrt.py, the MediaPipe weights and the autoencoder weights.
    Training code, CLI help, the ensembles' wiring and the rest of export/ do not shape a graph,
    so changing them needs no re-export."""
    networks = Path(swaptron.networks.__file__).resolve().parent
    files = sorted(networks.glob("*.py")) + sorted(networks.glob("*.json"))
    files += [Path(module.__file__).resolve()
              for module in (swaptron.specs, swaptron.triton_workarounds, onnx_export)]
    if pipeline_options.graph.fixed_shapes:
        files.append(Path(tensorrt.__file__).resolve())
    files += [assets.tflite_path(assets.DETECTOR_WEIGHTS[pipeline_options.face_detector]),
              assets.tflite_path(assets.LANDMARKER_TFLITE)]
    weights = pipeline_options.weights_file()
    if weights is not None:
        files.append(weights)
    detector = pipeline_options.detector_file()
    if detector is not None and detector.is_file():
        files.append(detector)
    return files


def graph_options(target: str, fp16: bool) -> GraphOptions:
    """The graph variant a target gets: the tensorrt target's graphs have fixed shapes (and
    float16 networks with --fp16); the CPU targets keep their data-dependent shortcuts."""
    if fp16 and target != "tensorrt":
        raise ExportError(f"--fp16 is for the tensorrt target, not {target}")
    return GraphOptions(fixed_shapes=target == "tensorrt", fp16_networks=fp16)


def export_repository(pipeline_options: PipelineOptions, serving: ServingOptions, output: Path,
                      *, force: bool = False, profiles: tensorrt.ProfileOptions | None = None,
                      progress: Callable[[str], None] = print,
                      dfms: tuple[ServedDfm, ...] = (), default_identity: str | None = None
                      ) -> ExportReport:
    """Write ONNX graphs and configs for every model and the ensemble; skip what is current.

    The graph variant follows the target (graph_options); `pipeline_options.graph` is ignored.
    `dfms` (checked by dfm_serving.load_dfms) are served as identities after our decoders;
    `default_identity` names the default among all of them (None: our own default).
    """
    started = time.monotonic()
    profiles = profiles or tensorrt.ProfileOptions()
    pipeline_options = replace(pipeline_options,
                               graph=graph_options(serving.target, profiles.fp16))
    report = ExportReport(repository=output)
    forensics = pipeline_options.detector_file() is not None
    specs = {name: spec for name, spec in model_specs(pipeline_options.max_faces,
                                                      bool(dfms)).items()
             if forensics or name not in (FORENSICS, SAMPLER)}
    try:
        pipeline = build_pipeline(pipeline_options)
    except (FileNotFoundError, ValueError) as error:
        raise ExportError(str(error)) from error
    progress(f"building the pipeline (K={pipeline_options.max_faces}, identities "
             f"{', '.join(pipeline.swapper.identities)} (default {pipeline.swapper.default}), "
             f"forgery detector {pipeline_options.detector_file() or 'none'})")
    frames = example_frames()
    tensors = pipeline.run(frames)
    tensors.update(pipeline.stabilizer_example(tensors))
    # the swapper is checked with every identity in one batch, so every decoder runs
    identities = len(pipeline.swapper.identities)
    tensors[TARGET] = (np.arange(len(frames)) % identities).astype(np.int32).reshape(-1, 1)
    files = source_files(pipeline_options)
    facts = {SELECTOR: selector_facts(pipeline, dfms, default_identity),
             TRACKER: tracker_facts(specs, serving), SAMPLER: sampler_facts(serving),
             SWAPPER: mark_facts(pipeline_options)}
    if forensics:
        facts[FORENSICS] = detector_facts(pipeline_options)
    if dfms:
        facts[DFM_ROUTER] = {"routes": routes(list(dfms), identities,
                                              pipeline_options.max_faces)}
    for spec in specs.values():
        if spec.graph:
            export_model(pipeline, spec, tensors, output, pipeline_options, files, force,
                         report, progress)
        warmup = None if spec.states or not spec.graph else {
            name: tensors[name][:1] for name in spec.input_names()}
        write_model_folder(output, model_config(spec, serving, warmup, facts.get(spec.name)),
                           serving.target,
                           warmup, None if spec.graph else module_source(PYTHON_MODULES[spec.name]))
        for side in SIDE_MODULES.get(spec.name, ()):
            write_if_changed(output / spec.name / "1" / f"{side.rsplit('.', 1)[1]}.py",
                             module_source(side))
    every_identity = build_mark(pipeline_options.mark, identities + len(dfms))
    served = write_dfm_models(list(dfms), pipeline_options.max_faces, serving, output, tensors,
                              progress, every_identity) if dfms else []
    wired = ensembles(pipeline_options.max_faces, forensics, bool(dfms))
    for ensemble in wired:
        write_model_folder(output, ensemble_config(ensemble), serving.target, None)
    remove_stale(output, {*specs, *(s.name for s in served), *(e.name for e in wired)},
                 pipeline_options.max_faces, progress)
    graphs = [spec for spec in specs.values() if spec.graph] + served
    check_tensorrt(graphs, output, serving.target, progress)
    if serving.target == "tensorrt":
        batches = {spec.name: tensorrt.batch_range(parse_config(output / spec.name /
                                                                "config.pbtxt"))
                   for spec in graphs}
        report = prepare_engines(graphs, output, profiles, batches, report, progress)
    progress(f"repository {output} ready ({serving.target}) in "
             f"{time.monotonic() - started:.1f} s")
    return report


def selector_facts(pipeline: Pipeline, dfms: tuple[ServedDfm, ...] = (),
                   default_identity: str | None = None) -> dict[str, str]:
    """What the selector maps and what clients list: the identities in decoder order (then the
    DFMs), the default, the WHICH_FACES choices (the default first) and, with DFMs, the morph
    value a frame without MORPH gets."""
    names = (*pipeline.swapper.identities, *(dfm.name for dfm in dfms))
    taken = sorted({dfm.name for dfm in dfms} & set(pipeline.swapper.identities))
    if taken:
        raise ExportError(f"DFM identity names {', '.join(taken)} are our own identities' too; "
                          "name the DFMs PATH:NAME")
    default = default_identity or pipeline.swapper.default
    if default not in names:
        raise ExportError(f"default identity {default!r} is not served ({', '.join(names)})")
    facts = {"identities": ",".join(names), "default_identity": default,
             "face_choices": ",".join(FACE_CHOICES)}
    if dfms:
        facts["default_morph"] = str(DEFAULT_MORPH)
    return facts


def tracker_facts(specs: dict[str, ModelSpec], serving: ServingOptions) -> dict[str, str]:
    """What the tracker calls and when it detects: the detector's and landmarker's names and
    the detector outputs it reads, the keyframe interval, the lost-face presence, the
    landmarks standing for the keypoints, and the streams it keeps."""
    detector = specs[DETECTOR]
    return {"detector": DETECTOR, "landmarker": LANDMARKER,
            "detector_outputs": ",".join(t.name for t in detector.network_outputs),
            "keyframe_interval": str(serving.keyframe_interval),
            "presence_threshold": str(TRACK_PRESENCE),
            "keypoint_landmarks": ",".join(map(str, TRACK_KEYPOINT_LANDMARKS)),
            "max_streams": str(serving.max_streams)}


def sampler_facts(serving: ServingOptions) -> dict[str, str]:
    """What the sampler calls and how often: the forgery model's name, the sample interval,
    the presence a face needs to be scored, and the streams it keeps."""
    return {"forensics": FORENSICS, "score_interval": str(serving.score_interval),
            "presence_threshold": str(TRACK_PRESENCE), "max_streams": str(serving.max_streams)}


def mark_facts(options: PipelineOptions) -> dict[str, str]:
    """What clients show of the swapper's invisible mark: on or off (only `swaptron export
    --no-mark` turns it off) and the server id it carries."""
    return {"mark": "on" if options.mark.enabled else "off",
            "mark_server_id": str(options.mark.server_id)}


def module_source(module: str) -> str:
    """A Python model's file as it is (self-contained; found, not imported: it needs Triton's
    stub module)."""
    found = importlib.util.find_spec(module)
    if found is None or found.origin is None:
        raise ExportError(f"{module} is missing from the installation")
    return Path(found.origin).read_text()


def detector_facts(options: PipelineOptions) -> dict[str, str]:
    """What a client of `forensics` needs to know: the detector, its two cuts (a score above
    `threshold` says "likely swapped", one under `real_below` "likely real", between them
    "uncertain"; a card without `real_below` has no uncertain band) and its card figures;
    from the committed card."""
    path = options.detector_file()
    card = assets.forensics_card() or {}
    name = path.parent.parent.name if path and path.name == "detector.pt" else (
        path.stem if path else "none")
    entry = card.get("models", {}).get(name, {}) if isinstance(card, dict) else {}
    threshold = entry.get("threshold", 0.5)
    facts = {"detector": name, "threshold": str(threshold),
             "real_below": str(entry.get("real_below", threshold))}
    for key in ("auc_vs_our_swaps", "auc_unseen_generator", "fpr_real", "ms_per_face"):
        if key in entry:
            facts[f"card_{key}"] = str(entry[key])
    return facts


def remove_stale(output: Path, models: set[str], max_faces: int,
                 progress: Callable[[str], None]) -> None:
    """Delete the folders of our own models that this export no longer writes (the forensics
    model and its ensembles after an export without a detector), so the server does not load
    a stale model. Folders of other models are left alone."""
    ours = {*model_specs(max_faces, True), *(e.name for e in ensembles(max_faces, True))}
    ours |= {folder.name for folder in output.glob(f"{DFM_PREFIX}*")}  # served DFMs' models
    for name in sorted(ours - models):
        if (output / name / "config.pbtxt").is_file():
            shutil.rmtree(output / name)
            progress(f"[{name}] removed: not part of this export")


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
    if pipeline_options.graph.fixed_shapes:  # no TensorRT layer reads a uint8 output
        tensorrt.publish_from_float(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".onnx.part")
    partial.write_bytes(model.SerializeToString())
    differences = onnx_export.max_difference(partial, module, spec, tensors)
    fp16 = pipeline_options.graph.fp16_networks
    too_far = {k: v for k, v in differences.items() if v > tolerance(k, fp16)}
    if too_far:
        partial.unlink()
        raise ExportError(f"{spec.name}: ONNX Runtime disagrees with PyTorch: {too_far}")
    partial.replace(path)
    report.exported.append(spec.name)
    report.max_difference[spec.name] = differences
    worst = ", ".join(f"{k} {v:.1e}" for k, v in differences.items())
    progress(f"[{spec.name}] exported in {time.monotonic() - started:.1f} s; "
             f"ONNX Runtime vs PyTorch max |diff|: {worst}")


def check_tensorrt(specs: list[ModelSpec], output: Path, target: str,
                   progress: Callable[[str], None]) -> None:
    """Hold each graph against TensorRT 10.5's parser rules (export/tensorrt_check.py).

    Binding for the tensorrt target (ExportError naming every finding); for the CPU targets,
    whose graphs keep data-dependent shapes on purpose, a report of what they would break.
    """
    for spec in specs:
        findings = tensorrt_check.check_file(output / spec.name / "1" / "model.onnx")
        if target == "tensorrt":
            if findings:
                listing = "\n  ".join(str(f) for f in findings)
                raise ExportError(f"{spec.name}: TensorRT 10.5 would refuse the graph:\n  "
                                  f"{listing}")
            progress(f"[{spec.name}] TensorRT 10.5 check: clean")
        else:
            progress(f"[{spec.name}] TensorRT 10.5 check (not binding for {target}): "
                     f"{tensorrt_check.summary(findings)}")


def prepare_engines(specs: list[ModelSpec], output: Path, profiles: tensorrt.ProfileOptions,
                    batches: dict[str, tensorrt.BatchRange], report: ExportReport,
                    progress: Callable[[str], None]) -> ExportReport:
    """Build plans here (TensorRT importable) or write the trtexec script; `batches` is each
    model's batch range, from its config (tensorrt.batch_range)."""
    script = output / tensorrt.ENGINE_SCRIPT
    script.write_text(tensorrt.build_script(specs, profiles, batches))
    script.chmod(0o755)
    progress(tensorrt.memory_summary([(spec, batches[spec.name]) for spec in specs], profiles))
    if tensorrt.tensorrt_available():
        for spec in specs:
            progress(f"[{spec.name}] building TensorRT engine")
            folder = output / spec.name / "1"
            tensorrt.build_with_api(spec, folder / "model.onnx", folder / "model.plan", profiles,
                                    batches[spec.name])
    else:
        progress(f"TensorRT is not importable here: {script} builds the engines on the GPU "
                 "host (`docker compose up` runs it)")
    return ExportReport(report.repository, report.exported, report.up_to_date,
                        report.max_difference, script)
