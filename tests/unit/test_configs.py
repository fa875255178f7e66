"""Config generation from the specs, for every target, without an export."""

from __future__ import annotations

import ast
import itertools
import sys

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from swaptron.assets import CHECKOUT
from swaptron.cli import build_parser
from swaptron.export.build import PYTHON_MODULES, SIDE_MODULES, module_source
from swaptron.export.cli import MAX_BATCH_VARIABLE, MAX_FRAME_VARIABLE
from swaptron.export.repository import ServingOptions, ensemble_config, model_config, render
from swaptron.export.tensorrt import BatchRange, ProfileOptions, batch_range
from swaptron.specs import (
    DETECTOR,
    FACES,
    FRAME,
    FRAME_LIMITS,
    LANDMARKER,
    LANDMARKS,
    PRESENCE,
    RESET,
    SELECTOR,
    STABILIZER,
    STREAM_LIMIT_ERROR,
    STRICTEST_FRAME_LIMITS,
    SWAPPER,
    TARGETS,
    TRACKER,
    model_specs,
)
from swaptron.specs import steady as steady_version
from swaptron.triton_workarounds import PUBLISHED_SUFFIX
from swaptron.wiring import EnsembleSpec, Step, ensembles, faceswap_ensemble

from config_checks import check_ensemble


def parse_text(text: str) -> mc.ModelConfig:
    """Parse config text the way Triton does."""
    return text_format.Parse(text, mc.ModelConfig())


@pytest.mark.parametrize("target", ["python-ort", "onnxruntime", "tensorrt"])
def test_every_target_generates_parsable_configs_with_a_valid_ensemble(target: str) -> None:
    options = ServingOptions(target=target)
    specs = model_specs(3)
    warmup = {FRAME: np.zeros((1, 64, 64, 3), np.uint8)}
    configs = {name: mc.ModelConfig() for name in specs}
    for name, spec in specs.items():
        text = render(model_config(spec, options, warmup if name == DETECTOR else None))
        configs[name] = parse_text(text)
    for ensemble in ensembles(3, forensics=True):
        configs[ensemble.name] = parse_text(render(ensemble_config(ensemble)))
        check_ensemble(configs, ensemble.name)
    expected = {"python-ort": ("python", ""), "onnxruntime": ("onnxruntime", ""),
                "tensorrt": ("", "tensorrt_plan")}[target]
    assert (configs[DETECTOR].backend, configs[DETECTOR].platform) == expected
    assert list(configs[LANDMARKER].output[0].dims) == [3, 468, 2]


@pytest.mark.parametrize("ensemble", ensembles(2, forensics=True), ids=lambda e: e.name)
def test_no_ensemble_output_feeds_a_later_step(ensemble: object) -> None:
    """Triton 2.51 drops a requested output when it prunes every step that consumes it, so the
    ensemble's outputs come from published copies or from tensors nothing else reads."""
    public = {tensor.name for tensor in ensemble.outputs}  # type: ignore[attr-defined]
    steps = ensemble.wiring()  # type: ignore[attr-defined]
    for position, step in enumerate(steps):
        produced_public = {value for value in step.output_map.values() if value in public}
        read_later = {value for later in steps[position + 1:] for value in later.input_map.values()}
        assert not produced_public & read_later, step.model
    assert public <= {value for step in steps for value in step.output_map.values()}


def test_the_plain_ensemble_publishes_faces_and_landmarks() -> None:
    steps = faceswap_ensemble(2).wiring()
    copies = {name for step in steps for name in step.output_map if name.endswith(PUBLISHED_SUFFIX)}
    assert copies == {FACES + PUBLISHED_SUFFIX, LANDMARKS + PUBLISHED_SUFFIX}


def test_the_stream_ensemble_swaps_and_returns_the_steady_landmarks() -> None:
    steps = {step.model: step for step in faceswap_ensemble(2, stateful=True).wiring()}
    steady = steps[STABILIZER].output_map
    specs = model_specs(2)
    landmarks, faces = (steady_version(specs[LANDMARKER].network_outputs[0]).name,
                        steady_version(specs[DETECTOR].network_outputs[0]).name)
    assert steps[SWAPPER].input_map[LANDMARKS] == steady[landmarks]
    assert steady[landmarks + PUBLISHED_SUFFIX] == LANDMARKS
    assert steady[faces] == FACES
    assert LANDMARKS not in steps[TRACKER].output_map.values()
    assert DETECTOR not in steps and LANDMARKER not in steps  # the tracker calls them


