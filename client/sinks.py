"""Where swapped frames go: a video file, a window, a virtual camera.

Answers can arrive out of order; the video sink writes frames in capture order and skips the
frames that were dropped or failed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np

from swaptron.client.video_file import (
    FrameWriter,
    VideoFileError,
    VideoFormat,
    codec_for,
    open_video,
)

DISPLAY_WIDTH = 1280


class SinkError(RuntimeError):
    """A sink cannot be opened; the message says why."""


class SinkClosed(Exception):  # noqa: N818  (an event, not a fault)
    """The user closed a sink (the window): the stream stops after what is in flight."""


class VideoSink:
    """Writes swapped frames in capture order: to a video file (.mp4, .avi), or as lossless
    `<index>.png` files when the path has no suffix (a folder).

    A video gets one frame per captured frame at the source's rate, so it lasts as long as the
    stream: a dropped or failed frame repeats the last swapped frame (frames lost before the
    first swapped one repeat that one). A folder gets the swapped frames only, named by index.
    """

    def __init__(self, path: Path, fps: float, size: tuple[int, int],
                 video_format: VideoFormat | None = None) -> None:
        self.path = path
        self.fps = fps
        self.folder = path.suffix == ""
        self.video_format = video_format or VideoFormat()
        self._writer: FrameWriter | None = None
        self._pending: dict[int, np.ndarray | None] = {}
        self._next = 0
        self._last: np.ndarray | None = None
        self._owed = 0
        self.written = 0
        self.repeated = 0
        check_writable(path, self.folder, self.video_format)

    def put(self, index: int, frame: np.ndarray | None) -> None:
        """Hand over frame `index` (None when it was dropped or failed)."""
        self._pending[index] = frame
        while self._next in self._pending:
            self._emit(self._next, self._pending.pop(self._next))
            self._next += 1

    def _emit(self, index: int, frame: np.ndarray | None) -> None:
        if self.folder:
            if frame is not None:
                self._write_png(index, frame)
            return
        if frame is None:
            if self._last is None:
                self._owed += 1
            else:
                self._write_video(self._last)
                self.repeated += 1
            return
        for _ in range(self._owed + 1):
            self._write_video(frame)
        self.repeated += self._owed
        self._owed = 0
        self._last = frame

    def _write_png(self, index: int, frame: np.ndarray) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(self.path / f"{index:06d}.png"), frame):
            raise SinkError(f"cannot write frames into {self.path}")
        self.written += 1

    def _write_video(self, frame: np.ndarray) -> None:
        if self._writer is None:
            height, width = frame.shape[:2]
            try:
                self._writer = open_video(self.path, self.fps, (width, height),
                                          self.video_format)
            except VideoFileError as error:
                raise SinkError(str(error)) from error
        self._writer.write(frame)
        self.written += 1

    def close(self) -> None:
        """Flush what is left in order, close the file (and sign it); SinkError when it cannot
        be finished."""
        for index in sorted(self._pending):
            self._emit(index, self._pending.pop(index))
        if self._writer is not None:
            writer, self._writer = self._writer, None
            try:
                writer.close()
            except VideoFileError as error:
                raise SinkError(str(error)) from error


def check_writable(path: Path, folder: bool, video_format: VideoFormat) -> None:
    """Before streaming: SinkError with the reason when `path` cannot take the output."""
    where = path if folder else path.parent
    try:
        where.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SinkError(f"cannot write output {path}: cannot create {where} "
                        f"({error.strerror})") from error
    if not folder and path.is_dir():
        raise SinkError(f"cannot write video {path}: it is a folder")
    if not folder:
        try:
            codec_for(path, video_format)
        except VideoFileError as error:
            raise SinkError(str(error)) from error
    probe = where / f".swaptron-probe-{os.getpid()}"
    try:
        probe.write_bytes(b"")
    except OSError as error:
        raise SinkError(f"cannot write output {path}: {where} is not writable "
                        f"({error.strerror})") from error
    finally:
        probe.unlink(missing_ok=True)


class DisplaySink:
    """A Tk window with input and output side by side and the live FPS and latency."""

    def __init__(self, title: str) -> None:
        import tkinter

        self._tk = tkinter
        self.root = tkinter.Tk()
        self.root.title(title)
        self.label = tkinter.Label(self.root)
        self.label.pack()
        self.closed = False
        self.root.protocol("WM_DELETE_WINDOW", self._close_requested)
        self._image: object | None = None

    def _close_requested(self) -> None:
        self.closed = True

    def show(self, original: np.ndarray, swapped: np.ndarray, status: str) -> None:
        """Draw one pair of frames with a status line."""
        pair = np.hstack([original, swapped])
        scale = min(1.0, DISPLAY_WIDTH / pair.shape[1])
        if scale < 1.0:
            pair = cv2.resize(pair, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        cv2.putText(pair, status, (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 255, 0), 2)
        rgb = cv2.cvtColor(pair, cv2.COLOR_BGR2RGB)
        header = f"P6 {rgb.shape[1]} {rgb.shape[0]} 255 ".encode()
        self._image = self._tk.PhotoImage(data=header + rgb.tobytes(), format="PPM")
        self.label.configure(image=self._image)
        self.pump()

    def pump(self) -> None:
        """Let Tk process window events."""
        with contextlib.suppress(self._tk.TclError):
            self.root.update()

    def close(self) -> None:
        """Close the window."""
        with contextlib.suppress(self._tk.TclError):
            self.root.destroy()


class VirtualCameraSink:
    """Sends swapped frames to a virtual camera (pyvirtualcam, optional extra `virtualcam`)."""

    def __init__(self, width: int, height: int, fps: float) -> None:
        module = load_pyvirtualcam()
        try:
            self.camera = module.Camera(width=width, height=height, fps=fps)
        except RuntimeError as error:
            raise SinkError(f"no virtual camera device: {error}") from error

    def put(self, frame: np.ndarray) -> None:
        """Send one BGR frame."""
        self.camera.send(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))

    def close(self) -> None:
        """Release the device."""
        self.camera.close()


def load_pyvirtualcam() -> ModuleType:
    """Import pyvirtualcam or explain how to get it."""
    if importlib.util.find_spec("pyvirtualcam") is None:
        raise SinkError("virtual camera needs pyvirtualcam: pip install 'swaptron[virtualcam]' "
                        "(and v4l2loopback on Linux)")
    import pyvirtualcam

    return pyvirtualcam


def display_available() -> bool:
    """True when a window can be opened (an X display and Tk)."""
    return bool(os.environ.get("DISPLAY")) and importlib.util.find_spec("tkinter") is not None
