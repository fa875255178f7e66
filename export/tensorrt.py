"""TensorRT engines: optimisation profiles, `trtexec` commands, and the op support check.

TensorRT engines belong to the GPU and TensorRT version that build them, so they are built on
the GPU host: with the TensorRT Python API when it is importable here, otherwise by the
`build_engines.sh` script this module writes next to the repository, which the compose `engines`
service runs with the `trtexec` of NVIDIA's Triton image.
"""

from __future__ import annotations

import importlib.util
import shlex
from dataclasses import dataclass
from pathlib import Path

from swaptron.export.specs import FRAME_MAX_SIDE, FRAME_MIN_SIDE, ModelSpec

# Ops the ONNX-TensorRT parser imports (the "Y" rows of onnx-tensorrt's docs/operators.md for
# TensorRT 8.5, opset 17; later TensorRT releases support a superset).
TENSORRT_ONNX_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast
Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace
DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather
GatherElements GatherND Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater
GreaterOrEqual GridSample GRU HardSwish HardSigmoid Identity If ImageScaler
InstanceNormalization IsNaN LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM
LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization Min Mod Mul Neg
NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear
RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1
ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter
ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus
Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose
Trilu Unsqueeze Upsample Where Xor
""".split())

ENGINE_SCRIPT = "build_engines.sh"
MANIFEST = "engines.json"
MANIFEST_FORMAT = '{"gpu": "%s", "tensorrt": "%s", "inputs": "%s"}'


@dataclass(frozen=True)
class ProfileOptions:
    """Shapes the engines are optimised for: batch and frame size (min / opt / max)."""

    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 8
    min_frame: tuple[int, int] = (FRAME_MIN_SIDE, FRAME_MIN_SIDE)
    opt_frame: tuple[int, int] = (720, 1280)
    max_frame: tuple[int, int] = (FRAME_MAX_SIDE, FRAME_MAX_SIDE)
    fp16: bool = True
    workspace_mib: int = 2048


def tensorrt_available() -> bool:
    """True when the TensorRT Python API can be imported here."""
    return importlib.util.find_spec("tensorrt") is not None


def profile_shapes(spec: ModelSpec, options: ProfileOptions
                   ) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """min/opt/max shape of every input, batch first; -1 dims take the frame's height/width."""
    shapes = {}
    for tensor in spec.inputs:
        per_level = []
        for batch, (height, width) in ((options.min_batch, options.min_frame),
                                       (options.opt_batch, options.opt_frame),
                                       (options.max_batch, options.max_frame)):
            dims = [height if i == 0 and d == -1 else width if i == 1 and d == -1 else d
                    for i, d in enumerate(tensor.dims)]
            per_level.append((batch, *dims))
        shapes[tensor.name] = (per_level[0], per_level[1], per_level[2])
    return shapes


def shape_argument(shapes: dict[str, tuple[tuple[int, ...], ...]], level: int) -> str:
    """`NAME:1x64x64x3,OTHER:...` for trtexec's --minShapes/--optShapes/--maxShapes."""
    return ",".join(f"{name}:{'x'.join(str(d) for d in levels[level])}"
                    for name, levels in shapes.items())


def trtexec_command(spec: ModelSpec, onnx_path: str, plan_path: str,
                    options: ProfileOptions) -> list[str]:
    """The trtexec command that builds one model's engine."""
    shapes = profile_shapes(spec, options)
    command = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={plan_path}",
               f"--minShapes={shape_argument(shapes, 0)}",
               f"--optShapes={shape_argument(shapes, 1)}",
               f"--maxShapes={shape_argument(shapes, 2)}",
               f"--memPoolSize=workspace:{options.workspace_mib}M", "--skipInference"]
    if options.fp16:
        command.append("--fp16")
    return command


def build_script(specs: list[ModelSpec], options: ProfileOptions) -> str:
    """Shell script that builds every engine in place, once per GPU, TensorRT and input set.

    The manifest records the GPU name, the TensorRT version and a digest of the ONNX files and
    of this script (so of the profiles); a later run with the same three skips the build. Engines
    are written next to their ONNX (`<model>/1/model.plan`), through a `.part` file, and given the
    owner of the script so a root container leaves no root-owned files in the host folder.
    """
    onnx_files = " ".join(f"{spec.name}/1/model.onnx" for spec in specs)
    plans = " ".join(f"{spec.name}/1/model.plan" for spec in specs)
    lines = [
        "#!/usr/bin/env bash",
        "# Generated by `swaptron export --target tensorrt`: builds the TensorRT engines for this",
        f"# GPU with this TensorRT, once; {MANIFEST} records both and a digest of the ONNX files",
        "# and of this script, so later starts skip the work until one of them changes.",
        "set -euo pipefail",
        'cd "$(dirname "$0")"',
        "TRTEXEC=${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}",
        'if [ ! -x "$TRTEXEC" ]; then',
        '  echo "no trtexec at $TRTEXEC: run this in the Triton or TensorRT image" >&2',
        "  exit 1",
        "fi",
        'if ! gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | sed -n 1p) || '
        '[ -z "$gpu" ]; then',
        '  echo "no GPU visible: install the NVIDIA driver and NVIDIA Container Toolkit" >&2',
        "  exit 1",
        "fi",
        'trt=$("$TRTEXEC" --help 2>&1 | grep -o "TensorRT v[0-9]*" | sed -n 1p || true)',
        'if [ -z "$trt" ]; then trt="trtexec $(sha256sum < "$TRTEXEC" | cut -c1-16)"; fi',
        f"inputs=$(cat {ENGINE_SCRIPT} {onnx_files} | sha256sum | cut -c1-16)",
        f"want=$(printf '{MANIFEST_FORMAT}' \"$gpu\" \"$trt\" \"$inputs\")",
        f'if [ -f {MANIFEST} ] && [ "$(cat {MANIFEST})" = "$want" ] && \\',
        "   " + " && ".join(f"[ -s {s.name}/1/model.plan ]" for s in specs) + "; then",
        '  echo "engines for $gpu / $trt already built"; exit 0',
        "fi",
        f"rm -f {MANIFEST}",
    ]
    for spec in specs:
        plan = f"{spec.name}/1/model.plan"
        command = trtexec_command(spec, f"{spec.name}/1/model.onnx", f"{plan}.part", options)
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
                   options: ProfileOptions) -> None:
    """Build one engine with the TensorRT Python API (GPU hosts with `tensorrt` installed)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    if options.fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name, (low, best, high) in profile_shapes(spec, options).items():
        profile.set_shape(name, low, best, high)
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise RuntimeError(f"TensorRT failed to build {spec.name}")
    plan_path.write_bytes(bytes(engine))


def unsupported(ops: set[str]) -> set[str]:
    """Ops TensorRT's ONNX parser does not import."""
    return ops - TENSORRT_ONNX_OPS
