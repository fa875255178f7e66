"""Per-frame geometry: similarity fits, their inverse, affine maps and box overlaps."""

from __future__ import annotations

import math

import torch

from swaptron.networks.geometry import (
    apply_affine,
    box_iou,
    invert_similarity,
    rotated_rect_matrix,
    similarity_fit,
)


def similarity(scale: float, angle: float, shift: tuple[float, float]) -> torch.Tensor:
    """The 2x3 affine of a similarity."""
    a, b = scale * math.cos(angle), scale * math.sin(angle)
    return torch.tensor([[a, -b, shift[0]], [b, a, shift[1]]])


def test_similarity_fit_recovers_a_known_transform() -> None:
    generator = torch.Generator().manual_seed(0)
    source = torch.rand(24, 2, generator=generator) * 100
    truth = similarity(1.7, 0.4, (12.0, -5.0))
    target = apply_affine(source, truth)
    torch.testing.assert_close(similarity_fit(source, target), truth, atol=1e-4, rtol=1e-4)


def test_similarity_fit_is_least_squares_under_noise() -> None:
    generator = torch.Generator().manual_seed(1)
    source = torch.rand(50, 2, generator=generator) * 100
    truth = similarity(0.8, -1.1, (3.0, 40.0))
    target = apply_affine(source, truth) + torch.randn(50, 2, generator=generator) * 0.5
    fitted = similarity_fit(source, target)
    residual = (apply_affine(source, fitted) - target).norm(dim=-1).mean()
    assert residual < 0.8
    torch.testing.assert_close(fitted, truth, atol=0.2, rtol=0.05)


def test_inverse_composes_to_the_identity() -> None:
    matrix = similarity(2.5, 2.0, (100.0, 7.0))
    points = torch.tensor([[0.0, 0.0], [10.0, -3.0], [640.0, 480.0]])
    round_trip = apply_affine(apply_affine(points, matrix), invert_similarity(matrix))
    torch.testing.assert_close(round_trip, points, atol=1e-3, rtol=0)


def test_a_degenerate_source_gives_zeros_not_nan() -> None:
    source = torch.full((24, 2), 5.0)
    target = torch.rand(24, 2)
    fitted = similarity_fit(source, target)
    assert torch.isfinite(fitted).all()
    torch.testing.assert_close(fitted[:, :2], torch.zeros(2, 2))
    assert torch.isfinite(invert_similarity(torch.zeros(2, 3))).all()


def test_batched_fits_keep_their_leading_axes() -> None:
    source = torch.rand(3, 2, 24, 2)
    target = apply_affine(source, similarity(1.2, 0.3, (1.0, 2.0)))
    assert similarity_fit(source, target).shape == (3, 2, 2, 3)


def test_a_rotated_square_maps_its_corners() -> None:
    matrix = rotated_rect_matrix(torch.tensor([50.0, 60.0]), torch.tensor(20.0),
                                 torch.tensor([0.0, 1.0]), 10)  # x axis points down
    corners = apply_affine(torch.tensor([[0.0, 0.0], [10.0, 0.0]]), matrix)
    torch.testing.assert_close(corners, torch.tensor([[60.0, 50.0], [60.0, 70.0]]))


def test_box_iou() -> None:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    iou = box_iou(boxes)
    torch.testing.assert_close(iou[0, 1], torch.tensor(50.0 / 150.0))
    assert iou[0, 2] == 0 and iou[2, 2] == 1


def test_sampling_through_the_crops_window_samples_as_grid_sample_does() -> None:
    from swaptron.networks.geometry import (
        GraphOptions,
        frame_to_planar,
        sample_affine,
        sample_frame,
        sample_window,
    )

    generator = torch.Generator().manual_seed(3)
    frame = torch.randint(0, 256, (2, 37, 53, 3), generator=generator, dtype=torch.uint8)
    # rotated, scaled windows, partly outside the frame
    angle = torch.rand(2, 3, generator=generator) * 6.3
    scale = 0.2 + torch.rand(2, 3, generator=generator) * 2.0
    shift = torch.rand(2, 3, 2, generator=generator) * 70.0 - 10.0
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    matrices = torch.stack([torch.stack([cos, -sin, shift[..., 0]], -1),
                            torch.stack([sin, cos, shift[..., 1]], -1)], -2)
    expected = sample_affine(frame_to_planar(frame), matrices, 24, 20)
    windowed = sample_window(frame, matrices, 24, 20)
    assert windowed.shape == expected.shape == (6, 3, 24, 20)
    assert (windowed - expected).abs().max() < 1e-3
    assert (expected == 0).any()  # some samples fell outside: zeros, as GridSample gives
    # only the valid slots' crops need to be right (a small window around them)
    valid = torch.tensor([[True, False, False], [False, False, True]])
    some = sample_window(frame, matrices, 24, 20, valid).reshape(2, 3, 3, 24, 20)
    wanted = expected.reshape(2, 3, 3, 24, 20)
    assert (some[valid] - wanted[valid]).abs().max() < 1e-3
    # a small crop well inside the frame
    inside = torch.tensor([[[[0.5, 0.0, 10.0], [0.0, 0.5, 8.0]]]])
    assert (sample_window(frame[:1], inside, 16, 16)
            - sample_affine(frame_to_planar(frame[:1]), inside, 16, 16)).abs().max() < 1e-3
    fixed = sample_frame(frame, matrices, 24, 20, GraphOptions(fixed_shapes=True))
    assert torch.equal(fixed, expected)


def test_an_axis_aligned_map_samples_as_grid_sample_does() -> None:
    from swaptron.networks.geometry import frame_to_planar, sample_affine, sample_scaled

    generator = torch.Generator().manual_seed(5)
    for height, width, scale, shift_x, shift_y in ((37, 53, 53 / 16, 0.0, -4.5),
                                                   (20, 12, 0.5, -3.0, 1.25),
                                                   (64, 64, 4.0, 0.0, 0.0)):
        frame = torch.randint(0, 256, (2, height, width, 3), generator=generator,
                              dtype=torch.uint8)
        matrix = torch.tensor([[scale, 0.0, shift_x], [0.0, scale, shift_y]])
        expected = sample_affine(frame_to_planar(frame), matrix.expand(2, 1, 2, 3), 16, 16)
        scaled = sample_scaled(frame, matrix, 16, 16)
        assert scaled.shape == expected.shape == (2, 3, 16, 16)
        assert (scaled - expected).abs().max() < 1e-3, (height, width, scale)
