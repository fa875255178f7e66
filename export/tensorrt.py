"""TensorRT engines: optimisation profiles, `trtexec` commands, and the one graph rewrite the
tensorrt target gets (the static check that the graphs parse is export/tensorrt_check.py).

TensorRT engines belong to the GPU and TensorRT version that build them, so they are built on
the GPU host: with the TensorRT Python API when it is importable here, otherwise by the
`build_engines.sh` script this module writes next to the repository, which the compose `engines`
service (and the Kubernetes init container) runs with the `trtexec` of NVIDIA's Triton image.
"""

from __future__ import annotations

import importlib.util
import math
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from tritonclient.grpc import model_config_pb2 as mc

from swaptron.export.cli import MAX_BATCH_VARIABLE, MAX_FRAME_VARIABLE
from swaptron.specs import FRAME_LIMITS, ModelSpec, TensorSpec

TENSORRT_LIMITS = FRAME_LIMITS["tensorrt"]
MIN_SIDE: int = TENSORRT_LIMITS.min_side  # type: ignore[assignment]
MAX_SIDE: int = TENSORRT_LIMITS.max_side  # type: ignore[assignment]

ENGINE_SCRIPT = "build_engines.sh"
MANIFEST = "engines.json"
MANIFEST_FORMAT = '{"gpu": "%s", "tensorrt": "%s", "inputs": "%s"}'
TENSORRT_RELEASE = "TensorRT 10.5 (the Triton 24.10 image)"
# TensorRT 10.5 removed Volta (7.0); Pascal (6.x) went in TensorRT 10.0: Turing is the floor
MIN_COMPUTE_CAPABILITY = (7, 5)
FLOAT_COPY_BYTES = 4  # a uint8 frame inside a graph is worked on as float32


@dataclass(frozen=True)
class ProfileOptions:
    """Frame sizes the engines are optimised for (min / opt / max, height x width) and how they
    are built. The batch range is each model's config's (batch_range). ValueError when a side
    is outside the tensorrt target's frame limits or opt exceeds max."""

    min_frame: tuple[int, int] = (MIN_SIDE, MIN_SIDE)
    opt_frame: tuple[int, int] = (720, 1280)
    max_frame: tuple[int, int] = (MAX_SIDE, MAX_SIDE)
    fp16: bool = False  # the graphs' networks run in float16 (GraphOptions.fp16_networks)
    workspace_mib: int = 2048

    def __post_init__(self) -> None:
        for name, sides in (("max frame", self.max_frame), ("opt frame", self.opt_frame)):
            if not all(MIN_SIDE <= side <= MAX_SIDE for side in sides):
                raise ValueError(f"the {name} {frame_text(sides)} needs sides between "
                                 f"{MIN_SIDE} and {MAX_SIDE}")
        if not all(o <= m for o, m in zip(self.opt_frame, self.max_frame, strict=True)):
            raise ValueError(f"the opt frame {frame_text(self.opt_frame)} is larger than the max "
                             f"frame {frame_text(self.max_frame)}")


@dataclass(frozen=True)
class BatchRange:
    """Batch sizes of an engine's profile."""

    low: int
    best: int
    high: int


def batch_range(config: mc.ModelConfig) -> BatchRange:
    """A model's batch range from its config: 1; the smallest batch its batcher prefers (the
    configs' preferred_batch_size, 1 without a batcher), which the kernels are tuned for; and
    its max_batch_size."""
    preferred = [*config.dynamic_batching.preferred_batch_size,
                 *config.sequence_batching.oldest.preferred_batch_size]
    return BatchRange(1, min(preferred, default=1), config.max_batch_size)


def frame_text(frame: tuple[int, int]) -> str:
    """(720, 1280) -> `720x1280`."""
    return f"{frame[0]}x{frame[1]}"


def tensorrt_available() -> bool:
    """True when the TensorRT Python API can be imported here."""
    return importlib.util.find_spec("tensorrt") is not None


def shape_at(tensor: TensorSpec, batch: int, frame: tuple[int, int]) -> tuple[int, ...]:
    """A tensor's shape, batch first; its -1 dims take the frame's height and width."""
    dims = [frame[0] if i == 0 and d == -1 else frame[1] if i == 1 and d == -1 else d
            for i, d in enumerate(tensor.dims)]
    return (batch, *dims)


def profile_shapes(spec: ModelSpec, options: ProfileOptions, batches: BatchRange
                   ) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """min/opt/max shape of every input, batch first; -1 dims take the frame's height/width."""
    return {tensor.name: (shape_at(tensor, batches.low, options.min_frame),
                          shape_at(tensor, batches.best, options.opt_frame),
                          shape_at(tensor, batches.high, options.max_frame))
            for tensor in spec.graph_inputs}


def reserved_bytes(spec: ModelSpec, options: ProfileOptions, batches: BatchRange) -> int:
    """A floor on the GPU memory an engine holds for its largest shapes: every input and output
    at the max batch and frame, each frame-sized one counted again as the float32 copy the graph
    computes on. TensorRT's own intermediate tensors come on top."""
    total = 0
    for tensor in (*spec.graph_inputs, *spec.graph_outputs):
        elements = math.prod(shape_at(tensor, batches.high, options.max_frame))
        item = np.dtype(tensor.numpy_type).itemsize
        total += elements * (item + (FLOAT_COPY_BYTES if -1 in tensor.dims else 0))
    return total


