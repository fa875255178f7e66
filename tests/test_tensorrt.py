"""The tensorrt target's graphs: TensorRT 10.5-clean, equal to the CPU graphs and to the graphs
before the rewrite on real frames, deterministic where faces overlap, safe in FP16, and with no
layer reading a uint8 output. Then build_engines.sh, generated from the specs and run offline with
stand-ins for nvidia-smi and trtexec: it stops on a GPU TensorRT 10.5 cannot build for, and on a
deployment asking for another profile, before any trtexec run; its profile takes the configs'
batch sizes and the export's max frame; it prints the GPU memory the engines hold."""

from __future__ import annotations

import copy
import subprocess
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from swaptron.export import onnx_export, tensorrt_check
from swaptron.export.cli import MAX_BATCH_VARIABLE, MAX_FRAME_VARIABLE
from swaptron.export.repository import ServingOptions, model_config
from swaptron.export.tensorrt import (
    ENGINE_SCRIPT,
    MIN_COMPUTE_CAPABILITY,
    BatchRange,
    ProfileOptions,
    batch_range,
    build_script,
    frame_text,
    publish_from_float,
    reserved_bytes,
    size_text,
)
from swaptron.networks.pipeline import PipelineOptions
from swaptron.networks.watermark import MarkOptions
from swaptron.server.ort_session import OrtChain
from swaptron.specs import (
    FRAME,
    NETWORKS,
    PUBLISHED_SUFFIX,
    SWAPPED,
    SWAPPER,
    ModelSpec,
    model_specs,
)
from swaptron.specs import frame as frame_tensor

from helpers import export_target

REFERENCE = Path(__file__).resolve().parent / "data" / "graphs-before-tensorrt-rewrite.npz"


