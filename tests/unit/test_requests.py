"""How a frame request carries the swap's named choices, inline or beside a shared-memory frame."""

from __future__ import annotations

import numpy as np

from swaptron.client.infer import SequenceFlags, ShmPlace, SwapChoices, frame_request
from swaptron.client.stream import refused_stream
from swaptron.specs import FRAME, IDENTITY, STREAM, SWAPPED, WHICH_FACES, identity_refusal

FRAME_PIXELS = np.zeros((4, 6, 3), np.uint8)


def test_choices_travel_as_length_prefixed_bytes_beside_an_inline_frame() -> None:
    request = frame_request(STREAM, "7", FRAME_PIXELS, [SWAPPED],
                            sequence=SequenceFlags(5, start=True),
                            choices=SwapChoices("w", "largest"))
    assert [t.name for t in request.inputs] == [FRAME, IDENTITY, WHICH_FACES]
    assert [list(t.shape) for t in request.inputs[1:]] == [[1, 1], [1, 1]]
    assert len(request.raw_input_contents) == 3  # all inputs raw, as Triton requires
    assert request.raw_input_contents[1] == (1).to_bytes(4, "little") + b"w"
    assert request.raw_input_contents[2] == (7).to_bytes(4, "little") + b"largest"
    assert request.parameters["sequence_start"].bool_param


def test_choices_go_in_contents_when_the_frame_is_in_shared_memory() -> None:
    request = frame_request(STREAM, "7", FRAME_PIXELS, [SWAPPED],
                            frame_place=ShmPlace("region", FRAME_PIXELS.nbytes),
                            choices=SwapChoices("w"))
    assert not request.raw_input_contents  # raw contents are all inputs or none
    assert [t.name for t in request.inputs] == [FRAME, IDENTITY]
    assert list(request.inputs[1].contents.bytes_contents) == [b"w"]


def test_no_choices_add_no_inputs() -> None:
    for choices in (None, SwapChoices()):
        request = frame_request(STREAM, "1", FRAME_PIXELS, [SWAPPED], choices=choices)
        assert [t.name for t in request.inputs] == [FRAME]


def test_an_unknown_identity_ends_the_stream_with_the_servers_words() -> None:
    error = ("in ensemble 'faceswap_stream', selector: unknown IDENTITY 'zed'; this server swaps "
             "into a, b (default b)")
    refused = refused_stream(error)
    assert refused is not None and "unknown IDENTITY 'zed'" in str(refused)
    assert refused_stream("unknown WHICH_FACES 'x'; choose all or largest") is not None
    assert refused_stream("FRAME is 0x0 pixels") is None  # one bad frame: the stream goes on


def test_an_unknown_identity_is_refused_in_the_contracts_words() -> None:
    served = ("a", "b")
    assert identity_refusal("a", served, "b", IDENTITY) is None
    assert identity_refusal("zed", served, "b", IDENTITY) == (
        "unknown IDENTITY 'zed'; this server swaps into a, b (default b)")
    assert identity_refusal("zed", served, None) == (
        "unknown identity 'zed'; this server swaps into a, b")
    long = identity_refusal("x" * 5000, served, "b")
    assert long is not None and "'" + "x" * 40 + "...'" in long and len(long) < 120
