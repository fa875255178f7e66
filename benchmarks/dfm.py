"""What a 224-px DFM costs on this machine's CPU: in-process and served.

    nice -n 10 .venv/bin/python -m swaptron.benchmarks.dfm [--frames N] [--dfm-frames N]

(a) A network shaped like DeepFaceLab's SAEHD `df-ud` at R 224 (ae_dims 256, e_dims 64, d_dims
64, d_mask_dims 22; random weights: cost depends on shape only) exported as a DFM with DFL's
names, checked by `read_dfm`, timed in ONNX Runtime at batch 1 and 4 with 1 and 2 threads.
(b) The same file served with `swaptron export --dfm` (python-ort) and streamed with `swaptron
stream` over the demo video, alternating the default (native) identity and the DFM identity,
beside the native identity on an export without --dfm, all in one run. Writes
benchmarks/results/dfm.json and dfm.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

RESULTS = Path(__file__).resolve().parent / "results"
DFM_NAME = "saehd224"
INPUT_NAME = "in_face:0"
OUTPUT_NAMES = ("out_face_mask:0", "out_celeb_face:0", "out_celeb_face_mask:0")
OPSET = 17
ROUNDS = 2  # A/B rounds of the served streams


@dataclass(frozen=True)
class SaehdShape:
    """SAEHD's size options (DeepFaceLab's names); `df-ud` archi: one encoder and inter, the
    decoders work at R/2 and the face head's depth_to_space gives R."""

    resolution: int = 224
    ae_dims: int = 256
    e_dims: int = 64
    d_dims: int = 64
    d_mask_dims: int = 22


