"""The invisible mark: the shared code (payload, patterns, vote), the embedder in the swapper
graph, the reader graph, real faces read back after JPEG 70 and an H.264 round trip through
PyAV, and the served demo identity's swaps read back through landmarks found afresh (real
footage, real landmarks, real encoders)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from swaptron import assets
from swaptron.benchmarks.watermark import SERVER_ID, MarkedSwapper, jpeg
from swaptron.client.h264 import H264Options, read_frames, write_h264
from swaptron.client.marks import read_track, track_faces
from swaptron.export import onnx_export
from swaptron.export.tensorrt_check import check_model
from swaptron.mark_code import (
    CODE_BITS,
    MarkKey,
    MarkReading,
    codeword_tile,
    decode,
    decode_payload,
    encode_payload,
    halved_patterns,
    tile_patterns,
)
from swaptron.networks.mark_reader import MarkReader, scale_patterns
from swaptron.networks.pipeline import Pipeline, PipelineOptions, build_pipeline
from swaptron.networks.watermark import FrameMark
from swaptron.specs import FRAME, LANDMARKS, PRESENCE, SWAPPED, SWAPPER, model_specs

FRAMES = 24


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return build_pipeline(PipelineOptions(max_faces=1, detector=None))


@pytest.fixture(scope="module")
def real_frames() -> list[np.ndarray]:
    return list(read_frames(assets.footage("single_face.mp4"), FRAMES))


@pytest.fixture(scope="module")
def marked_frames(pipeline: Pipeline, real_frames: list[np.ndarray]) -> list[np.ndarray]:
    """The real frames with each face marked where the swapper marks it (the real face kept
    as the generated face: the hardest host)."""
    swapper = pipeline.swapper
    mark = FrameMark(len(swapper.identities), SERVER_ID).eval()
    found = pipeline.find(np.stack(real_frames))
    with torch.no_grad():
        marked = MarkedSwapper(swapper, mark, real_host=True)(
            torch.from_numpy(found[FRAME]), torch.from_numpy(found[LANDMARKS]),
            torch.from_numpy(found[PRESENCE]))
    return list(marked.numpy())


def readings(pipeline: Pipeline, frames: list[np.ndarray]) -> tuple[MarkReading,
                                                                     list[MarkReading]]:
    """The reader graph on every frame (landmarks found afresh), then the vote over all
    frames' first face and each frame's own one-frame reading."""
    found = pipeline.find(np.stack(frames))
    with torch.no_grad():
        marks = pipeline.reader(*(torch.from_numpy(found[name])
                                  for name in (FRAME, LANDMARKS, PRESENCE)))[0].numpy()
    assert (found[PRESENCE][:, 0] > 0.5).all()
    return decode(marks[:, 0]), [decode(row[:1, 0]) for row in np.split(marks, len(frames))]


def expected_identity(pipeline: Pipeline) -> int:
    return pipeline.swapper.identities.index(pipeline.swapper.default)


def test_payload_round_trip_and_every_single_bit_error_is_caught() -> None:
    key = MarkKey()
    code = encode_payload(0xBEEF, 7, key)
    assert code.shape == (CODE_BITS,) and decode_payload(code, key) == (0xBEEF, 7)
    for bit in range(CODE_BITS):
        flipped = code.copy()
        flipped[bit] ^= 1
        assert decode_payload(flipped, key) is None
    assert decode_payload(code, MarkKey(secret=b"another")) is None
    with pytest.raises(ValueError, match="does not fit"):
        encode_payload(1 << 16, 0, key)


def test_patterns_are_orthonormal_keyed_and_blind_to_brightness() -> None:
    key = MarkKey()
    patterns = tile_patterns(key).astype(np.float64)
    assert patterns.shape == (CODE_BITS, key.tile * key.tile)
    assert np.allclose(patterns @ patterns.T, np.eye(CODE_BITS), atol=1e-5)
    assert np.abs(patterns @ np.ones(key.tile * key.tile)).max() < 1e-3
    other = tile_patterns(MarkKey(secret=b"another")).astype(np.float64)
    assert np.abs(patterns @ other.T).max() < 0.5
    assert halved_patterns(tile_patterns(key), key.tile).shape == (CODE_BITS,
                                                                   (key.tile // 2) ** 2)
    tile = codeword_tile(3, 1, key).reshape(-1)  # each bit at +-strength, in its sign
    signs = encode_payload(3, 1, key).astype(np.float64) * 2.0 - 1.0
    np.testing.assert_allclose(patterns @ tile, key.strength * signs, atol=1e-3)


def test_decode_votes_over_frames_and_skips_empty_slots() -> None:
    rng = np.random.default_rng(0)
    signs = encode_payload(9, 3, MarkKey()) * 2.0 - 1.0
    soft = signs[None] + rng.normal(0.0, 0.8, (30, CODE_BITS))
    soft = np.concatenate([np.zeros((2, CODE_BITS)), soft])  # empty slots count for nothing
    reading = decode(soft)
    assert (reading.present, reading.server_id, reading.identity) == (True, 9, 3)
    assert reading.frames == 24 and reading.confidence > 0.5
    assert not decode(soft, MarkKey(secret=b"another")).present
    assert not decode(rng.normal(0.0, 3.0, (24, CODE_BITS))).present
    assert decode(np.zeros((0, CODE_BITS))) == MarkReading(False, None, None, 0.0, 0)


def test_track_faces_follows_boxes_and_read_track_takes_each_tracks_slot() -> None:
    boxes = [[[0, 0, 10, 10], [50, 50, 60, 60]], [[51, 51, 61, 61], [1, 0, 11, 10]]]
    assert track_faces(boxes) == [[(0, 0), (1, 1)], [(0, 1), (1, 0)]]
    code = encode_payload(0, 2, MarkKey()) * 2.0 - 1.0
    marks = [np.stack([code, np.zeros(CODE_BITS)]), np.stack([np.zeros(CODE_BITS), code])]
    assert read_track(marks, [(0, 0), (1, 1)]).identity == 2
    assert not read_track(marks, [(0, 1), (1, 0)]).present


class MarkAt(torch.nn.Module):
    """The embedder's lookup alone, as a graph: rows, columns, targets -> the luma shift."""

    def __init__(self, mark: FrameMark) -> None:
        super().__init__()
        self.mark = mark

    def forward(self, rows: torch.Tensor, columns: torch.Tensor, targets: torch.Tensor
                ) -> torch.Tensor:
        return self.mark.delta(rows, columns, targets)