@pytest.mark.parametrize("target", ["python-ort", "onnxruntime", "tensorrt"])
def test_the_tracker_is_a_sequence_batched_python_model_on_every_target(target: str) -> None:
    spec = model_specs(2)[TRACKER]
    options = ServingOptions(target=target)
    config = parse_text(render(model_config(spec, options, None)))
    assert config.backend == "python" and not config.HasField("dynamic_batching")
    batching = config.sequence_batching
    assert not batching.control_input and not batching.state and not config.model_warmup
    # as many candidate slots as twice the streams kept: a stream past the limit reaches the
    # model and gets its error instead of waiting in Triton's backlog
    assert batching.oldest.max_candidate_sequences == 2 * options.max_streams
    assert [t.name for t in config.output] == [FACES, LANDMARKS, PRESENCE]


@pytest.mark.parametrize("target", ["python-ort", "onnxruntime", "tensorrt"])
def test_the_stabilizer_is_sequence_batched_with_its_state_where_the_backend_keeps_it(
        target: str) -> None:
    spec = model_specs(2)[STABILIZER]
    config = parse_text(render(model_config(spec, ServingOptions(target=target), None)))
    batching = config.sequence_batching
    assert not config.HasField("dynamic_batching") and not config.model_warmup
    assert [c.name for c in batching.control_input] == [RESET]
    assert batching.control_input[0].control[0].kind == (
        mc.ModelSequenceBatching.Control.CONTROL_SEQUENCE_START)
    assert list(batching.control_input[0].control[0].fp32_false_true) == [0.0, 1.0]
    assert batching.max_sequence_idle_microseconds == 10_000_000
    names = {tensor.name for tensor in (*config.input, *config.output)}
    graph_only = {n for s in spec.states for n in (s.before.name, s.after.name)} | {RESET}
    assert not names & graph_only
    if target == "python-ort":
        assert not batching.state
        assert config.parameters["max_streams"].string_value == "32"
        assert batching.oldest.max_candidate_sequences == 64
    else:
        pairs = {(s.input_name, s.output_name) for s in batching.state}
        assert pairs == {(s.before.name, s.after.name) for s in spec.states}
        assert all(s.initial_state[0].zero_data for s in batching.state)
        assert batching.oldest.max_candidate_sequences == 32


@pytest.mark.parametrize("forensics", [False, True])
def test_the_sole_reader_of_an_ensemble_input_is_listed_first(forensics: bool) -> None:
    """Triton 2.51 charges an ensemble input that a request's pruning leaves unread to the
    config's first step: that must be the step reading it alone (the selector)."""
    for ensemble in ensembles(2, forensics):
        listed = ensemble.config_steps()
        assert sorted(s.model for s in listed) == sorted(s.model for s in ensemble.wiring())
        readers = {t.name: [s.model for s in listed if t.name in s.input_map.values()]
                   for t in ensemble.inputs}
        sole = {found[0] for found in readers.values() if len(found) == 1}
        if SELECTOR in {s.model.name for s in ensemble.steps}:
            assert sole == {SELECTOR}, ensemble.name
        assert listed[0].model in (sole or {listed[0].model}), ensemble.name


def test_two_sole_readers_are_refused() -> None:
    specs = model_specs(2)
    base = faceswap_ensemble(2)
    alone = EnsembleSpec("alone", (Step(specs[DETECTOR]), Step(specs[SELECTOR])), base.inputs,
                         ())  # the detector alone reads FRAME, the selector alone IDENTITY
    with pytest.raises(ValueError, match="detector, selector each read an ensemble input alone"):
        alone.config_steps()


@pytest.mark.parametrize("forensics", [False, True])
def test_every_ensemble_is_a_chain_so_a_refusal_leaves_nothing_running(forensics: bool) -> None:
    """Each step reads an output of the step before it, so no two steps of one request run at
    once: a step that refuses a request (an unknown IDENTITY, a full stream table) never leaves a
    sibling reading inputs that Triton 2.51 releases with the failed request (that crashed it)."""
    for ensemble in ensembles(2, forensics):
        steps = ensemble.wiring()
        for before, after in itertools.pairwise(steps):
            assert set(before.output_map.values()) & set(after.input_map.values()), (
                ensemble.name, before.model, after.model)


