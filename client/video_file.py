"""Video files the client writes: H.264 through PyAV by default, signed with a C2PA manifest.

An `.mp4` (or `.mov`) is H.264 yuv420p with faststart, which browsers play; mp4v and MJPG
through OpenCV remain as an explicit choice (`--codec`), and `.avi`/`.mkv` take MJPG. A signed
file is written beside its destination first and signed into place on close: the manifest says
that faces were swapped by swaptron, into which identity and when (client/credentials.py).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from swaptron.client.credentials import CredentialsError, sign_video, signing_files
from swaptron.client.h264 import H264Error, H264Writer

H264_SUFFIXES = (".mp4", ".mov")
OPENCV_FOURCC = {"mp4v": "mp4v", "mjpg": "MJPG"}
SUFFIXES = (".mp4", ".mov", ".avi", ".mkv")


class VideoFileError(RuntimeError):
    """The video cannot be written or signed as asked; the message says why."""


@dataclass(frozen=True)
class VideoFormat:
    """How a video file is encoded and whether it is signed (H.264 files only)."""

    codec: str = "h264"
    sign: bool = True
    identity: str = "the server's default"
    key: Path | None = None  # the C2PA signing key and its certificate chain (PEM);
    chain: Path | None = None  # None: the operator's own, made on first use


class FrameWriter(Protocol):
    """Takes BGR frames in order, then closes."""

    def write(self, frame: np.ndarray) -> None: ...

    def close(self) -> None: ...


def codec_for(path: Path, video_format: VideoFormat) -> str:
    """The codec a file gets: the chosen one, MJPG for .avi/.mkv; VideoFileError for a
    container and codec that do not go together or an unknown suffix."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise VideoFileError(f"cannot write video {path}: unsupported format {suffix!r} "
                             f"(use {', '.join(SUFFIXES)}, or no suffix for PNG frames)")
    if suffix in H264_SUFFIXES:
        return video_format.codec
    if video_format.codec == "h264":
        return "mjpg"
    return video_format.codec


class OpenCvWriter:
    """mp4v or MJPG through OpenCV (an explicit choice: browsers play neither)."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int], codec: str) -> None:
        self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*OPENCV_FOURCC[codec]),
                                      fps, size)
        if not self.writer.isOpened():
            raise VideoFileError(f"cannot write video {path}: OpenCV could not open a {codec} "
                                 f"writer of {size[0]}x{size[1]} there")

    def write(self, frame: np.ndarray) -> None:
        self.writer.write(frame)

    def close(self) -> None:
        self.writer.release()


def unsigned_file(path: Path) -> Path:
    """A new empty file beside `path` for the unsigned video, made by us alone (O_EXCL, 0600):
    a predictable name in a shared folder could be a link another user planted."""
    handle, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".unsigned{path.suffix}",
                                    dir=path.parent)
    os.close(handle)
    return Path(name)


class SignedH264Writer:
    """H.264 into a file beside `path`, signed into `path` on close (or moved there)."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int],
                 video_format: VideoFormat) -> None:
        self.path = path
        self.video_format = video_format
        self.unsigned = unsigned_file(path)
        try:
            self.writer = H264Writer(self.unsigned, fps, size)
        except H264Error as error:
            self.unsigned.unlink(missing_ok=True)
            raise VideoFileError(f"cannot write video {path}: {error}") from error

    def write(self, frame: np.ndarray) -> None:
        self.writer.write(frame)

    def close(self) -> None:
        """Finish the file, then sign it into place (an unsigned file is moved there)."""
        self.writer.close()
        if not self.video_format.sign:
            self.unsigned.replace(self.path)
            return
        try:
            files = signing_files(self.video_format.key, self.video_format.chain)
            sign_video(self.unsigned, self.path, self.video_format.identity, files)
        except CredentialsError as error:
            raise VideoFileError(f"cannot sign {self.path}: {error}; the unsigned video is "
                                 f"{self.unsigned}") from error
        self.unsigned.unlink()


def open_video(path: Path, fps: float, size: tuple[int, int],
               video_format: VideoFormat) -> FrameWriter:
    """A writer for frames of `size` (width, height) at `fps` into `path`."""
    codec = codec_for(path, video_format)
    if codec == "h264":
        return SignedH264Writer(path, fps, size, video_format)
    return OpenCvWriter(path, fps, size, codec)