def test_mark_graph_runs_in_onnx_runtime_passes_tensorrt_check(tmp_path: Path) -> None:
    mark = FrameMark(3, SERVER_ID).eval()
    rows = torch.arange(100, 180).reshape(1, -1).repeat(2, 1)  # beyond one tile: it repeats
    columns = torch.arange(30, 130).reshape(1, -1).repeat(2, 1)
    targets = torch.tensor([2, 0])
    path = tmp_path / "mark.onnx"
    torch.onnx.export(MarkAt(mark), (rows, columns, targets), str(path), dynamo=False,
                      opset_version=17, input_names=["rows", "columns", "targets"],
                      output_names=["delta"],
                      dynamic_axes={"rows": {0: "b", 1: "h"}, "columns": {0: "b", 1: "w"},
                                    "targets": {0: "b"}})
    assert check_model(onnx.load(str(path))) == []
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (delta,) = session.run(None, {"rows": rows.numpy(), "columns": columns.numpy(),
                                  "targets": targets.numpy()})
    key = MarkKey()
    for image, identity in enumerate((2, 0)):
        tile = codeword_tile(SERVER_ID, identity, key)
        expected = tile[np.ix_(rows[image].numpy() % key.tile, columns[image].numpy() % key.tile)]
        np.testing.assert_allclose(delta[image], expected, atol=1e-4)


def test_the_exported_swapper_marks_every_face_whatever_the_request(
        pipeline: Pipeline, real_frames: list[np.ndarray], tmp_path: Path) -> None:
    """The swapper graph's inputs are the spec's (none is a switch), and for every TARGET and
    LARGEST_ONLY its face carries that identity's codeword (read with the swapper's own
    landmarks)."""
    swapper, spec = pipeline.swapper, model_specs(1)[SWAPPER]
    tensors = pipeline.run(np.stack(real_frames[:2]))
    model = onnx_export.to_onnx(swapper, spec, tensors, "test")
    assert [item.name for item in model.graph.input] == spec.graph_input_names()
    path = tmp_path / "swapper.onnx"
    path.write_bytes(model.SerializeToString())
    session = onnx_export.session(path)
    frame, landmarks, presence = (tensors[name] for name in (FRAME, LANDMARKS, PRESENCE))
    for target in range(len(swapper.identities)):
        for largest in (0, 1):
            feeds = {**{name: tensors[name] for name in (FRAME, LANDMARKS, PRESENCE)},
                     spec.inputs[3].name: np.full((2, 1), target, np.int32),
                     spec.inputs[4].name: np.full((2, 1), largest, np.int32)}
            swapped = session.run(None, feeds)[0]
            with torch.no_grad():
                marks = pipeline.reader(torch.from_numpy(swapped), torch.from_numpy(landmarks),
                                        torch.from_numpy(presence))[0].numpy()
            code = encode_payload(0, target, MarkKey()).astype(bool)
            agree = ((marks[0, 0] > 0) == code).mean()
            assert agree >= 0.9, (target, largest, agree)
    assert not np.array_equal(swapped, frame)


