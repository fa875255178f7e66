"""`swaptron extract`: aligned face datasets from a video or an image folder.

Faces are found by our own detector and landmarker (the modules the graphs are exported from,
run eagerly: no export is needed) and aligned with the swapper's own `align_faces`, so training
sees exactly what the swapper will. Each identity gets a folder of SxS crops and masks plus
`meta.json` (source, frame, box, landmarks, split); every fifth extracted frame is held out of
training. An identity can gather faces from several sources: extracting it again from another
video adds to it (extracting again from the same video replaces that video's faces).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from swaptron import assets
from swaptron.networks.face_template import load_template
from swaptron.networks.pipeline import build_finder
from swaptron.networks.swapper import BlendOptions, align_faces
from swaptron.specs import FACES, LANDMARKS, PRESENCE

HOLDOUT_EVERY = 5
PRESENCE_THRESHOLD = 0.5


class ExtractError(ValueError):
    """Bad arguments or unreadable input; the message says which."""


@dataclass(frozen=True)
class FaceRecord:
    """One extracted face."""

    file: str
    source: str
    frame: int
    box: list[float]
    score: float
    landmarks: list[list[float]]  # 468 points in frame pixels
    split: str  # "train" or "holdout"


def parse_ranges(text: str) -> list[int]:
    """`0-97,154-199` -> the frame indices, inclusive ranges."""
    frames: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+))?\s*", part)
        if not match:
            raise ExtractError(f"bad frame range {part!r} (expected e.g. 0-97,154-199)")
        first = int(match.group(1))
        last = int(match.group(2) or first)
        if last < first:
            raise ExtractError(f"frame range {part!r} ends before it starts")
        frames.extend(range(first, last + 1))
    return frames


def parse_identity(text: str) -> tuple[str, list[int] | None]:
    """`a=0-97,154-199` -> ("a", frames); `a` alone takes every frame."""
    name, _, ranges = text.partition("=")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ExtractError(f"identity name {name!r} must be lowercase letters, digits, _")
    return name, parse_ranges(ranges) if ranges else None


def read_source(source: Path) -> list[np.ndarray]:
    """Frames of a video file, or the images of a folder in name order."""
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in assets.IMAGE_SUFFIXES)
        if not files:
            raise ExtractError(f"{source} holds no image ({', '.join(assets.IMAGE_SUFFIXES)})")
        images = [cv2.imread(str(p)) for p in files]
        unreadable = [str(p) for p, image in zip(files, images, strict=True) if image is None]
        if unreadable:
            raise ExtractError(f"cannot read {unreadable[:3]}")
        return images
    if not source.is_file():
        raise ExtractError(f"{source} does not exist")
    return assets.read_frames(source)


def extract(source: Path, identities: list[str], output: Path, face_size: int
            ) -> dict[str, int]:
    """Write `<output>/<identity>/{faces,masks}/*.png` and `meta.json`; returns counts."""
    frames = read_source(source)
    finder = build_finder(max_faces=1)
    template = torch.from_numpy(load_template() * face_size).float()
    blend = BlendOptions()
    counts = {}
    for identity in identities:
        name, wanted = parse_identity(identity)
        indices = wanted if wanted is not None else list(range(len(frames)))
        beyond = [i for i in indices if i >= len(frames)]
        if beyond:
            raise ExtractError(f"{source} has {len(frames)} frames; {name} asks for {beyond[:3]}")
        folder = output / name
        (folder / "faces").mkdir(parents=True, exist_ok=True)
        (folder / "masks").mkdir(exist_ok=True)
        kept = earlier_records(folder, source, face_size)
        records: list[FaceRecord] = []
        for index in tqdm(indices, desc=f"extract {name}", unit="frame"):
            found = finder.find(frames[index][None])
            faces, landmarks, presence = found[FACES][0], found[LANDMARKS][0], found[PRESENCE][0]
            if presence[0] < PRESENCE_THRESHOLD:
                continue
            crop, mask = align_one(frames[index], landmarks[0], template, face_size, blend)
            file = f"{source.stem}-{index:06d}.png"
            cv2.imwrite(str(folder / "faces" / file), crop)
            cv2.imwrite(str(folder / "masks" / file), mask)
            split = "holdout" if len(records) % HOLDOUT_EVERY == HOLDOUT_EVERY - 1 else "train"
            records.append(FaceRecord(file, str(source), index, faces[0, :4].tolist(),
                                      float(faces[0, 4]), landmarks[0].round(3).tolist(), split))
        faces = kept + [asdict(record) for record in records]
        sources = list(dict.fromkeys(record["source"] for record in faces))
        meta = {"face_size": face_size, "source": sources[0] if sources else str(source),
                "sources": sources, "faces": faces}
        (folder / "meta.json").write_text(json.dumps(meta))
        counts[name] = len(faces)
    return counts


def earlier_records(folder: Path, source: Path, face_size: int) -> list[dict[str, object]]:
    """The identity's faces from other sources, kept when it is extracted from one more.
    ExtractError when they were extracted at another face size."""
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        return []
    meta = json.loads(meta_path.read_text())
    if meta.get("face_size") != face_size:
        raise ExtractError(f"{folder} holds faces of size {meta.get('face_size')}, not "
                           f"{face_size}: extract into a new folder")
    return [record for record in meta["faces"] if record["source"] != str(source)]


def align_one(frame: np.ndarray, landmarks: np.ndarray, template: torch.Tensor, face_size: int,
              blend: BlendOptions) -> tuple[np.ndarray, np.ndarray]:
    """Aligned BGR crop and mask (uint8) of one face, with the swapper's own alignment."""
    with torch.no_grad():
        _, crops, masks = align_faces(torch.from_numpy(frame)[None],
                                      torch.from_numpy(landmarks)[None, None], template,
                                      face_size, blend.feather, blend.erode)
    crop = (crops[0].permute(1, 2, 0).numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
    mask = (masks[0, 0].numpy() * 255.0).round().astype(np.uint8)
    return crop, mask
