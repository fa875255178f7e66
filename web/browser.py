"""Headless Chromium on the page, for the tests and `swaptron bench --web`.

Debian's chromium (/usr/bin/chromium) driven by Playwright; never a browser download. Its fake
camera plays a .y4m file (4:2:0, the header says C420) in a loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--use-fake-ui-for-media-stream",
                  "--use-fake-device-for-media-stream")


class BrowserError(RuntimeError):
    """No browser to drive; the message names the fix."""


def write_y4m(frames: list[np.ndarray], path: Path, fps: int = 24) -> Path:
    """Write BGR frames (even sides) as a YUV4MPEG2 4:2:0 file Chromium's fake camera plays."""
    height, width = frames[0].shape[:2]
    if height % 2 or width % 2:
        raise ValueError(f"y4m 4:2:0 needs even sides; the frames are {width}x{height}")
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420\n".encode())
        for frame in frames:
            out.write(b"FRAME\n")
            out.write(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path


@contextmanager
def chromium(camera: Path) -> Iterator[Browser]:
    """Headless Debian Chromium whose camera plays `camera` (a .y4m)."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.is_file():
        raise BrowserError(f"{CHROMIUM} is missing: install Debian's chromium and "
                           "chromium-driver packages (`make debs`)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=[*CHROMIUM_FLAGS, f"--use-file-for-fake-video-capture={camera}"])
        try:
            yield browser
        finally:
            browser.close()
