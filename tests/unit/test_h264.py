"""H.264 files through PyAV and their C2PA credentials: real encodes, real signatures."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import pytest

from swaptron import assets
from swaptron.client.credentials import (
    CredentialsError,
    read_manifest,
    sign_video,
    signing_files,
)
from swaptron.client.h264 import H264Error, H264Options, probe, read_frames, write_h264


@pytest.fixture(scope="module")
def real_frames() -> list[np.ndarray]:
    """A second of real footage (640x360)."""
    return list(read_frames(assets.footage("single_face.mp4"), 24))


def psnr(first: np.ndarray, second: np.ndarray) -> float:
    """PSNR in dB of two uint8 images."""
    error = np.mean((first.astype(np.float64) - second) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(error, 1e-12)))


def test_writes_browser_playable_h264(tmp_path: Path, real_frames: list[np.ndarray]) -> None:
    path = write_h264(tmp_path / "clip.mp4", real_frames, 24.0, H264Options(threads=1))
    info = probe(path)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert info["faststart"] is True
    assert (info["width"], info["height"]) == (640, 360) and info["fps"] == 24.0
    decoded = list(read_frames(path))
    assert len(decoded) == len(real_frames)
    assert psnr(decoded[12], real_frames[12]) > 32.0


def test_bitrate_is_honoured(tmp_path: Path, real_frames: list[np.ndarray]) -> None:
    low = write_h264(tmp_path / "low.mp4", real_frames, 24.0,
                     H264Options(bitrate=300_000, threads=1))
    high = write_h264(tmp_path / "high.mp4", real_frames, 24.0,
                      H264Options(bitrate=3_000_000, threads=1))
    assert low.stat().st_size < high.stat().st_size / 2


def test_odd_sides_are_padded_and_wrong_frames_refused(tmp_path: Path) -> None:
    frames = [np.full((63, 95, 3), 100, np.uint8)] * 3
    info = probe(write_h264(tmp_path / "odd.mp4", frames, 30.0, H264Options(threads=1)))
    assert (info["width"], info["height"]) == (96, 64)
    with pytest.raises(H264Error, match="not uint8"):
        write_h264(tmp_path / "bad.mp4", [frames[0], np.zeros((64, 96, 3), np.uint8)], 30.0)


def test_manifest_is_signed_read_and_key_kept_private(
        tmp_path: Path, real_frames: list[np.ndarray], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    plain = write_h264(tmp_path / "plain.mp4", real_frames[:6], 24.0, H264Options(threads=1))
    assert read_manifest(plain) is None
    signed = sign_video(plain, tmp_path / "signed.mp4", "w")
    store = read_manifest(signed)
    assert store is not None and store["validation_state"] in ("Valid", "Trusted")
    text = str(store["manifests"][store["active_manifest"]])
    assert "swaptron" in text and "'w'" in text
    files = signing_files()
    assert files.key.parent == tmp_path / "config" / "swaptron" / "c2pa"
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.key.parent.stat().st_mode) == 0o700
    assert probe(signed)["codec"] == "h264" and len(list(read_frames(signed))) == 6


def test_key_given_by_path_is_used_and_needs_its_chain(
        tmp_path: Path, real_frames: list[np.ndarray]) -> None:
    own = signing_files(folder=tmp_path / "own")
    plain = write_h264(tmp_path / "plain.mp4", real_frames[:3], 24.0, H264Options(threads=1))
    signed = sign_video(plain, tmp_path / "signed.mp4", "a", signing_files(own.key, own.chain))
    assert read_manifest(signed) is not None
    with pytest.raises(CredentialsError, match="both"):
        signing_files(own.key, None)
    other = signing_files(folder=tmp_path / "other")
    with pytest.raises(CredentialsError, match="cannot sign"):
        sign_video(plain, tmp_path / "mixed.mp4", "a", type(own)(own.key, other.chain))