def size_text(size: float) -> str:
    """Bytes in words: `1.2 GiB`, `422 MiB`, `14 KiB`."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}" if unit == "GiB" else f"{size / scale:.0f} {unit}"
    return f"{size / 2**10:.0f} KiB"


def memory_summary(engines: list[tuple[ModelSpec, BatchRange]], options: ProfileOptions) -> str:
    """One line: the estimated GPU memory of each engine at its largest shapes, and in all."""
    sizes = [(spec.name, reserved_bytes(spec, options, batches)) for spec, batches in engines]
    batch = max((batches.high for _, batches in engines), default=0)
    listing = ", ".join(f"{name} {size_text(size)}" for name, size in sizes)
    return (f"GPU memory the engines hold at their largest shapes (batch {batch}, frames "
            f"{frame_text(options.max_frame)}), estimated as their inputs and outputs at those "
            f"shapes with each frame also as float32 (intermediate tensors come on top): "
            f"{listing}; at least {size_text(sum(size for _, size in sizes))} in all")


def shape_argument(shapes: dict[str, tuple[tuple[int, ...], ...]], level: int) -> str:
    """`NAME:1x64x64x3,OTHER:...` for trtexec's --minShapes/--optShapes/--maxShapes."""
    return ",".join(f"{name}:{'x'.join(str(d) for d in levels[level])}"
                    for name, levels in shapes.items())


def trtexec_command(spec: ModelSpec, onnx_path: str, plan_path: str,
                    options: ProfileOptions, batches: BatchRange) -> list[str]:
    """The trtexec command that builds one model's engine."""
    shapes = profile_shapes(spec, options, batches)
    return ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={plan_path}",
            f"--minShapes={shape_argument(shapes, 0)}",
            f"--optShapes={shape_argument(shapes, 1)}",
            f"--maxShapes={shape_argument(shapes, 2)}",
            f"--memPoolSize=workspace:{options.workspace_mib}M", "--skipInference",
            # precisions come from the ONNX types: float16 networks with --fp16, float32
            # geometry and int64 indices always (never FP16 index math)
            "--stronglyTyped"]


def gpu_checks() -> list[str]:
    """Script lines: a GPU is visible and TensorRT can build for it (compute capability), both
    asked of nvidia-smi before anything runs trtexec."""
    major, minor = MIN_COMPUTE_CAPABILITY
    need = f"{major}.{minor}"
    return [
        'if ! gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | sed -n 1p) || '
        '[ -z "$gpu" ]; then',
        '  echo "no GPU visible: install the NVIDIA driver and NVIDIA Container Toolkit" >&2',
        "  exit 1",
        "fi",
        'cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>&1 | sed -n 1p || true)',
        'if [[ $cap =~ ^([0-9]+)\\.([0-9]+)$ ]]; then',
        f"  if (( 10#${{BASH_REMATCH[1]}} * 100 + 10#${{BASH_REMATCH[2]}} < "
        f"{major * 100 + minor} )); then",
        f'    echo "the $gpu has compute capability $cap: {TENSORRT_RELEASE} builds engines '
        f'for compute capability {need} (Turing) or later only; serve the onnxruntime target '
        f'on this host instead" >&2',
        "    exit 1",
        "  fi",
        "else",
        f'  echo "the compute capability of the $gpu is unknown (nvidia-smi: $cap): not '
        f'checked; {TENSORRT_RELEASE} needs {need} or later" >&2',
        "fi",
    ]


def profile_check(max_frame: str, max_batch: int) -> list[str]:
    """Script lines: stop when the deployment (SWAPTRON_MAX_FRAME / SWAPTRON_MAX_BATCH, where
    set) asks for another profile than the one the repository was exported with."""
    frame = f"${{{MAX_FRAME_VARIABLE}:-{max_frame}}}"
    batch = f"${{{MAX_BATCH_VARIABLE}:-{max_batch}}}"
    return [
        f'if [ "{frame}" != {max_frame} ] || [ "{batch}" != {max_batch} ]; then',
        f'  echo "this repository was exported for frames up to {max_frame} and batches up to '
        f"{max_batch}, the deployment asks {MAX_FRAME_VARIABLE}={frame} "
        f"{MAX_BATCH_VARIABLE}={batch}: export again with swaptron export --target tensorrt "
        f'--max-frame {frame} --max-batch-size {batch}, or give the deployment the '
        'export\'s values" >&2',
        "  exit 1",
        "fi",
    ]


