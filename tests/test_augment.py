"""Numpy augmentation: crops are shifts with zero fill, flips are mirrors, both seeded and uniform."""

from __future__ import annotations

import numpy as np
import pytest

from spec.data import digits
from spec.data.augment import Augmentation, random_crop, random_horizontal_flip
from spec.errors import SpecError

IMAGES = digits((8, 8, 1)).x_train[:600]  # real digits: no two shifts of one image coincide


def shifted(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``image`` moved down by dy and right by dx, zeros flowing in (written independently of the crop)."""
    out = np.zeros_like(image)
    h, w = image.shape[:2]
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def shift_of(original: np.ndarray, cropped: np.ndarray, padding: int) -> tuple[int, int]:
    matches = [
        (dy, dx)
        for dy in range(-padding, padding + 1)
        for dx in range(-padding, padding + 1)
        if np.array_equal(shifted(original, dy, dx), cropped)
    ]
    assert matches, "the crop is not a shift of the image"
    return matches[0]


def test_a_crop_is_a_zero_filled_shift_and_every_shift_is_drawn_about_equally() -> None:
    padding = 2
    cropped = random_crop(IMAGES, padding, np.random.default_rng(0))
    assert cropped.shape == IMAGES.shape and cropped.dtype == IMAGES.dtype
    shifts = [shift_of(a, b, padding) for a, b in zip(IMAGES, cropped)]
    counts = np.zeros((2 * padding + 1,) * 2)
    for dy, dx in shifts:
        counts[dy + padding, dx + padding] += 1
    expected = len(IMAGES) / counts.size  # 24 per shift
    assert counts.min() > 0
    # 25 cells: a chi-square with 24 degrees of freedom exceeds 51 with probability 1e-3
    assert ((counts - expected) ** 2 / expected).sum() < 51


def test_padding_zero_is_the_identity() -> None:
    np.testing.assert_array_equal(random_crop(IMAGES, 0, np.random.default_rng(0)), IMAGES)


def test_a_flip_mirrors_about_half_the_images() -> None:
    flipped = random_horizontal_flip(IMAGES, np.random.default_rng(1))
    mirrored = np.array([np.array_equal(f, i[:, ::-1]) for f, i in zip(flipped, IMAGES)])
    kept = np.array([np.array_equal(f, i) for f, i in zip(flipped, IMAGES)])
    assert (mirrored | kept).all()
    # 600 fair coins: the fraction lies within 0.5 ± 4.5σ (σ ≈ 0.02)
    assert abs(mirrored.mean() - 0.5) < 4.5 * np.sqrt(0.25 / len(IMAGES))


def test_augmentation_is_seeded_by_seed_epoch_and_step_and_keeps_flat_rows_flat() -> None:
    aug = Augmentation((8, 8, 1), crop_padding=1, horizontal_flip=True)
    flat = IMAGES.reshape(len(IMAGES), 64)
    once = aug(flat, seed=0, epoch=3, step=7)
    assert once.shape == flat.shape and once.dtype == flat.dtype
    np.testing.assert_array_equal(aug(flat, seed=0, epoch=3, step=7), once)
    for other in (
        {"seed": 1, "epoch": 3, "step": 7},
        {"seed": 0, "epoch": 4, "step": 7},
        {"seed": 0, "epoch": 3, "step": 8},
    ):
        assert not np.array_equal(aug(flat, **other), once), other


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"image_shape": (8, 8)}, "augmentation.image_shape"),
        ({"image_shape": (8, 0, 1)}, "augmentation.image_shape[1]"),
        ({"crop_padding": -1}, "augmentation.crop_padding"),
        ({"crop_padding": 1, "horizontal_flip": 1}, "augmentation.horizontal_flip"),
        ({}, "augmentation"),
    ],
)
def test_bad_augmentation_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(SpecError) as info:
        Augmentation(**({"image_shape": (8, 8, 1)} | kwargs))
    assert info.value.field == field


def test_a_batch_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(SpecError, match=r"x: got 'array of shape \(4, 63\)'"):
        Augmentation((8, 8, 1), crop_padding=1)(np.zeros((4, 63), np.float32), seed=0, epoch=0, step=0)
