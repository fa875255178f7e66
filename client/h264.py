"""H.264 video files through PyAV: browser-playable (yuv420p, faststart) from BGR frames.

OpenCV's bundled FFmpeg has no H.264 encoder; PyAV's wheels bundle FFmpeg with libx264. The
writer takes uint8 BGR frames [H,W,3] of one size at a fixed frame rate; odd sides are padded
by a pixel (yuv420p needs even sides). `read_frames` decodes any file PyAV opens back to BGR.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np

CODEC = "libx264"
PIXEL_FORMAT = "yuv420p"


class H264Error(RuntimeError):
    """The file cannot be written (unknown encoder, bad frame); the message says why."""


@dataclass(frozen=True)
class H264Options:
    """Encoder settings: a target bitrate (bits/s) or, when None, constant quality `crf`."""

    bitrate: int | None = None
    crf: int = 20
    preset: str = "veryfast"
    faststart: bool = True  # moov atom first: a browser plays while downloading
    threads: int = 0  # encoder threads (0: FFmpeg's choice)


def even_size(width: int, height: int) -> tuple[int, int]:
    """The encoded size: each side rounded up to even."""
    return width + width % 2, height + height % 2


def rate_of(fps: float) -> Fraction:
    """A frame rate as a fraction (29.97 -> 30000/1001 within a millisecond)."""
    return Fraction(fps).limit_denominator(1001)


class H264Writer:
    """Write BGR frames to an H.264 .mp4 (or .mov/.mkv); use as a context manager."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int],
                 options: H264Options | None = None) -> None:
        self.path = Path(path)
        self.options = options or H264Options()
        self.size = size  # (width, height) of the frames given
        self.written = 0
        movflags = {"movflags": "+faststart"} if self.options.faststart else {}
        self._container = av.open(str(self.path), mode="w", options=movflags)
        try:
            self._stream = self._container.add_stream(CODEC, rate=rate_of(fps))
        except (av.FFmpegError, ValueError) as error:
            self._container.close()
            raise H264Error(f"cannot open the {CODEC} encoder: {error}") from error
        width, height = even_size(*size)
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = PIXEL_FORMAT
        codec_options = {"preset": self.options.preset}
        if self.options.bitrate is None:
            codec_options["crf"] = str(self.options.crf)
        else:
            self._stream.bit_rate = self.options.bitrate
        self._stream.codec_context.options = codec_options
        self._stream.codec_context.thread_count = self.options.threads

    def write(self, frame: np.ndarray) -> None:
        """Encode one uint8 BGR frame [H,W,3] of the writer's size."""
        if frame.dtype != np.uint8 or frame.shape != (self.size[1], self.size[0], 3):
            raise H264Error(f"frame {frame.shape} {frame.dtype} is not uint8 "
                            f"{self.size[1]}x{self.size[0]}x3")
        width, height = even_size(*self.size)
        if (width, height) != self.size:
            frame = np.pad(frame, ((0, height - self.size[1]), (0, width - self.size[0]),
                                   (0, 0)), mode="edge")
        video = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="bgr24")
        for packet in self._stream.encode(video):
            self._container.mux(packet)
        self.written += 1

    def close(self) -> None:
        """Flush the encoder and finish the file (moving the index first with faststart)."""
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()

    def __enter__(self) -> H264Writer:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


def write_h264(path: Path, frames: list[np.ndarray], fps: float,
               options: H264Options | None = None) -> Path:
    """Write a list of same-size BGR frames to an H.264 file; returns the path."""
    if not frames:
        raise H264Error("no frames to write")
    height, width = frames[0].shape[:2]
    with H264Writer(path, fps, (width, height), options) as writer:
        for frame in frames:
            writer.write(frame)
    return Path(path)


def read_frames(path: Path, limit: int | None = None) -> Iterator[np.ndarray]:
    """Decode a video (any codec PyAV opens) to uint8 BGR frames, at most `limit`."""
    with av.open(str(path)) as container:
        for count, frame in enumerate(container.decode(video=0)):
            if limit is not None and count >= limit:
                return
            yield frame.to_ndarray(format="bgr24")


def probe(path: Path) -> dict[str, object]:
    """Codec, pixel format, size, frame rate and whether the index (moov) comes first."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        info = {"codec": stream.codec_context.name, "pix_fmt": stream.codec_context.pix_fmt,
                "width": stream.width, "height": stream.height,
                "fps": float(stream.average_rate or 0)}
    head = Path(path).read_bytes()[:4096]
    moov, mdat = head.find(b"moov"), head.find(b"mdat")
    info["faststart"] = moov != -1 and (mdat == -1 or moov < mdat)
    return info
