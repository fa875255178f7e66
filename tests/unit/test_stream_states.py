"""The python-ort model's per-stream state table (no server)."""

from __future__ import annotations

import numpy as np
import pytest

from swaptron.server.stream_states import StreamLimitError, StreamStates, rounds
from swaptron.specs import STREAM_LIMIT_ERROR

ZEROS = {"STATE_X": np.zeros((1, 2), np.float32)}


def table(limit: int = 2, idle_s: float = 10.0) -> StreamStates:
    return StreamStates("stabilizer", ZEROS, limit, idle_s)


def state(value: float) -> dict[str, np.ndarray]:
    return {"STATE_X": np.full((1, 2), value, np.float32)}


def test_a_stream_starts_from_zeros_then_from_what_it_left() -> None:
    streams = table()
    first, fresh = streams.before(7, start=True, now=0.0)
    assert fresh and not first["STATE_X"].any()
    streams.after(7, state(3.0), end=False, now=0.0)
    second, fresh = streams.before(7, start=False, now=0.1)
    assert not fresh and (second["STATE_X"] == 3.0).all()


def test_start_on_a_live_stream_starts_it_again() -> None:
    streams = table()
    streams.after(7, state(3.0), end=False, now=0.0)
    again, fresh = streams.before(7, start=True, now=0.1)
    assert fresh and not again["STATE_X"].any()


def test_streams_do_not_share_state() -> None:
    streams = table()
    streams.after("a", state(1.0), end=False, now=0.0)
    streams.after("b", state(2.0), end=False, now=0.0)
    assert (streams.before("a", False, 0.1)[0]["STATE_X"] == 1.0).all()
    assert (streams.before("b", False, 0.1)[0]["STATE_X"] == 2.0).all()


def test_a_stream_past_the_limit_is_refused_and_live_ones_go_on() -> None:
    streams = table(limit=2)
    streams.after(1, state(1.0), end=False, now=0.0)
    streams.after(2, state(2.0), end=False, now=0.0)
    with pytest.raises(StreamLimitError, match=STREAM_LIMIT_ERROR) as refused:
        streams.before(3, start=True, now=0.1)
    assert "2 streams are live" in str(refused.value) and "sequence_end" in str(refused.value)
    assert not streams.before(1, start=False, now=0.1)[1]


def test_the_end_of_a_stream_frees_its_place() -> None:
    streams = table(limit=1)
    streams.after(1, state(1.0), end=False, now=0.0)
    streams.after(1, state(1.0), end=True, now=0.1)
    assert len(streams) == 0
    assert streams.before(2, start=True, now=0.2)[1]


def test_an_idle_stream_is_dropped_after_the_idle_time() -> None:
    streams = table(limit=1, idle_s=5.0)
    streams.after(1, state(1.0), end=False, now=0.0)
    with pytest.raises(StreamLimitError):
        streams.before(2, start=True, now=4.0)
    _, fresh = streams.before(2, start=True, now=5.5)
    assert fresh and len(streams) == 0


def test_rounds_put_two_frames_of_one_stream_in_different_rounds() -> None:
    assert rounds([1, 2, 3]) == [[0, 1, 2]]
    assert rounds([1, 2, 1, 1, 3]) == [[0, 1, 4], [2], [3]]
