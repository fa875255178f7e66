"""DFM models served in the ensemble (`swaptron export --dfm`) through a real tritonserver: one
python-ort export with a synthetic identity DFM, a channel-swap DFM, an AMP DFM and our own
autoencoder exported as a DFM, one server, a few demo frames."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
from dfm_synthetic import amp_dfm, broken_dfm, channel_swap_dfm, identity_dfm
from tritonclient.utils import InferenceServerException

from swaptron import assets
from swaptron.cli import main
from swaptron.client.identities import served_identities
from swaptron.export import tensorrt_check
from swaptron.export.repository import ServingOptions, parse_config
from swaptron.mark_code import MarkKey, codeword_tile, decode
from swaptron.networks.pipeline import Pipeline
from swaptron.server.launcher import TritonServer, free_ports
from swaptron.specs import (
    DFM_PREFIX,
    DFM_ROUTER,
    ENSEMBLE,
    FRAME,
    LANDMARKS,
    MORPH,
    PRESENCE,
    SWAPPED,
    dfm_specs,
)

from helpers import swap_inputs

pytestmark = pytest.mark.server

FRAMES = (assets.ANCHOR_FRAME, 10)  # of the demo video (assets.EXAMPLE_FRAMES): faces
MARKED_FRAMES = tuple(range(208, 232, 2))  # Megamind's held-out segment: one face
IDENTITY_MEAN = 3.0  # identity DFM (R 224): mean |change| (0..255) inside the landmarks' hull
SWAP_CORE_MEAN = 4.0  # channel-swap DFM vs the frame with B and R swapped, in the face's core
OURS_MEAN = 6.5  # our DFM (people... demo weights, identity b) vs the native swap to b
DEFAULT_LEVELS = 1  # the default identity vs PyTorch (the export's own tolerance)


@pytest.fixture(scope="module")
def dfm_files(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """--dfm arguments: synthetic identity (R 224), channel swap (R 224, named), AMP (R 64) and
    the demo weights' default identity b written by `swaptron export-dfm` (R 128)."""
    folder = tmp_path_factory.mktemp("dfms")
    ours = folder / "ours.dfm"
    assert main(["export-dfm", "--out", str(ours), "--resolution", "128"]) == 0
    return [str(identity_dfm(folder / "same.dfm", 224)),
            f"{channel_swap_dfm(folder / 'swap.dfm', 224)}:swapped_bgr",
            str(amp_dfm(folder / "amp.dfm")), str(ours)]