def test_frame_limits_come_from_the_one_table_per_target() -> None:
    specs = model_specs(2)
    served = model_config(specs[DETECTOR], ServingOptions(target="python-ort"), None)
    limits = FRAME_LIMITS["python-ort"]
    assert {key: served.parameters[f"frame_{key}"].string_value
            for key in ("min_side", "max_side", "max_pixels")} == {
        "min_side": str(limits.min_side), "max_side": str(limits.max_side),
        "max_pixels": str(limits.max_pixels)}
    profile = ProfileOptions()
    engines = FRAME_LIMITS["tensorrt"]
    assert profile.min_frame == (engines.min_side, engines.min_side)
    assert profile.max_frame == (engines.max_side, engines.max_side)
    assert engines.max_pixels == engines.max_side * engines.max_side  # type: ignore[operator]
    for target in ("onnxruntime", "tensorrt"):
        config = model_config(specs[DETECTOR], ServingOptions(target=target), None)
        assert not any(key.startswith("frame_") for key in config.parameters)
    assert set(FRAME_LIMITS) == set(TARGETS)
    strictest = STRICTEST_FRAME_LIMITS
    for other in FRAME_LIMITS.values():
        assert other.max_pixels is None or other.max_pixels >= strictest.max_pixels  # type: ignore[operator]
        assert other.max_side is None or other.max_side >= strictest.max_side  # type: ignore[operator]


def test_the_stream_models_refuse_a_stream_in_the_words_the_client_knows() -> None:
    source = (CHECKOUT / "server" / "stream_side.py").read_text()  # self-contained: not imported
    assert f'STREAM_LIMIT_ERROR = "{STREAM_LIMIT_ERROR}"' in source


@pytest.mark.parametrize(("serving", "best"), [
    (ServingOptions(target="tensorrt"), 4),
    (ServingOptions(target="tensorrt", preferred_batch_sizes=(2, 8)), 2),
    (ServingOptions(target="tensorrt", max_batch_size=16, preferred_batch_sizes=(8, 16)), 8),
    (ServingOptions(target="tensorrt", max_batch_size=2), 1)])
def test_engines_are_tuned_for_the_batch_the_batcher_prefers(serving: ServingOptions,
                                                             best: int) -> None:
    for spec in model_specs(2).values():
        if not spec.graph:
            continue
        config = model_config(spec, serving, None)
        batching = (config.sequence_batching.oldest if spec.states
                    else config.dynamic_batching)
        assert min(batching.preferred_batch_size, default=1) == best, spec.name
        assert batch_range(config) == BatchRange(1, best, serving.max_batch_size), spec.name


def test_export_takes_the_max_frame_and_batch_from_options_or_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in (MAX_FRAME_VARIABLE, MAX_BATCH_VARIABLE):
        monkeypatch.delenv(variable, raising=False)
    defaults = build_parser().parse_args(["export"])
    assert defaults.max_frame == ProfileOptions().max_frame
    assert defaults.max_batch_size == ServingOptions().max_batch_size
    assert defaults.opt_frame is None  # 720x1280, within the max frame (export/cli.py)
    given = build_parser().parse_args(["export", "--max-frame", "1080x1920", "--max-batch", "4"])
    assert (given.max_frame, given.max_batch_size) == ((1080, 1920), 4)
    assert build_parser().parse_args(["export", "--max-batch-size", "6"]).max_batch_size == 6
    monkeypatch.setenv(MAX_FRAME_VARIABLE, "720x1280")
    monkeypatch.setenv(MAX_BATCH_VARIABLE, "2")
    from_env = build_parser().parse_args(["export"])
    assert (from_env.max_frame, from_env.max_batch_size) == ((720, 1280), 2)
    monkeypatch.setenv(MAX_FRAME_VARIABLE, "")  # compose passes an unset variable as empty
    assert build_parser().parse_args(["export"]).max_frame == ProfileOptions().max_frame


def test_profiles_outside_the_frame_limits_are_refused() -> None:
    engines = FRAME_LIMITS["tensorrt"]
    ProfileOptions(opt_frame=(480, 640), max_frame=(480, 640))
    for options in ({"max_frame": (engines.max_side + 1, 64)},  # type: ignore[operator]
                    {"max_frame": (engines.min_side - 1, 1920)},  # type: ignore[operator]
                    {"opt_frame": (1080, 1920), "max_frame": (1080, 1080)}):
        with pytest.raises(ValueError, match="frame"):
            ProfileOptions(**options)  # type: ignore[arg-type]


def top_level_imports(source: str) -> set[str]:
    """The top-level names a module's source imports."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


def test_each_python_model_imports_only_what_the_export_puts_beside_it() -> None:
    """The Python models run in NVIDIA's container, which has no swaptron package: each imports
    the standard library, NumPy, Triton's stub module and the side modules copied beside it (by
    their file names), which import nothing else."""
    allowed = {*sys.stdlib_module_names, "numpy", "triton_python_backend_utils"}
    for model, module in PYTHON_MODULES.items():
        sides = SIDE_MODULES.get(model, ())
        beside = {side.rsplit(".", 1)[1] for side in sides}
        assert top_level_imports(module_source(module)) <= allowed | beside, model
        for side in sides:
            assert top_level_imports(module_source(side)) <= allowed, side
    assert "swaptron.refusals" in SIDE_MODULES[SELECTOR]  # its identity refusal
