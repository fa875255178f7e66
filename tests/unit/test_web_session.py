"""The web gateway's message handling and safety checks, without a server or a browser."""

from __future__ import annotations

import json
import resource

import cv2
import numpy as np
import pytest

from swaptron.specs import FACES, FAKE_SCORE, SWAPPED
from swaptron.verdicts import Cuts
from swaptron.web.gateway import GatewayError, GatewayOptions, check_options, is_loopback
from swaptron.web.session import (
    HEADER_LENGTH,
    TIMESTAMP,
    PageMessageError,
    RateCap,
    SessionLimits,
    decode_frame,
    encode_answer,
    jpeg_size,
)


def jpeg(frame: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", frame, (cv2.IMWRITE_JPEG_QUALITY, 95))[1].tobytes()


def test_a_page_frame_decodes_to_the_bgr_frame_and_its_timestamp() -> None:
    frame = np.zeros((96, 128, 3), np.uint8)
    frame[:, :, 2] = 200  # red in BGR
    page_time, decoded = decode_frame(TIMESTAMP.pack(1234.5) + jpeg(frame))
    assert page_time == 1234.5
    assert decoded.shape == (96, 128, 3)
    assert abs(int(decoded[..., 2].mean()) - 200) <= 2 and decoded[..., 0].mean() < 3


@pytest.mark.parametrize(("message", "words"), [
    (b"\x01\x02", "8-byte timestamp"),
    (TIMESTAMP.pack(1.0) + b"GIF89a" * 20, "not a JPEG"),
    (TIMESTAMP.pack(float("nan")) + b"\xff\xd8", "not a finite number"),
    (TIMESTAMP.pack(1.0) + jpeg(np.zeros((32, 640, 3), np.uint8)), "640x32 pixels"),
    (TIMESTAMP.pack(1.0) + jpeg(np.zeros((64, 2000, 3), np.uint8)), "2000x64 pixels"),
])
def test_bad_page_frames_are_refused_by_name(message: bytes, words: str) -> None:
    with pytest.raises(PageMessageError, match=words):
        decode_frame(message)


def test_an_answer_carries_the_page_time_faces_score_and_a_jpeg() -> None:
    swapped = np.full((80, 100, 3), 120, np.uint8)
    faces = np.array([[10, 20, 50, 60, 0.9], [0, 0, 0, 0, 0]], np.float32)
    message = encode_answer(77.25, {SWAPPED: swapped, FACES: faces,
                                    FAKE_SCORE: np.array([0.25, -1], np.float32)}, 90,
                            {"wait": 1.0, "triton": 30.0})
    (length,) = HEADER_LENGTH.unpack_from(message)
    header = json.loads(message[4:4 + length])
    assert header["t"] == 77.25
    assert header["faces"] == [[10.0, 20.0, 50.0, 60.0, 0.9]]  # the empty slot is left out
    assert header["fake_score"] == 0.25 and header["verdict"] is None  # cuts unknown
    image = cv2.imdecode(np.frombuffer(message[4 + length:], np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (80, 100, 3) and abs(int(image.mean()) - 120) <= 2


def test_an_answer_carries_the_frames_verdict_by_the_served_cuts() -> None:
    tensors = {SWAPPED: np.zeros((16, 16, 3), np.uint8),
               FAKE_SCORE: np.array([0.6, -1], np.float32)}
    for cuts, said in ((Cuts(0.8, 0.5), "uncertain"), (Cuts(0.55, 0.5), "likely swapped"),
                       (Cuts(0.9, 0.7), "likely real")):
        message = encode_answer(1.0, tensors, 80, {"wait": 0.0, "triton": 0.0}, cuts)
        (length,) = HEADER_LENGTH.unpack_from(message)
        assert json.loads(message[4:4 + length])["verdict"] == said


def test_the_rate_cap_lets_a_burst_of_two_then_the_rate_through() -> None:
    now = [100.0]  # a clock the test moves, so a descheduled test cannot pass a token
    cap = RateCap(rate=10.0, clock=lambda: now[0])
    assert [cap.allow() for _ in range(4)] == [True, True, False, False]
    now[0] += 0.05
    assert not cap.allow()
    now[0] += 0.06
    assert cap.allow() and not cap.allow()
    now[0] += 60.0  # a long pause refills the burst, never more
    assert [cap.allow() for _ in range(3)] == [True, True, False]


def test_leaving_loopback_needs_a_long_token() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")
    check_options(GatewayOptions(host="127.0.0.1"))
    check_options(GatewayOptions(host="0.0.0.0", token="t" * 16))
    with pytest.raises(GatewayError, match="pass --token"):
        check_options(GatewayOptions(host="0.0.0.0"))
    with pytest.raises(GatewayError, match="too short"):
        check_options(GatewayOptions(host="0.0.0.0", token="short"))


def test_a_jpeg_declaring_a_huge_frame_is_refused_before_it_is_decoded() -> None:
    bomb = bytearray(jpeg(np.zeros((64, 64, 3), np.uint8)))
    header = bomb.find(b"\xff\xc0")
    bomb[header + 5:header + 9] = (30000).to_bytes(2, "big") * 2  # 700 bytes, 30000x30000
    peak_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(PageMessageError, match="30000x30000 pixels"):
        decode_frame(TIMESTAMP.pack(1.0) + bytes(bomb))
    # decoding it would take 2.7 GB: the peak memory shows it was refused before that
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before_kb) / 1024
    assert grown_mb < 256
    assert jpeg_size(memoryview(jpeg(np.zeros((48, 80, 3), np.uint8)))) == (80, 48)


def test_the_gateway_keeps_two_frames_of_a_page_in_flight_by_default() -> None:
    from swaptron.cli import build_parser

    assert SessionLimits().max_inflight == 2  # the page pipelines: encode, send, swap overlap
    assert build_parser().parse_args(["web"]).max_inflight == SessionLimits().max_inflight
