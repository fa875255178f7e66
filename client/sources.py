"""Frame sources for the streaming client: a webcam, a video file, or a folder of images.

A source is read in a worker thread. Files can be played as a camera would (`realtime`): each
frame becomes available at its own time, whether or not the client is ready for it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from swaptron.assets import IMAGE_SUFFIXES

DEFAULT_FOLDER_FPS = 24.0


class SourceError(ValueError):
    """The source cannot be opened or read; the message says which and why."""


@dataclass(frozen=True)
class SourceOptions:
    """What to read and how fast."""

    spec: str  # camera number, video file or image folder
    realtime: bool = False
    fps: float | None = None  # replay rate; default: the source's own
    loop: bool = False
    max_frames: int | None = None


@dataclass(frozen=True)
class Captured:
    """One frame as it left the source."""

    index: int
    frame: np.ndarray
    capture_time: float  # time.monotonic()


class FrameSource:
    """Reads frames in order; `next()` blocks like a camera does when the source is live."""

    def __init__(self, options: SourceOptions) -> None:
        self.options = options
        self.is_camera = options.spec.isdigit()
        self._images: list[Path] = []
        self._capture: cv2.VideoCapture | None = None
        self._position = 0
        self._count = 0
        self._started: float | None = None
        self._lock = threading.Lock()
        self.native_fps = self._open()

    @property
    def fps(self) -> float:
        """Frames per second the source delivers at (or is replayed at)."""
        return self.options.fps or self.native_fps

    @property
    def paced(self) -> bool:
        """True when frames arrive on a clock (camera or --realtime) and late ones are dropped."""
        return self.is_camera or self.options.realtime

    def _open(self) -> float:
        spec = self.options.spec
        if self.is_camera:
            self._capture = cv2.VideoCapture(int(spec))
            if not self._capture.isOpened():
                raise SourceError(f"cannot open camera {spec}")
            return float(self._capture.get(cv2.CAP_PROP_FPS) or 30.0)
        path = Path(spec)
        if path.is_dir():
            self._images = sorted(p for p in path.iterdir()
                                  if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self._images:
                raise SourceError(f"folder {path} holds no image ({', '.join(IMAGE_SUFFIXES)})")
            return DEFAULT_FOLDER_FPS
        if not path.is_file():
            raise SourceError(f"source {spec} is neither a camera number, a video file nor an "
                              "image folder")
        self._capture = cv2.VideoCapture(str(path))
        if not self._capture.isOpened():
            raise SourceError(f"cannot decode video {path}")
        fps = float(self._capture.get(cv2.CAP_PROP_FPS))
        return fps if fps > 0 else 30.0

    def _read_raw(self) -> np.ndarray | None:
        """The next frame of the underlying source, None at its end."""
        if self._images:
            if self._position >= len(self._images):
                return None
            image = cv2.imread(str(self._images[self._position]))
            self._position += 1
            if image is None:
                raise SourceError(f"cannot read image {self._images[self._position - 1]}")
            return image
        if self._capture is None:
            return None
        ok, frame = self._capture.read()
        return frame if ok else None

    def _rewind(self) -> None:
        self._position = 0
        if self._capture is not None and not self.is_camera:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)

    def next(self) -> Captured | None:
        """The next frame, or None when the source (and its loops) is exhausted.

        In realtime mode this sleeps until the frame's due time, as a camera would.
        """
        with self._lock:
            limit = self.options.max_frames
            if limit is not None and self._count >= limit:
                return None
            frame = self._read_raw()
            if frame is None and self.options.loop and self._count > 0:
                self._rewind()
                frame = self._read_raw()
            if frame is None:
                return None
            now = time.monotonic()
            if self._started is None:
                self._started = now
            if self.options.realtime and not self.is_camera:
                due = self._started + self._count / self.fps
                if due > now:
                    time.sleep(due - now)
                now = max(now, due)
            captured = Captured(self._count, frame, now)
            self._count += 1
            return captured

    def frame_count(self) -> int | None:
        """Frames the source will give (None for a camera or a looping file)."""
        if self.is_camera or self.options.loop:
            return self.options.max_frames
        if self._images:
            count = len(self._images)
        elif self._capture is not None:
            count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        else:
            return None
        limit = self.options.max_frames
        return count if limit is None else min(count, limit)

    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the frames, known before the first one is read."""
        if self._images:
            image = cv2.imread(str(self._images[0]))
            if image is None:
                raise SourceError(f"cannot read image {self._images[0]}")
            return image.shape[1], image.shape[0]
        if self._capture is None:
            raise SourceError(f"source {self.options.spec} is closed")
        width = int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if width <= 0 or height <= 0:
            raise SourceError(f"source {self.options.spec} does not say its frame size")
        return width, height

    def close(self) -> None:
        """Release the camera or file."""
        if self._capture is not None:
            self._capture.release()
            self._capture = None
