"""The stabilizer graph as a PyTorch module on synthetic tracks (no server, no export)."""

from __future__ import annotations

import numpy as np
import torch

from swaptron.networks.stabilizer import Stabilizer, StabilizerOptions, initial_state
from swaptron.specs import NUM_LANDMARKS

SLOTS = 2
FACE = 100.0  # px


def face(x: float, y: float, rng: np.random.Generator | None = None,
         noise: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """A box [5] and landmarks [468,2] of a FACE-wide face at (x, y), with landmark noise."""
    base = np.random.default_rng(0).uniform(0, FACE, (NUM_LANDMARKS, 2)) + np.array([x, y])
    if rng is not None:
        base = base + rng.normal(0, noise, base.shape)
    box = torch.tensor([x, y, x + FACE, y + FACE, 0.9])
    return box, torch.from_numpy(base.astype(np.float32))


class Run:
    """A stabilizer and its state, frame after frame."""

    def __init__(self, options: StabilizerOptions | None = None) -> None:
        self.module = Stabilizer(SLOTS, options).eval()
        self.state = initial_state(1, SLOTS, NUM_LANDMARKS)
        self.first = True

    @torch.no_grad()
    def step(self, faces: list[tuple[torch.Tensor, torch.Tensor] | None]
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        boxes = torch.zeros(1, SLOTS, 5)
        points = torch.zeros(1, SLOTS, NUM_LANDMARKS, 2)
        presence = torch.zeros(1, SLOTS)
        for slot, item in enumerate(faces):
            if item is not None:
                boxes[0, slot], points[0, slot], presence[0, slot] = item[0], item[1], 1.0
        reset = torch.tensor([[1.0 if self.first else 0.0]])
        self.first = False
        out_faces, out_points, out_presence, *self.state = self.module(
            boxes, points, presence, *self.state, reset)
        return out_faces[0], out_points[0], out_presence[0]


def test_a_still_noisy_face_comes_out_steadier() -> None:
    rng = np.random.default_rng(1)
    run = Run()
    raw, steady = [], []
    for _ in range(40):
        item = face(200, 100, rng, noise=0.3)  # real jitter: a few tenths of a px
        raw.append(item[1].numpy())
        steady.append(run.step([item])[1][0].numpy())

    def movement(track: list[np.ndarray]) -> float:
        return float(np.abs(np.diff(np.stack(track[10:]), axis=0)).mean())
    assert movement(steady) < 0.5 * movement(raw)


def test_a_moving_face_is_followed_closely() -> None:
    run = Run()
    for frame in range(30):
        item = face(100 + 8 * frame, 100)  # 8% of the face width per frame
        out = run.step([item])[1][0]
    assert float((out - item[1]).abs().mean()) < 8.0  # less than one frame behind


def test_faces_keep_their_slots_when_the_detector_swaps_them() -> None:
    run = Run()
    left, right = face(100, 100), face(400, 100)
    run.step([left, right])
    boxes, points, _ = run.step([right, left])
    assert boxes[0, 0] < 200 and boxes[1, 0] > 300
    torch.testing.assert_close(points[0], left[1], atol=1e-3, rtol=0)


def test_a_missed_face_is_held_for_a_few_frames_then_dropped() -> None:
    run = Run(StabilizerOptions(hold=2))
    item = face(200, 100)
    run.step([item])
    for _ in range(2):
        _, points, presence = run.step([None])
        assert presence[0] == 1.0
        torch.testing.assert_close(points[0], item[1], atol=1e-3, rtol=0)
    _, _, presence = run.step([None])
    assert presence[0] == 0.0


def test_a_jump_and_a_reset_take_the_new_landmarks_as_they_are() -> None:
    run = Run()
    run.step([face(100, 100)])
    far = face(600, 300)
    torch.testing.assert_close(run.step([far])[1][0], far[1])
    again = Run()
    again.state = run.state
    near = face(610, 300)
    torch.testing.assert_close(again.step([near])[1][0], near[1])  # first frame: RESET 1
