"""Self-blended fakes: the change lies inside the face mask, the mask inside the face's hull."""

from __future__ import annotations

import cv2
import numpy as np

from swaptron import assets
from swaptron.networks.crops import forensic_template
from swaptron.training.photo_augment import PhotoAugment, photo_augment, rescaled
from swaptron.training.self_blend import hull_mask, jpeg, self_blend

SIZE = 128


def real_face() -> tuple[np.ndarray, np.ndarray]:
    """A textured face-sized crop and the template landmarks in its pixels."""
    rng = np.random.default_rng(2)
    image = cv2.GaussianBlur(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8), (0, 0), 2)
    return image, forensic_template(SIZE).numpy()


def test_changed_pixels_lie_inside_the_blend_mask_and_near_the_face() -> None:
    image, landmarks = real_face()
    # deformation (4%), dilation (6%) and the blur's tail (4 sigmas of 5%): 30% of the side
    margin = int(0.3 * SIZE) + 1
    kernel = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
    reach = cv2.dilate(hull_mask(landmarks, (SIZE, SIZE)), kernel) > 0
    for seed in range(12):
        fake = self_blend(image, landmarks, np.random.default_rng(seed))
        changed = np.abs(fake.image.astype(int) - image.astype(int)).max(axis=2) > 0
        assert changed.any(), seed
        assert not (changed & (fake.mask == 0)).any(), seed  # nothing changes outside the mask
        assert not ((fake.mask > 0) & ~reach).any(), seed  # the mask stays near the face
        assert 0.0 < fake.mask.max() <= 1.0


def test_the_same_seed_gives_the_same_fake() -> None:
    image, landmarks = real_face()
    first = self_blend(image, landmarks, np.random.default_rng(7))
    again = self_blend(image, landmarks, np.random.default_rng(7))
    np.testing.assert_array_equal(first.image, again.image)


def test_jpeg_keeps_the_size_and_changes_the_pixels() -> None:
    image, _ = real_face()
    compressed = jpeg(image, np.random.default_rng(0))
    assert compressed.shape == image.shape and compressed.dtype == np.uint8
    assert not np.array_equal(compressed, image)


def test_photo_augment_keeps_the_crop_and_is_seeded() -> None:
    image = cv2.imread(str(assets.footage("multi_face.jpg")))[:256, :256].copy()
    first = photo_augment(image, np.random.default_rng(3))
    assert first.shape == image.shape and first.dtype == np.uint8
    assert np.array_equal(first, photo_augment(image, np.random.default_rng(3)))
    grey = photo_augment(image, np.random.default_rng(0), PhotoAugment(p_grey=1.0, p_jpeg=0.0))
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 1],
                                                                          grey[..., 2])
    small = rescaled(image.astype(np.float32), 0.25)
    assert small.shape == image.shape
    assert np.abs(np.diff(small, axis=1)).mean() < np.abs(np.diff(image.astype(np.float32),
                                                                  axis=1)).mean()