@pytest.fixture(scope="module")
def dfm_server(dfm_files: list[str], tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[TritonServer]:
    """The embedded server on a python-ort export with the four DFMs."""
    repository = tmp_path_factory.mktemp("dfm_export") / "repository"
    assert main(["export", "--output", str(repository), "--threads", "1", "--detector", "none",
                 *(f"--dfm={item}" for item in dfm_files)]) == 0
    log = tmp_path_factory.mktemp("dfm_server") / "triton.log"
    with TritonServer(repository, ports=free_ports(), log_path=log) as server:
        yield server


def ask(url: str, frame: np.ndarray, identity: str | None = None, morph: float | None = None
        ) -> dict[str, np.ndarray]:
    """One `faceswap` request: SWAPPED and LANDMARKS."""
    inputs = swap_inputs(frame, identity, morph)
    with grpcclient.InferenceServerClient(url) as client:
        result = client.infer(ENSEMBLE, inputs)
    return {name: result.as_numpy(name)[0] for name in (SWAPPED, LANDMARKS)}


def crop_box(shape: tuple[int, ...], landmarks: np.ndarray) -> np.ndarray:
    """Bool [H,W]: the landmarks' box grown 3 times about its centre, which holds the whole_face
    crop (2.2 template units, 1.6 times the face's outline) and so every pixel a DFM changes."""
    low, high = landmarks[0].min(axis=0), landmarks[0].max(axis=0)
    centre, half = (low + high) / 2, (high - low) * 1.5
    region = np.zeros(shape[:2], bool)
    x0, y0 = np.maximum(np.floor(centre - half), 0).astype(int)
    x1, y1 = np.ceil(centre + half).astype(int)
    region[y0:y1, x0:x1] = True
    return region


def hull(shape: tuple[int, ...], landmarks: np.ndarray, shrink: float = 1.0) -> np.ndarray:
    """Bool [H,W]: inside the face's landmark hull, shrunk about its centre by `shrink`."""
    points = landmarks[0]
    centre = points.mean(axis=0)
    scaled = (points - centre) * shrink + centre
    region = np.zeros(shape[:2], np.uint8)
    cv2.fillConvexPoly(region, cv2.convexHull(scaled.astype(np.int32)), 1)
    return region > 0


@pytest.fixture(scope="module")
def frames(megamind_frames: list[np.ndarray]) -> list[np.ndarray]:
    """The demo frames the test swaps."""
    return [megamind_frames[index] for index in FRAMES]


def with_mark(frame: np.ndarray, identity: int) -> np.ndarray:
    """The frame with the identity's mark tile (server id 0) added everywhere, as the swapper
    adds it under a face's blend mask."""
    key = MarkKey()
    tile = codeword_tile(0, identity, key)
    rows, columns = np.arange(frame.shape[0]) % key.tile, np.arange(frame.shape[1]) % key.tile
    shift = tile[np.ix_(rows, columns)][..., None]
    return np.clip(np.round(frame.astype(np.float32) + shift), 0, 255).astype(np.uint8)


def mean_difference(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    """Mean |a - b| over a region (0..255)."""
    return float(np.abs(a.astype(int) - b.astype(int))[region].mean())


def test_the_dfms_are_listed_beside_our_identities(dfm_server: TritonServer) -> None:
    served = served_identities(dfm_server.grpc_url)
    assert served.identities == ["a", "b", "same", "swapped_bgr", "amp", "ours"]
    assert served.default == "b"


def test_each_dfm_swaps_its_own_way_and_the_default_is_unchanged(
        dfm_server: TritonServer, frames: list[np.ndarray], pipeline: Pipeline) -> None:
    url = dfm_server.grpc_url
    expected = pipeline.run(np.stack(frames))
    for index, frame in enumerate(frames):
        default = ask(url, frame)
        assert np.abs(default[SWAPPED].astype(int) - expected[SWAPPED][index]).max() <= \
            DEFAULT_LEVELS
        assert expected[PRESENCE][index, 0] > 0.5
        face = hull(frame.shape, default[LANDMARKS])
        core = hull(frame.shape, default[LANDMARKS], 0.5)
        same = ask(url, frame, "same")[SWAPPED]
        swapped = ask(url, frame, "swapped_bgr")[SWAPPED]
        ours = ask(url, frame, "ours")[SWAPPED]
        native = default[SWAPPED]  # the default identity is b, which ours.dfm holds
        # the identity DFM gives the face back, with its identity's mark (TARGET 2) added
        assert mean_difference(same, with_mark(frame, 2), core) < IDENTITY_MEAN
        assert mean_difference(same, frame, core) > mean_difference(same, with_mark(frame, 2),
                                                                     core)
        assert mean_difference(swapped, frame[..., ::-1], core) < SWAP_CORE_MEAN
        assert mean_difference(swapped, frame, core) > 2 * SWAP_CORE_MEAN
        outside = ~crop_box(frame.shape, default[LANDMARKS])
        assert (swapped[outside] == frame[outside]).all()  # the face's crop only
        assert mean_difference(ours, native, face) < OURS_MEAN
        assert mean_difference(ours, native, face) < 0.5 * mean_difference(native, frame, face)


def test_a_dfm_identitys_faces_carry_the_mark_with_its_index(
        dfm_server: TritonServer, megamind_frames: list[np.ndarray], pipeline: Pipeline) -> None:
    """Every swapped face is marked, DFM identities included: our DFM's swaps of Megamind's
    held-out frames, faces found again on them and read by the eager reader, vote the
    identity's TARGET index (5: after a, b, same, swapped_bgr, amp) and server id 0."""
    swapped = np.stack([ask(dfm_server.grpc_url, megamind_frames[index], "ours")[SWAPPED]
                        for index in MARKED_FRAMES])
    found = pipeline.find(swapped)
    with torch.no_grad():
        marks = pipeline.reader(*(torch.from_numpy(found[name])
                                  for name in (FRAME, LANDMARKS, PRESENCE)))[0].numpy()
    assert (found[PRESENCE][:, 0] > 0.5).all()
    reading = decode(marks[:, 0])
    assert (reading.present, reading.server_id, reading.identity) == (True, 0, 5)


def test_morph_reaches_an_amp_model_and_is_checked(dfm_server: TritonServer,
                                                   frames: list[np.ndarray]) -> None:
    url, frame = dfm_server.grpc_url, frames[0]
    face = hull(frame.shape, ask(url, frame)[LANDMARKS], 0.5)
    full = ask(url, frame, "amp", morph=1.0)[SWAPPED]  # celeb = face x morph
    dark = ask(url, frame, "amp", morph=0.25)[SWAPPED]
    default = ask(url, frame, "amp")[SWAPPED]  # 0.75
    assert mean_difference(full, frame, face) < mean_difference(dark, frame, face)
    levels = [float(image[face].mean()) for image in (dark, default, full)]
    assert levels[0] < levels[1] < levels[2]
    with pytest.raises(InferenceServerException, match=MORPH):
        ask(url, frame, "amp", morph=1.5)
    assert ask(url, frame)[SWAPPED].shape == frame.shape  # the server is still up


@pytest.mark.parametrize("target", ["onnxruntime", "tensorrt"])
def test_other_targets_get_each_dfm_as_its_own_model(target: str, dfm_files: list[str],
                                                     tmp_path: Path) -> None:
    """Export only: the DFM models, crop and merge graphs and the router on the target; the
    tensorrt graphs pass the static TensorRT 10.5 check (the export refuses them otherwise)
    and get engines in the build script."""
    repository = tmp_path / "repository"
    assert main(["export", "--output", str(repository), "--target", target, "--detector",
                 "none", *(f"--dfm={item}" for item in dfm_files)]) == 0
    for name, resolution in (("same", 224), ("amp", 64), ("ours", 128)):
        config = parse_config(repository / f"{DFM_PREFIX}{name}" / "config.pbtxt")
        assert tuple(config.input[0].dims) == (resolution, resolution, 3)
        assert config.max_batch_size == ServingOptions().max_batch_size * 2  # K faces a frame
        assert config.HasField("dynamic_batching") == (name != "amp")  # one morph per batch
        assert (config.platform, config.backend) == (
            ("tensorrt_plan", "") if target == "tensorrt" else ("", "onnxruntime"))
    for resolution in (64, 128, 224):
        for graph in dfm_specs(2, resolution):
            assert (repository / graph.name / "1" / "model.onnx").is_file()
            assert not tensorrt_check.check_file(repository / graph.name / "1" / "model.onnx")
    router = parse_config(repository / DFM_ROUTER / "config.pbtxt")
    assert router.backend == "python" and "routes" in router.parameters
    steps = parse_config(repository / ENSEMBLE / "config.pbtxt").ensemble_scheduling.step
    assert [step.model_name for step in steps][-1] == DFM_ROUTER
    if target == "tensorrt":
        script = (repository / "build_engines.sh").read_text()
        assert f"{DFM_PREFIX}ours/1/model.plan" in script and "dfm_merge_224" in script


def test_bad_dfm_files_are_refused_by_the_export_by_name(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    for fault in ("not_onnx", "dynamic_r", "three_inputs", "two_outputs"):
        path = broken_dfm(tmp_path / f"{fault}.dfm", fault)
        assert main(["export", "--output", str(tmp_path / "never"), "--dfm", str(path)]) == 2
        assert f"error: {path}: not a usable DFM model" in capsys.readouterr().out
    assert not (tmp_path / "never").exists()