def test_marked_stream_reads_back_after_jpeg70(pipeline: Pipeline,
                                               marked_frames: list[np.ndarray]) -> None:
    vote, _ = readings(pipeline, jpeg(marked_frames, 70))
    assert vote.present
    assert (vote.server_id, vote.identity) == (SERVER_ID, expected_identity(pipeline))


def test_marked_stream_reads_back_after_h264_round_trip(
        pipeline: Pipeline, marked_frames: list[np.ndarray], tmp_path: Path) -> None:
    path = write_h264(tmp_path / "marked.mp4", marked_frames, 30.0,
                      H264Options(bitrate=1_000_000, threads=1))
    vote, _ = readings(pipeline, list(read_frames(path)))
    assert vote.present
    assert (vote.server_id, vote.identity) == (SERVER_ID, expected_identity(pipeline))


def test_unmarked_real_video_reads_as_unmarked(pipeline: Pipeline,
                                              real_frames: list[np.ndarray]) -> None:
    vote, singles = readings(pipeline, real_frames)
    assert not vote.present and vote.server_id is None
    assert not any(single.present for single in singles)


def test_the_served_demo_swap_reads_back_through_landmarks_found_afresh(
        pipeline: Pipeline, megamind_frames: list[np.ndarray]) -> None:
    """The default stream's own output: Megamind's held-out frames swapped into the default
    identity by the served swapper (mark on, server id 0), the faces found again on the
    swapped frames, read and voted: the payload comes back; the unswapped frames read absent."""
    frames = np.stack(megamind_frames[208:208 + FRAMES])
    swapped = pipeline.run(frames)[SWAPPED]
    vote, _ = readings(pipeline, list(swapped))
    assert vote.present
    assert (vote.server_id, vote.identity) == (0, expected_identity(pipeline))
    plain, _ = readings(pipeline, list(frames))
    assert not plain.present


def soft_bits(reader: MarkReader, frames: list[np.ndarray], pipeline: Pipeline) -> np.ndarray:
    """The reader's first-slot soft bits of every frame [F,CODE_BITS] (landmarks found)."""
    found = pipeline.find(np.stack(frames))
    with torch.no_grad():
        marks = reader(*(torch.from_numpy(found[name])
                         for name in (FRAME, LANDMARKS, PRESENCE)))[0].numpy()
    return marks[:, 0]


def test_the_reader_weighs_busy_skin_down_and_reads_real_skin_better(
        pipeline: Pipeline, marked_frames: list[np.ndarray], tmp_path: Path) -> None:
    """Real skin kept as host, through H.264 at 1 Mbit/s: one frame at a time, the served
    reader (noise weights) gets almost every bit; the same reader weighing every pixel alike
    gets more wrong."""
    path = write_h264(tmp_path / "marked.mp4", marked_frames, 30.0,
                      H264Options(bitrate=1_000_000, threads=1))
    frames = list(read_frames(path))
    expected = encode_payload(SERVER_ID, expected_identity(pipeline), MarkKey()).astype(bool)
    weighted = soft_bits(MarkReader().eval(), frames, pipeline)
    flat = soft_bits(MarkReader(MarkKey(noise_floor=1e12)).eval(), frames, pipeline)
    weighted_errors = int(((weighted > 0) != expected[None]).sum())
    flat_errors = int(((flat > 0) != expected[None]).sum())
    print(f"bit errors: weighted {weighted_errors}, flat {flat_errors} of {weighted.size}")
    assert weighted_errors <= 0.03 * weighted.size
    assert weighted_errors < flat_errors


def test_another_key_reads_the_same_folds_as_its_own_reader(
        pipeline: Pipeline, marked_frames: list[np.ndarray]) -> None:
    """The bench's many-key false-mark trials project one fold per face: that equals running
    each key's own reader."""
    other = MarkKey(secret=b"another")
    found = pipeline.find(np.stack(marked_frames[:4]))
    inputs = [torch.from_numpy(found[name]) for name in (FRAME, LANDMARKS, PRESENCE)]
    reader = MarkReader().eval()
    with torch.no_grad():
        shared = reader.soft_bits(reader.folds(*inputs), scale_patterns(other))
        own = MarkReader(other).eval()(*inputs)[0]
    valid = found[PRESENCE].reshape(-1) > 0.5
    np.testing.assert_allclose(shared.numpy()[valid], own.reshape(-1, CODE_BITS).numpy()[valid],
                               rtol=1e-4, atol=1e-5)