def conv(channels_in: int, channels_out: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    """A 'SAME'-padded convolution."""
    return nn.Conv2d(channels_in, channels_out, kernel, stride, padding=kernel // 2)


class Downscale(nn.Module):
    """Conv 5x5 stride 2, leaky ReLU 0.1."""

    def __init__(self, channels_in: int, channels_out: int) -> None:
        super().__init__()
        self.conv = conv(channels_in, channels_out, 5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Half the side."""
        return nn.functional.leaky_relu(self.conv(x), 0.1)


class Upscale(nn.Module):
    """Conv 3x3 to 4x the channels, leaky ReLU 0.1, depth to space."""

    def __init__(self, channels_in: int, channels_out: int) -> None:
        super().__init__()
        self.conv = conv(channels_in, channels_out * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Twice the side."""
        return nn.functional.pixel_shuffle(nn.functional.leaky_relu(self.conv(x), 0.1), 2)


class Residual(nn.Module):
    """Two 3x3 convs with leaky ReLU 0.2 and a skip."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.first, self.second = conv(channels, channels, 3), conv(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same shape."""
        y = nn.functional.leaky_relu(self.first(x), 0.2)
        return nn.functional.leaky_relu(x + self.second(y), 0.2)


class Encoder(nn.Module):
    """Four strided conv blocks (e_dims x 1, 2, 4, 8), flattened, pixel-normalised ('u')."""

    def __init__(self, shape: SaehdShape) -> None:
        super().__init__()
        widths = [3] + [shape.e_dims * 2 ** index for index in range(4)]
        self.blocks = nn.Sequential(*(Downscale(a, b) for a, b in itertools.pairwise(widths)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N,3,R,R] -> [N, (R/16)^2 * 8 e_dims]."""
        x = self.blocks(x).flatten(1)
        return x * torch.rsqrt(torch.mean(x * x, dim=-1, keepdim=True) + 1e-6)


class Inter(nn.Module):
    """Dense to ae_dims, dense to (R/32)^2 x ae_dims, upscale to R/16."""

    def __init__(self, shape: SaehdShape) -> None:
        super().__init__()
        self.side, self.channels = shape.resolution // 32, shape.ae_dims
        flat = (shape.resolution // 16) ** 2 * shape.e_dims * 8
        self.dense1 = nn.Linear(flat, shape.ae_dims)
        self.dense2 = nn.Linear(shape.ae_dims, self.side ** 2 * shape.ae_dims)
        self.upscale = Upscale(shape.ae_dims, shape.ae_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The code [N, ae_dims, R/16, R/16]."""
        x = self.dense2(self.dense1(x)).reshape(-1, self.channels, self.side,
                                                    self.side)
        return self.upscale(x)


class Decoder(nn.Module):
    """Face path: 3 upscales (d_dims x 8, 4, 2) with residual blocks to R/2, four heads and
    depth to space to R; mask path: 4 upscales (d_mask_dims x 8, 4, 2, 1) to R."""

    def __init__(self, shape: SaehdShape, face: bool = True) -> None:
        super().__init__()
        d, m = shape.d_dims, shape.d_mask_dims
        self.face = face
        if face:
            widths = [shape.ae_dims, d * 8, d * 4, d * 2]
            self.upscales = nn.ModuleList(Upscale(a, b) for a, b in itertools.pairwise(widths))
            self.residuals = nn.ModuleList(Residual(width) for width in widths[1:])
            self.heads = nn.ModuleList([conv(d * 2, 3, 1), *(conv(d * 2, 3, 3) for _ in range(3))])
        masks = [shape.ae_dims, m * 8, m * 4, m * 2, m]
        self.mask_path = nn.Sequential(*(Upscale(a, b) for a, b in itertools.pairwise(masks)))
        self.mask_head = conv(m, 1, 1)

    def forward(self, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mask [N,1,R,R], face [N,3,R,R] or None for a mask-only decoder)."""
        mask = torch.sigmoid(self.mask_head(self.mask_path(code)))
        if not self.face:
            return mask, None
        x = code
        for upscale, residual in zip(self.upscales, self.residuals, strict=True):
            x = residual(upscale(x))
        heads = torch.cat([head(x) for head in self.heads], dim=1)
        return mask, torch.sigmoid(nn.functional.pixel_shuffle(heads, 2))


class SaehdDfm(nn.Module):
    """What DeepFaceLab's export_dfm of a df model computes: the src decoder's face and mask
    and the dst decoder's mask (its face path is pruned), NHWC in and out."""

    def __init__(self, shape: SaehdShape) -> None:
        super().__init__()
        self.encoder, self.inter = Encoder(shape), Inter(shape)
        self.src, self.dst = Decoder(shape), Decoder(shape, face=False)

    def forward(self, face: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """in_face [N,R,R,3] -> face mask, celeb face, celeb mask (NHWC)."""
        code = self.inter(self.encoder(face.permute(0, 3, 1, 2)))
        celeb_mask, celeb = self.src(code)
        face_mask, _ = self.dst(code)
        return tuple(t.permute(0, 2, 3, 1) for t in (face_mask, celeb, celeb_mask))


def count_macs(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass (convolutions and dense layers)."""
    total = [0]

    def hook(layer: nn.Module, _: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if isinstance(layer, nn.Conv2d):
            kernel = layer.kernel_size[0] * layer.kernel_size[1] * layer.in_channels
            total[0] += output.numel() * kernel // layer.groups
        elif isinstance(layer, nn.Linear):
            total[0] += output.numel() * layer.in_features

    handles = [layer.register_forward_hook(hook) for layer in model.modules()
               if isinstance(layer, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(example)
    for handle in handles:
        handle.remove()
    return total[0] // len(example)


def build_dfm(path: Path, shape: SaehdShape) -> dict[str, object]:
    """Write the SAEHD-shaped DFM (DFL's tensor names, dynamic N) and check it with
    read_dfm; its parameters, MACs per face and file size."""
    from swaptron.networks.dfm import read_dfm

    torch.manual_seed(0)
    model = SaehdDfm(shape).eval()
    example = torch.rand(1, shape.resolution, shape.resolution, 3)
    macs = count_macs(model, example)
    with torch.no_grad():
        torch.onnx.export(model, (example,), str(path), input_names=[INPUT_NAME],
                          output_names=list(OUTPUT_NAMES), opset_version=OPSET,
                          dynamic_axes={name: {0: "N"} for name in (INPUT_NAME, *OUTPUT_NAMES)},
                          dynamo=False)
    info = read_dfm(path)
    return {"archi": "df-ud", **asdict(shape), "resolution_read": info.resolution,
            "parameters": sum(p.numel() for p in model.parameters()),
            "gmacs_per_face": round(macs / 1e9, 2),
            "file_mb": round(path.stat().st_size / 2**20, 1),
            "deepfacelive_names": info.deepfacelive_names}


def time_session(path: Path, batch: int, threads: int, repeats: int, resolution: int
                 ) -> dict[str, object]:
    """ONNX Runtime (CPU, sequential, idle threads sleep) on `batch` faces: the median of
    `repeats` runs after one warm-up run."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    faces = np.random.default_rng(0).random((batch, resolution, resolution, 3), np.float32)
    session.run(None, {INPUT_NAME: faces})
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, {INPUT_NAME: faces})
        runs.append((time.perf_counter() - start) * 1000.0)
    median = statistics.median(runs)
    return {"batch": batch, "threads": threads, "repeats": repeats,
            "ms_per_run": round(median, 1), "ms_per_face": round(median / batch, 1),
            "faces_per_s": round(1000.0 * batch / median, 2),
            "ms_min_max": [round(min(runs), 1), round(max(runs), 1)]}


def in_process(path: Path, resolution: int, repeats: int) -> list[dict[str, object]]:
    """Batch 1 and 4, 1 and 2 threads."""
    return [time_session(path, batch, threads, repeats, resolution)
            for batch in (1, 4) for threads in (1, 2)]


def export(repository: Path, dfm: Path | None) -> Path:
    """`swaptron export` (python-ort, no forgery detector), with the DFM or without."""
    from swaptron.cli import main

    extra = [f"--dfm={dfm}:{DFM_NAME}"] if dfm else []
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["export", "--output", str(repository), "--detector", "none", *extra])
    if code != 0:
        raise RuntimeError(f"swaptron export {' '.join(extra)} exited {code}")
    return repository


def stream(url: str, identity: str | None, frames: int, report: Path) -> dict[str, object]:
    """`swaptron stream` of the demo video (unpaced, looped) and the report's figures."""
    from swaptron import assets

    from .clients import ClientRun, run_client, summary

    options = ("--identity", identity) if identity else ()
    run = ClientRun(f"{identity or 'default'}", f"identity {identity or 'default'}", options,
                    frames)
    result = summary(run, run_client(run, assets.demo_video(), url, report))
    latency = result["latency_ms"]
    return {"frames": result["frames_captured"], "failed": result["frames_failed"],
            "fps": result["fps"], "p50_ms": latency["p50"], "p95_ms": latency["p95"],
            "command": f"swaptron stream --source Megamind.avi --loop --frames {frames} "
                       f"--url URL --no-display --quiet {' '.join(options)}".strip()}


def served(dfm: Path, work: Path, frames: int, dfm_frames: int) -> dict[str, list[dict]]:
    """Both exports served at once; per round: native without --dfm, native with --dfm, the
    DFM identity. Rows keyed by case, one per round."""
    from swaptron.server.launcher import TritonServer, free_ports

    plain, routed = export(work / "plain", None), export(work / "routed", dfm)
    cases: dict[str, list[dict]] = {"native, export without --dfm": [],
                                    "native, export with --dfm (router)": [],
                                    f"DFM {DFM_NAME}, export with --dfm": []}
    with (TritonServer(plain, ports=free_ports(), log_path=work / "plain.log") as without,
          TritonServer(routed, ports=free_ports(), log_path=work / "routed.log") as server):
        stream(without.grpc_url, None, 8, work / "warm1.json")  # warm-up, not counted
        stream(server.grpc_url, DFM_NAME, 2, work / "warm2.json")
        for index in range(ROUNDS):
            plans = ((without.grpc_url, None, frames), (server.grpc_url, None, frames),
                     (server.grpc_url, DFM_NAME, dfm_frames))
            for (url, identity, count), rows in zip(plans, cases.values(), strict=True):
                rows.append(stream(url, identity, count, work / f"r{index}-{len(rows)}.json"))
    return cases


def machine() -> dict[str, object]:
    """CPU model and cores."""
    model = next((line.split(":", 1)[1].strip()
                  for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu": model, "cores": os.cpu_count(), "onnxruntime": ort.__version__,
            "torch": torch.__version__, "python": platform.python_version()}


def markdown(results: dict[str, object]) -> str:
    """dfm.md: the network, the in-process table, the served table, how to reproduce."""
    net = results["network"]
    host = results["machine"]
    lines = ["# What a 224-px DFM costs on a CPU host", "",
             f"Machine: {host['cpu']}, {host['cores']} cores (shared, noisy: compare rows of "
             f"one run only), ONNX Runtime {host['onnxruntime']}; {results['date']}.", "",
             f"Network: DeepFaceLab SAEHD `{net['archi']}` shape at R {net['resolution']} "
             f"(ae_dims {net['ae_dims']}, e_dims {net['e_dims']}, d_dims {net['d_dims']}, "
             f"d_mask_dims {net['d_mask_dims']}), random weights, exported as a DFM with DFL's "
             f"names and accepted by `read_dfm`: {net['parameters'] / 1e6:.1f} M parameters, "
             f"{net['gmacs_per_face']} GMACs per face, {net['file_mb']} MB. The graph is what "
             "export_dfm keeps: encoder, inter, the src decoder (face and mask) and the dst "
             "decoder's mask path.", "",
             "## In-process (ONNX Runtime CPU, median of the runs after one warm-up)", "",
             "| batch | threads | ms per run | ms per face | faces/s | min-max ms |",
             "|---|---|---|---|---|---|"]
    for row in results["in_process"]:
        low, high = row["ms_min_max"]
        lines.append(f"| {row['batch']} | {row['threads']} | {row['ms_per_run']} | "
                     f"{row['ms_per_face']} | {row['faces_per_s']} | {low}-{high} |")
    lines += ["", "## Served (python-ort, `swaptron stream` unpaced, 2 frames in flight)", "",
              "Both exports served at once; each round streams the native identity on the "
              "export without --dfm, then on the export with it, then the DFM identity "
              "(one face a frame, Megamind.avi).", "",
              "| case | round | frames | failed | FPS | p50 ms | p95 ms |",
              "|---|---|---|---|---|---|---|"]
    for case, rows in results["served"].items():
        for index, row in enumerate(rows, 1):
            lines.append(f"| {case} | {index} | {row['frames']} | {row['failed']} | "
                         f"{row['fps']} | {row['p50_ms']} | {row['p95_ms']} |")
    lines += ["", *findings(results), "", "## Reproduce", "", "```bash",
              f"nice -n 10 .venv/bin/python -m swaptron.benchmarks.dfm {results['arguments']}",
              "```", "",
              "It exports the network to a temporary folder, then `swaptron export --output "
              "plain --detector none` and `swaptron export --output routed --detector none "
              f"--dfm saehd224.dfm:{DFM_NAME}`, serves both, and runs per round:", "", "```bash"]
    for rows in results["served"].values():
        lines.append(rows[0]["command"])
    lines += ["```", ""]
    return "\n".join(lines)


def findings(results: dict[str, object]) -> list[str]:
    """What the served rows say: the router's cost on the default identity (FPS and p50 of
    the rounds summed) and the DFM identity's frame rate against the in-process figure."""
    rows = list(results["served"].values())
    if len(rows) != 3:
        return []
    plain, routed, model = ({key: statistics.mean(row[key] for row in case)
                             for key in ("fps", "p50_ms", "p95_ms")} for case in rows)
    best = max(row["faces_per_s"] for row in results["in_process"])
    return [f"Mean of the rounds: the native identity through the router ran "
            f"{routed['fps']:.1f} FPS against {plain['fps']:.1f} without it "
            f"({100 * (routed['fps'] / plain['fps'] - 1):+.0f} %), p50 "
            f"{routed['p50_ms'] - plain['p50_ms']:+.1f} ms, p95 "
            f"{routed['p95_ms'] - plain['p95_ms']:+.1f} ms; the DFM identity ran "
            f"{model['fps']:.2f} FPS (in-process best: {best} faces/s). The DFM model is served "
            "with the export's 2 ONNX Runtime threads and dynamic batching: with 2 frames in "
            "flight its batches hold up to 2 crops. Rounds differ by several % on this shared "
            "machine: read the router's cost as a bound, not a figure."]


def main(argv: list[str] | None = None) -> int:
    """Run the bench and write benchmarks/results/dfm.json and dfm.md."""
    parser = argparse.ArgumentParser(prog="swaptron.benchmarks.dfm")
    parser.add_argument("--frames", type=int, default=48, help="native frames per stream run")
    parser.add_argument("--dfm-frames", type=int, default=12, help="DFM frames per stream run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per in-process cell")
    parser.add_argument("--no-served", action="store_true", help="in-process only")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    shape = SaehdShape()
    with tempfile.TemporaryDirectory(prefix="dfm-bench-") as folder:
        work = Path(folder)
        path = work / f"{DFM_NAME}.dfm"
        results: dict[str, object] = {"date": time.strftime("%Y-%m-%d %H:%M"),
                                      "machine": machine(),
                                      "arguments": " ".join(argv or [])}
        results["network"] = build_dfm(path, shape)
        print(json.dumps(results["network"]), flush=True)
        results["in_process"] = in_process(path, shape.resolution, args.repeats)
        print(json.dumps(results["in_process"]), flush=True)
        results["served"] = {} if args.no_served else served(path, work, args.frames,
                                                             args.dfm_frames)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "dfm.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.output_dir / "dfm.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
