"""The swapper's blend, in PyTorch with a seeded random autoencoder: pixels outside the faces
come back bit-exact, both graph variants give the same frame, empty slots change nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from swaptron.networks.autoencoder import PRESETS, FaceAutoencoder
from swaptron.networks.face_template import load_template
from swaptron.networks.geometry import GraphOptions
from swaptron.networks.swapper import FaceSwapper

HEIGHT, WIDTH = 240, 320


def swapper(fixed_shapes: bool) -> FaceSwapper:
    """The swapper with a seeded random lite autoencoder."""
    torch.manual_seed(0)
    return FaceSwapper(FaceAutoencoder(PRESETS["lite"]), "b", load_template(),
                       graph=GraphOptions(fixed_shapes=fixed_shapes)).eval()


def face_at(x: float, y: float, size: float) -> torch.Tensor:
    """468 landmarks of the template face, `size` pixels across, top-left at (x, y)."""
    return torch.from_numpy(load_template()) * size + torch.tensor([x, y])


@pytest.fixture(scope="module")
def frame() -> torch.Tensor:
    """A noisy uint8 frame [1,H,W,3]."""
    rng = np.random.default_rng(4)
    return torch.from_numpy(rng.integers(0, 256, (1, HEIGHT, WIDTH, 3), dtype=np.uint8))


def run(module: FaceSwapper, frame: torch.Tensor, faces: list[torch.Tensor],
        presence: list[float]) -> np.ndarray:
    """SWAPPED [H,W,3] for landmark sets in K slots."""
    with torch.no_grad():
        out = module(frame, torch.stack(faces)[None], torch.tensor([presence]))
    return out[0].numpy()


@pytest.mark.parametrize("fixed_shapes", [False, True])
def test_pixels_outside_the_faces_come_back_bit_exact(frame: torch.Tensor,
                                                      fixed_shapes: bool) -> None:
    out = run(swapper(fixed_shapes), frame, [face_at(40, 30, 100), face_at(0, 0, 10)],
              [1.0, 0.0])
    original = frame[0].numpy()
    outside = np.ones((HEIGHT, WIDTH), bool)
    outside[28:134, 38:144] = False  # the face's box, a 2-pixel margin around it
    np.testing.assert_array_equal(out[outside], original[outside])
    inside = np.abs(out[50:110, 60:120].astype(int) - original[50:110, 60:120]).max(axis=2)
    assert (inside > 0).mean() > 0.9  # the face itself changed


def test_both_variants_give_the_same_frame(frame: torch.Tensor) -> None:
    faces = [face_at(40, 30, 100), face_at(110, 60, 90)]  # overlapping
    window = run(swapper(False), frame, faces, [1.0, 1.0])
    whole = run(swapper(True), frame, faces, [1.0, 1.0])
    assert np.abs(window.astype(int) - whole.astype(int)).max() <= 1


def test_empty_slots_change_nothing(frame: torch.Tensor) -> None:
    for fixed_shapes in (False, True):
        out = run(swapper(fixed_shapes), frame, [face_at(40, 30, 100), face_at(150, 80, 60)],
                  [0.2, 0.0])  # both below the presence threshold
        np.testing.assert_array_equal(out, frame[0].numpy())


def test_a_face_at_the_frame_border_stays_inside_it(frame: torch.Tensor) -> None:
    out = run(swapper(False), frame, [face_at(260, 180, 120), face_at(0, 0, 10)], [1.0, 0.0])
    assert out.shape == (HEIGHT, WIDTH, 3)
    changed = np.abs(out.astype(int) - frame[0].numpy()).max(axis=2) > 0
    assert changed[180:, 260:].mean() > 0.3