def build_script(specs: list[ModelSpec], options: ProfileOptions,
                 batches: dict[str, BatchRange]) -> str:
    """Shell script that builds every engine in place, once per GPU, TensorRT and input set.

    It first stops when the deployment asks for another profile, when no GPU is visible, or when
    the GPU's compute capability is under what TensorRT supports, all before any trtexec run.
    The manifest records the GPU name, the TensorRT version and a digest of the ONNX files and
    of this script (so of the profiles); a later run with the same three skips the build. Engines
    are written next to their ONNX (`<model>/1/model.plan`), through a `.part` file, and given the
    owner of the script so a root container leaves no root-owned files in the host folder.
    """
    onnx_files = " ".join(f"{spec.name}/1/model.onnx" for spec in specs)
    plans = " ".join(f"{spec.name}/1/model.plan" for spec in specs)
    engines = [(spec, batches[spec.name]) for spec in specs]
    max_batch = max((b.high for _, b in engines), default=0)
    lines = [
        "#!/usr/bin/env bash",
        "# Generated by `swaptron export --target tensorrt`: builds the TensorRT engines for this",
        f"# GPU with this TensorRT, once; {MANIFEST} records both and a digest of the ONNX files",
        "# and of this script, so later starts skip the work until one of them changes.",
        "set -euo pipefail",
        'cd "$(dirname "$0")"',
        *profile_check(frame_text(options.max_frame), max_batch),
        *gpu_checks(),
        "TRTEXEC=${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}",
        'if [ ! -x "$TRTEXEC" ]; then',
        '  echo "no trtexec at $TRTEXEC: run this in the Triton or TensorRT image" >&2',
        "  exit 1",
        "fi",
        'trt=$("$TRTEXEC" --help 2>&1 | grep -o "TensorRT v[0-9]*" | sed -n 1p || true)',
        'if [ -z "$trt" ]; then trt="trtexec $(sha256sum < "$TRTEXEC" | cut -c1-16)"; fi',
        f"inputs=$(cat {ENGINE_SCRIPT} {onnx_files} | sha256sum | cut -c1-16)",
        f"want=$(printf '{MANIFEST_FORMAT}' \"$gpu\" \"$trt\" \"$inputs\")",
        f"echo {shlex.quote(memory_summary(engines, options))}",
        f'if [ -f {MANIFEST} ] && [ "$(cat {MANIFEST})" = "$want" ] && \\',
        "   " + " && ".join(f"[ -s {s.name}/1/model.plan ]" for s in specs) + "; then",
        '  echo "engines for $gpu / $trt already built"; exit 0',
        "fi",
        f"rm -f {MANIFEST}",
    ]
    for spec, batch in engines:
        plan = f"{spec.name}/1/model.plan"
        command = trtexec_command(spec, f"{spec.name}/1/model.onnx", f"{plan}.part", options,
                                  batch)
        command[0] = '"$TRTEXEC"'
        lines.append(f'echo "building the {spec.name} engine on $gpu with $trt '
                     '(first start: minutes)"')
        lines.append(" ".join(command[:1] + [shlex.quote(part) for part in command[1:]]))
        lines.append(f"mv -f {plan}.part {plan}")
    lines.append(f"printf '%s\\n' \"$want\" > {MANIFEST}")
    lines.append(f"chown --reference={ENGINE_SCRIPT} {MANIFEST} {plans} 2>/dev/null || true")
    lines.append('echo "engines built for $gpu / $trt"')
    return "\n".join(lines) + "\n"


def build_with_api(spec: ModelSpec, onnx_path: Path, plan_path: Path,
                   options: ProfileOptions, batches: BatchRange) -> None:
    """Build one engine with the TensorRT Python API (GPU hosts with `tensorrt` installed)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(
        1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    profile = builder.create_optimization_profile()
    for name, (low, best, high) in profile_shapes(spec, options, batches).items():
        profile.set_shape(name, low, best, high)
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise RuntimeError(f"TensorRT failed to build {spec.name}")
    plan_path.write_bytes(bytes(engine))


def cast_input(node: onnx.NodeProto | None, to: int) -> str | None:
    """The input of a Cast to the given ONNX type; None for any other node."""
    if node is None or node.op_type != "Cast":
        return None
    return node.input[0] if any(a.name == "to" and a.i == to for a in node.attribute) else None


def publish_from_float(model: onnx.ModelProto) -> int:
    """Cast each published uint8 copy from the float its output is cast from.

    A uint8 output's copy is traced as Cast(uint8 -> float) -> Cast(float -> uint8) of the
    output itself (onnx_export.copy), so the graph output (SWAPPED) was also a layer's input.
    When the output is a Cast to uint8 of a float (the clipped blend of the fixed-shape
    swapper), the copy's last Cast takes that float instead: the same values, and no layer reads
    the output. Returns how many copies were rewired; the model is changed in place.
    """
    graph = model.graph
    outputs = {output.name for output in graph.output}
    producer = {name: node for node in graph.node for name in node.output}
    widenings = []
    for name in outputs:
        last = producer[name]
        widened = cast_input(last, onnx.TensorProto.UINT8)
        output = cast_input(producer.get(widened or ""), onnx.TensorProto.FLOAT)
        source = cast_input(producer.get(output or ""), onnx.TensorProto.UINT8)
        if output in outputs and source is not None:
            last.input[0] = source
            widenings.append(producer[widened or ""])
    read = {name for node in graph.node for name in node.input}
    for node in widenings:
        if node.output[0] not in read:
            graph.node.remove(node)
    return len(widenings)
