"""Command-line options of `swaptron export`."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from swaptron.arguments import positive_float, positive_int
from swaptron.assets import AssetError, project_dir
from swaptron.mark_code import SERVER_BITS
from swaptron.specs import FRAME_LIMITS, TARGETS

# The deployment's engine profile: `swaptron export` takes them as the defaults of --max-frame
# and --max-batch-size, and build_engines.sh, which compose and the Kubernetes init container
# pass them to, stops when the repository was exported for another profile.
MAX_FRAME_VARIABLE = "SWAPTRON_MAX_FRAME"
MAX_BATCH_VARIABLE = "SWAPTRON_MAX_BATCH"
DEFAULT_MAX_BATCH = 8
DEFAULT_MAX_FRAME = f"{FRAME_LIMITS['tensorrt'].max_side}x{FRAME_LIMITS['tensorrt'].max_side}"


def default_output(target: str) -> Path:
    """Where a target's repository goes by default."""
    if target == "python-ort":
        return project_dir() / "model_repository"
    return project_dir() / "build" / target


def frame_size(text: str) -> tuple[int, int]:
    """`720x1280` (height x width) -> (720, 1280)."""
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH, got {text!r}") from error
    return height, width


def mark_server_id(text: str) -> int:
    """A server id the mark can carry (SERVER_BITS wide)."""
    value = int(text) if text.isdigit() else -1
    if not 0 <= value < 2 ** SERVER_BITS:
        raise argparse.ArgumentTypeError(f"expected 0..{2 ** SERVER_BITS - 1}, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `swaptron export`."""
    parser.add_argument("--target", choices=TARGETS, default="python-ort",
                        help="python-ort: embedded server (default); onnxruntime: NVIDIA's "
                             "container; tensorrt: TensorRT plans on a GPU host")
    parser.add_argument("--output", type=Path, default=None,
                        help="repository to write (default: model_repository/ for python-ort, "
                             "build/<target>/ otherwise)")
    parser.add_argument("--max-faces", type=int, default=2, help="face slots K per frame")
    parser.add_argument("--weights", type=Path, default=None,
                        help="autoencoder safetensors (default: the committed demo weights)")
    parser.add_argument("--identity", default=None,
                        help="the identity faces become when a request names none (default: "
                             "the weights' last identity by name, b of the demo pair a, b); "
                             "every identity of the weights is served either way")
    parser.add_argument("--face-size", type=int, default=None,
                        help="S, only for random weights (trained weights fix it)")
    parser.add_argument("--max-batch-size", "--max-batch", type=int,
                        default=os.environ.get(MAX_BATCH_VARIABLE) or str(DEFAULT_MAX_BATCH),
                        help="largest batch each network takes; tensorrt: also the engines' "
                             f"(default: ${MAX_BATCH_VARIABLE}, else {DEFAULT_MAX_BATCH})")
    parser.add_argument("--instances", type=int, default=1, help="instances per network")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads per instance")
    parser.add_argument("--spin", action="store_true",
                        help="python-ort: let idle ONNX Runtime threads spin (ORT's default; "
                             "they then take CPU the other networks need)")
    parser.add_argument("--queue-delay-us", type=int, default=100,
                        help="dynamic batcher's longest wait for a fuller batch")
    parser.add_argument("--no-dynamic-batching", action="store_true")
    parser.add_argument("--max-streams", type=positive_int, default=32,
                        help="live video streams the stabilizer keeps per instance; a stream "
                             "past the limit gets an error naming it")
    parser.add_argument("--stream-idle", type=positive_float, default=10.0,
                        help="seconds after which a silent stream is ended and its state freed")
    parser.add_argument("--keyframe-interval", type=positive_int, default=24,
                        help="a stream's tracker looks for new faces every N frames, beside the "
                             "frames' path, and follows faces from their landmarks between; 1: "
                             "the detector on every frame, on the path (steadier landmarks on "
                             "still faces, the detector's full cost per frame)")
    parser.add_argument("--score-interval", type=positive_int, default=12,
                        help="the checked stream scores its faces every N frames, beside the "
                             "frames' path, and carries each face's last score between")
    parser.add_argument("--face-detector", choices=("short", "back", "full"), default="back",
                        help="BlazeFace model: back-camera 256 px (default), short-range 128 px "
                             "(cheapest, selfie distance only), full-range 192 px "
                             "(benchmarks/results/detector_range.md compares them)")
    parser.add_argument("--detector", choices=("meso4", "dldfd", "sbi", "none"), default=None,
                        help="forgery detector of the `forensics` model and the `scan` and "
                             "`faceswap_checked` ensembles (default: the one the card picked, "
                             "when its weights are there); none leaves them out")
    parser.add_argument("--fp16", action="store_true",
                        help="tensorrt: run the convolutional networks in FP16 (explicit casts in "
                             "the graphs; geometry stays FP32; engines built --stronglyTyped)")
    parser.add_argument("--opt-frame", type=frame_size, default=None,
                        help="tensorrt: frame size the engines are tuned for (HxW; default "
                             "720x1280, each side at most the max frame's)")
    parser.add_argument("--max-frame", type=frame_size,
                        default=os.environ.get(MAX_FRAME_VARIABLE) or DEFAULT_MAX_FRAME,
                        help="tensorrt: largest frame the engines take (HxW); the GPU memory "
                             "they hold grows with it and with --max-batch-size (the export "
                             f"prints an estimate) (default: ${MAX_FRAME_VARIABLE}, else "
                             f"{DEFAULT_MAX_FRAME})")
    parser.add_argument("--dfm", action="append", default=[], metavar="PATH[:NAME]",
                        help="serve a DFM face-swap model (DeepFaceLab/DeepFaceLive .dfm) as the "
                             "identity NAME (default: the file's stem) beside our own; "
                             "repeatable; --identity may name one as the default (docs/dfm.md)")
    parser.add_argument("--no-mark", action="store_true",
                        help="leave the invisible mark out of the swapped faces (the operator's "
                             "choice; no request can turn it off; docs/provenance.md)")
    parser.add_argument("--mark-server-id", type=mark_server_id, default=0,
                        help="the server id the mark carries (0-65535; default 0)")
    parser.add_argument("--force", action="store_true", help="re-export even if up to date")


def run(args: argparse.Namespace) -> int:
    """Export the repository; one line per step."""
    from swaptron.export.build import ExportError, export_repository
    from swaptron.export.dfm_serving import load_dfms
    from swaptron.export.repository import ServingOptions
    from swaptron.export.tensorrt import ProfileOptions
    from swaptron.networks.dfm import DfmError
    from swaptron.networks.pipeline import PipelineOptions
    from swaptron.networks.watermark import MarkOptions

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.max_faces < 1:
        print("error: --max-faces must be at least 1")
        return 2
    detector = {None: "default", "none": None}.get(args.detector, args.detector)
    try:
        dfms = tuple(load_dfms(args.dfm, (), args.target)) if args.dfm else ()
    except DfmError as error:
        print(f"error: {error}")
        return 2
    dfm_default = args.identity if args.identity in {dfm.name for dfm in dfms} else None
    pipeline = PipelineOptions(max_faces=args.max_faces, weights=args.weights,
                               identity=None if dfm_default else args.identity,
                               face_size=args.face_size,
                               detector=detector, face_detector=args.face_detector,
                               mark=MarkOptions(enabled=not args.no_mark,
                                                server_id=args.mark_server_id))
    serving = ServingOptions(target=args.target, max_batch_size=args.max_batch_size,
                             dynamic_batching=not args.no_dynamic_batching,
                             queue_delay_us=args.queue_delay_us, instances=args.instances,
                             intra_op_threads=args.threads,
                             intra_op_spinning=args.spin, max_streams=args.max_streams,
                             stream_idle_s=args.stream_idle,
                             keyframe_interval=args.keyframe_interval,
                             score_interval=args.score_interval)
    output = args.output or default_output(args.target)
    try:
        tuned = args.opt_frame or tuple(min(side, most) for side, most in zip(
            ProfileOptions().opt_frame, args.max_frame, strict=True))
        profiles = ProfileOptions(opt_frame=tuned, max_frame=args.max_frame, fp16=args.fp16)
        export_repository(pipeline, serving, output, force=args.force, profiles=profiles,
                          dfms=dfms, default_identity=dfm_default)
    except (ExportError, AssetError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}")
        return 1
    return 0
