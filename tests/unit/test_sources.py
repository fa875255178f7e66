"""Frame sources: the frame size is known without reading a frame (the virtual camera used to
read one, then open the source a second time without closing the first)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from swaptron import assets
from swaptron.client.sources import FrameSource, SourceError, SourceOptions


def test_the_frame_size_comes_without_consuming_a_frame() -> None:
    source = FrameSource(SourceOptions(str(assets.demo_video())))
    try:
        assert source.frame_size() == (720, 528)
        first = source.next()
        assert first is not None and first.index == 0
        np.testing.assert_array_equal(first.frame, assets.read_frames(assets.demo_video(), [0])[0])
    finally:
        source.close()
    with pytest.raises(SourceError, match="closed"):
        source.frame_size()


def test_an_image_folder_gives_its_size_and_its_frames_in_order(tmp_path: Path) -> None:
    for index in range(3):
        cv2.imwrite(str(tmp_path / f"{index:02d}.png"), np.full((70, 90, 3), index, np.uint8))
    source = FrameSource(SourceOptions(str(tmp_path)))
    assert source.frame_size() == (90, 70)
    values = [int(item.frame[0, 0, 0]) for item in iter(source.next, None)]
    assert values == [0, 1, 2]


def test_a_folder_without_images_is_named(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="holds no image"):
        FrameSource(SourceOptions(str(tmp_path)))