@pytest.fixture(scope="module")
def tensorrt_fp16_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tensorrt target with --fp16: float16 networks, float32 geometry."""
    return export_target(tmp_path_factory, "tensorrt", profiles=ProfileOptions(fp16=True))


@pytest.mark.parametrize("fp16", [False, True])
def test_tensorrt_graphs_pass_the_check_and_cpu_graphs_only_declare_shapes(
        tensorrt_repository: Path, tensorrt_fp16_repository: Path,
        exported_repository: Path, fp16: bool) -> None:
    repository = tensorrt_fp16_repository if fp16 else tensorrt_repository
    for name in NETWORKS:
        findings = tensorrt_check.check_file(repository / name / "1" / "model.onnx")
        assert findings == [], [str(f) for f in findings]
        cpu = tensorrt_check.check_file(exported_repository / name / "1" / "model.onnx")
        # the CPU graphs differ only by data-dependent shapes and by their uint8 shortcuts
        # (crops gathered from the uint8 frame, the blend written into it)
        uint8 = [f for f in cpu if f.rule in {"UINT8_CONVERSION", "UINT8_INTERMEDIATE"}
                 or (f.rule == "INPUT_TYPE" and "UINT8" in str(f))]
        assert {f.rule for f in cpu if f not in uint8} <= {"DATA_DEPENDENT_SHAPE"}, [
            str(f) for f in cpu]


def test_new_graphs_give_the_outputs_of_the_graphs_before_the_rewrite(
        tmp_path_factory: pytest.TempPathFactory, megamind_frames: list[np.ndarray]) -> None:
    """The reference was made with the short-range detector, the default then, and before the
    swapper marked its faces (the mark, off here, is checked in tests/unit/test_watermark.py)."""
    reference = np.load(REFERENCE)
    short = PipelineOptions(face_detector="short", detector=None,
                            mark=MarkOptions(enabled=False))
    for target in ("python-ort", "tensorrt"):
        repository = export_target(tmp_path_factory, target, short)
        chain = OrtChain.open(repository)
        for index in reference["frames"]:
            out, _ = chain.run(megamind_frames[index][None])
            np.testing.assert_allclose(out["FACES"][0], reference[f"faces_{index}"], atol=1e-3)
            np.testing.assert_allclose(out["LANDMARKS"][0], reference[f"landmarks_{index}"],
                                       atol=1e-2)
            x1, y1, x2, y2 = reference[f"box_{index}"]
            crop = out["SWAPPED"][0, y1:y2, x1:x2].astype(int)
            assert np.abs(crop - reference[f"swapped_{index}"]).max() <= 1, (repository, index)


def test_cpu_and_tensorrt_graphs_agree_on_every_frame(
        tensorrt_repository: Path, exported_repository: Path,
        megamind_frames: list[np.ndarray]) -> None:
    cpu, fixed = OrtChain.open(exported_repository), OrtChain.open(tensorrt_repository)
    for frame in megamind_frames[::15]:
        (a, _), (b, _) = cpu.run(frame[None]), fixed.run(frame[None])
        np.testing.assert_allclose(a["LANDMARKS"], b["LANDMARKS"], atol=1e-3)
        assert np.abs(a["SWAPPED"].astype(int) - b["SWAPPED"].astype(int)).max() <= 1


def overlapping_inputs(chain: OrtChain, frame: np.ndarray, presence: tuple[float, float]
                       ) -> dict[str, np.ndarray]:
    """The swapper's inputs for one real face (slot 0) and the same face 60 px to the right and
    10 px down (slot 1), so that their windows overlap."""
    found, _ = chain.run(frame[None])
    landmarks = found["LANDMARKS"].copy()
    landmarks[0, 1] = landmarks[0, 0] + np.array([60.0, 10.0], np.float32)
    return {"FRAME": frame[None], "LANDMARKS": landmarks,
            "PRESENCE": np.array([presence], np.float32),
            "TARGET": found["TARGET"], "LARGEST_ONLY": found["LARGEST_ONLY"]}


def test_overlapping_faces_blend_the_same_way_every_time_with_slot_0_on_top(
        tensorrt_repository: Path, exported_repository: Path,
        megamind_frames: list[np.ndarray]) -> None:
    frame = megamind_frames[120]
    cpu, fixed = OrtChain.open(exported_repository), OrtChain.open(tensorrt_repository)
    both = overlapping_inputs(cpu, frame, (1.0, 1.0))
    runs = [cpu.run_network("swapper", both)["SWAPPED"][0] for _ in range(3)]
    runs.append(fixed.run_network("swapper", both)["SWAPPED"][0])
    for other in runs[1:]:
        assert np.abs(other.astype(int) - runs[0].astype(int)).max() <= 1
    alone = {slot: cpu.run_network("swapper", overlapping_inputs(
        cpu, frame, (1.0, 0.0) if slot == 0 else (0.0, 1.0)))["SWAPPED"][0] for slot in (0, 1)}
    changed_by = {slot: np.abs(alone[slot].astype(int) - frame.astype(int)).max(axis=2) > 0
                  for slot in (0, 1)}
    overlap = changed_by[0] & changed_by[1]
    assert overlap.sum() > 1000  # the two faces really do overlap
    rows, columns = np.nonzero(overlap)  # a point of face 0 in the middle of the overlap
    centre = np.array([columns.mean(), rows.mean()])
    points = both["LANDMARKS"][0, 0]
    x, y = points[np.argmin(np.linalg.norm(points - centre, axis=1))].astype(int)
    patch = (slice(y - 3, y + 4), slice(x - 3, x + 4))
    assert overlap[patch].all()
    np.testing.assert_array_equal(runs[0][patch], alone[0][patch])  # slot 0 is on top
    assert (runs[0][patch] != alone[1][patch]).any()
    near_face_0 = cv2.dilate(changed_by[0].astype(np.uint8), np.ones((21, 21), np.uint8)) > 0
    only_one = changed_by[1] & ~near_face_0  # slot 1's far side, where slot 0 has no weight
    assert only_one.sum() > 1000
    # the same pixels, but for float rounding: the CPU graph samples each face through the
    # window the batch's faces fall in, so another face moves a rare pixel by one level
    difference = np.abs(runs[0][only_one].astype(int) - alone[1][only_one].astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 0.001


def test_fp16_networks_match_fp32_within_the_stated_tolerance(
        tensorrt_repository: Path, tensorrt_fp16_repository: Path,
        megamind_frames: list[np.ndarray]) -> None:
    """ONNX Runtime runs the float16 nodes on a CPU by casting them back to float32, so this
    measures float16 weights and the casts around the networks, not TensorRT's kernels."""
    full, half = OrtChain.open(tensorrt_repository), OrtChain.open(tensorrt_fp16_repository)
    for frame in megamind_frames[::27]:
        (a, _), (b, _) = full.run(frame[None]), half.run(frame[None])
        assert np.abs(a["FACES"] - b["FACES"]).max() <= 0.5  # pixels (and scores)
        assert np.abs(a["LANDMARKS"] - b["LANDMARKS"]).max() <= 1.0  # pixels
        difference = np.abs(a["SWAPPED"].astype(int) - b["SWAPPED"].astype(int))
        assert difference.max() <= 4 and (difference > 2).mean() <= 0.001


# --- no layer reads a uint8 output ----------------------------------------------------------


def readers(model: onnx.ModelProto, name: str) -> list[onnx.NodeProto]:
    """The nodes that take a tensor as an input."""
    return [node for node in model.graph.node if name in node.input]


def producer(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    """The node that writes a tensor."""
    (found,) = [node for node in model.graph.node if name in node.output]
    return found


class Brighten(torch.nn.Module):
    """A frame in, a uint8 frame out through a clipped float: the swapper's last steps."""

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        """uint8 [B,H,W,3] -> uint8 [B,H,W,3], 1.5 times brighter."""
        return (frame.to(torch.float32) * 1.5).round().clamp(0.0, 255.0).to(torch.uint8)


def test_the_published_copy_of_a_uint8_output_is_cast_from_the_clipped_float() -> None:
    spec = ModelSpec("brighten", (frame_tensor(),), (frame_tensor(SWAPPED),), "test",
                     publishes=(SWAPPED,))
    frames = np.random.default_rng(0).integers(0, 256, (2, 16, 24, 3), dtype=np.uint8)
    traced = onnx_export.to_onnx(Brighten(), spec, {FRAME: frames}, "test")
    assert [node.op_type for node in readers(traced, SWAPPED)] == ["Cast"]  # as traced
    model = copy.deepcopy(traced)
    assert publish_from_float(model) == 1
    onnx.checker.check_model(model)
    copied = producer(model, SWAPPED + PUBLISHED_SUFFIX)
    assert readers(model, SWAPPED) == []
    assert copied.op_type == "Cast" and copied.input == producer(model, SWAPPED).input
    assert tensorrt_check.check_model(model) == []
    assert publish_from_float(model) == 0  # nothing left to rewire
    outputs = spec.graph_output_names()
    before, after = (ort.InferenceSession(m.SerializeToString()).run(outputs, {FRAME: frames})
                     for m in (traced, model))
    for old, new in zip(before, after, strict=True):
        np.testing.assert_array_equal(old, new)
    np.testing.assert_array_equal(after[1], Brighten()(torch.from_numpy(frames)).numpy())


def test_no_layer_of_the_tensorrt_graphs_reads_a_uint8_output(tensorrt_repository: Path) -> None:
    for name in NETWORKS:
        model = onnx.load(str(tensorrt_repository / name / "1" / "model.onnx"))
        for output in model.graph.output:
            if output.type.tensor_type.elem_type == onnx.TensorProto.UINT8:
                assert readers(model, output.name) == [], (name, output.name)
    swapper = onnx.load(str(tensorrt_repository / SWAPPER / "1" / "model.onnx"))
    copied = producer(swapper, SWAPPED + PUBLISHED_SUFFIX)
    assert copied.op_type == "Cast" and copied.input == producer(swapper, SWAPPED).input
    assert producer(swapper, copied.input[0]).op_type == "Clip"  # the clipped float


# --- build_engines.sh, run with stand-ins for the GPU tools ----------------------------------


FAKE_NVIDIA_SMI = """#!/usr/bin/env bash
case "$*" in
  *--query-gpu=name*) [ -n "$FAKE_GPU" ] || exit 9; echo "$FAKE_GPU" ;;
  *--query-gpu=compute_cap*) echo "$FAKE_CAP" ;;
  *) exit 2 ;;
esac
"""
FAKE_TRTEXEC = """#!/usr/bin/env bash
echo "$*" >> "$TRTEXEC_LOG"
if [ "${1:-}" = "--help" ]; then echo "&&&& RUNNING TensorRT.trtexec [TensorRT v100500]"; exit 0; fi
for arg in "$@"; do
  case "$arg" in --saveEngine=*) printf 'engine' > "${arg#--saveEngine=}" ;; esac
done
"""


DEFAULT_PROFILE = ProfileOptions()
TENSORRT_SERVING = ServingOptions(target="tensorrt")


@dataclass(frozen=True)
class ScriptRun:
    """One run of build_engines.sh: exit status, output, and every trtexec command line."""

    returncode: int
    output: str
    trtexec: list[str]


def engine_script(folder: Path, options: ProfileOptions = DEFAULT_PROFILE,
                  serving: ServingOptions = TENSORRT_SERVING) -> Path:
    """A repository holding build_engines.sh for every graph of the specs (placeholder ONNX
    files: the script only digests them), with batch ranges from the configs as the export
    takes them."""
    specs = [spec for spec in model_specs(2).values() if spec.graph]
    batches = {spec.name: batch_range(model_config(spec, serving, None)) for spec in specs}
    for spec in specs:
        (folder / spec.name / "1").mkdir(parents=True)
        (folder / spec.name / "1" / "model.onnx").write_bytes(spec.name.encode())
    script = folder / ENGINE_SCRIPT
    script.write_text(build_script(specs, options, batches))
    return script


def run_script(script: Path, tools: Path, gpu: str, cap: str, trtexec: bool = True,
               **variables: str) -> ScriptRun:
    """Run the script with the stand-in nvidia-smi (this name and compute capability) and
    trtexec (or none) first on PATH."""
    for name, text in (("nvidia-smi", FAKE_NVIDIA_SMI), ("trtexec", FAKE_TRTEXEC)):
        (tools / name).write_text(text)
        (tools / name).chmod(0o755)
    log = tools / "trtexec.log"
    log.write_text("")
    env = {"PATH": f"{tools}:/usr/bin:/bin", "TRTEXEC_LOG": str(log), "FAKE_GPU": gpu,
           "FAKE_CAP": cap, **variables,
           "TRTEXEC": str(tools / "trtexec") if trtexec else str(tools / "absent")}
    result = subprocess.run(["bash", str(script)], cwd=tools, env=env, capture_output=True,
                            text=True, timeout=60, check=False)
    return ScriptRun(result.returncode, result.stdout + result.stderr,
                     log.read_text().splitlines())


@pytest.fixture
def tools(tmp_path: Path) -> Path:
    """An empty folder for the stand-in tools."""
    folder = tmp_path / "tools"
    folder.mkdir()
    return folder


@pytest.mark.parametrize(("gpu", "cap"), [("Tesla V100-SXM2-16GB", "7.0"), ("Tesla P4", "6.1")])
def test_a_gpu_under_turing_stops_the_build_naming_the_card_before_trtexec(
        tmp_path: Path, tools: Path, gpu: str, cap: str) -> None:
    script = engine_script(tmp_path / "repository")
    need = ".".join(map(str, MIN_COMPUTE_CAPABILITY))
    for trtexec in (True, False):
        run = run_script(script, tools, gpu, cap, trtexec=trtexec)
        assert run.returncode != 0
        assert f"the {gpu} has compute capability {cap}" in run.output, run.output
        assert f"compute capability {need} (Turing) or later" in run.output
        assert "no trtexec" not in run.output
        assert run.trtexec == []  # not even `trtexec --help`
    assert not list((tmp_path / "repository").glob("*/1/model.plan*"))


def test_turing_and_later_build_and_an_unknown_capability_only_warns(
        tmp_path: Path, tools: Path) -> None:
    script = engine_script(tmp_path / "repository")
    engines = len([s for s in model_specs(2).values() if s.graph])
    turing = run_script(script, tools, "Tesla T4", "7.5")
    assert turing.returncode == 0, turing.output
    assert len(turing.trtexec) == 1 + engines  # --help, then one build per engine
    (tmp_path / "repository" / "engines.json").unlink()
    ampere = run_script(script, tools, "NVIDIA A10G", "8.6")
    assert ampere.returncode == 0 and len(ampere.trtexec) == 1 + engines, ampere.output
    (tmp_path / "repository" / "engines.json").unlink()
    old_driver = run_script(script, tools, "NVIDIA L4",
                            'Field "compute_cap" is not a valid field to query.')
    assert old_driver.returncode == 0, old_driver.output
    assert "compute capability of the NVIDIA L4 is unknown" in old_driver.output


def test_the_profile_takes_the_configs_batches_and_the_export_max_frame(
        tmp_path: Path, tools: Path) -> None:
    serving = ServingOptions(target="tensorrt", max_batch_size=4, preferred_batch_sizes=(2, 4))
    options = ProfileOptions(opt_frame=(720, 1280), max_frame=(1080, 1920))
    script = engine_script(tmp_path / "repository", options, serving)
    run = run_script(script, tools, "NVIDIA L4", "8.9")
    assert run.returncode == 0, run.output
    builds = [line.split() for line in run.trtexec if "--onnx=" in line]
    assert builds
    for flags in builds:
        shapes = {flag.split("=", 1)[0]: flag.split("=", 1)[1] for flag in flags if "=" in flag}
        frame_shapes = {level: [shape for shape in shapes[f"--{level}Shapes"].split(",")
                                if shape.startswith(f"{FRAME}:")] for level in ("opt", "max")}
        batches = {level: {shape.split(":")[1].split("x")[0]
                           for shape in shapes[f"--{level}Shapes"].split(",")}
                   for level in ("min", "opt", "max")}
        assert batches == {"min": {"1"}, "opt": {"2"}, "max": {"4"}}, flags
        assert all(s == f"{FRAME}:2x720x1280x3" for s in frame_shapes["opt"])
        assert all(s == f"{FRAME}:4x1080x1920x3" for s in frame_shapes["max"])
    unbatched = ServingOptions(target="tensorrt", dynamic_batching=False)
    ranges = {spec.name: batch_range(model_config(spec, unbatched, None))
              for spec in model_specs(2).values() if spec.graph}
    assert ranges[SWAPPER] == BatchRange(1, 1, 8)  # requests come one frame at a time


def test_the_build_log_estimates_the_gpu_memory_from_the_max_shapes(
        tmp_path: Path, tools: Path) -> None:
    big, small = ProfileOptions(), ProfileOptions(opt_frame=(480, 640), max_frame=(960, 960))
    swapper, batches = model_specs(2)[SWAPPER], BatchRange(1, 4, 8)
    frame_bytes = 8 * 1920 * 1920 * 3
    # FRAME in, SWAPPED and its published copy out, each uint8 and again as float32
    floor = reserved_bytes(swapper, big, batches)
    assert 3 * frame_bytes * 5 < floor < 3 * frame_bytes * 5 + (1 << 20)
    assert reserved_bytes(swapper, small, batches) < floor / 3.9
    assert reserved_bytes(swapper, big, BatchRange(1, 4, 4)) < floor / 1.9
    run = run_script(engine_script(tmp_path / "repository"), tools, "NVIDIA L4", "8.9")
    assert run.returncode == 0, run.output
    (line,) = [line for line in run.output.splitlines() if line.startswith("GPU memory")]
    assert f"{SWAPPER} {size_text(floor)}" in line
    assert f"frames {frame_text(big.max_frame)}" in line and "batch 8" in line


def test_a_deployment_asking_another_profile_stops_before_trtexec(
        tmp_path: Path, tools: Path) -> None:
    script = engine_script(tmp_path / "repository")
    for variables in ({MAX_FRAME_VARIABLE: "1080x1920"}, {MAX_BATCH_VARIABLE: "4"}):
        run = run_script(script, tools, "NVIDIA L4", "8.9", **variables)
        assert run.returncode != 0 and run.trtexec == [], run.output
        assert "export again with swaptron export --target tensorrt" in run.output
        assert all(f"{k}={v}" in run.output for k, v in variables.items())
    same = {MAX_FRAME_VARIABLE: frame_text(ProfileOptions().max_frame), MAX_BATCH_VARIABLE: "8"}
    for variables in (same, {MAX_FRAME_VARIABLE: "", MAX_BATCH_VARIABLE: ""}):
        run = run_script(script, tools, "NVIDIA L4", "8.9", **variables)
        assert run.returncode == 0, run.output
        (tmp_path / "repository" / "engines.json").unlink()
