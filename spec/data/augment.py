"""Framework-neutral image augmentation in numpy, seeded, so that every backend trains on identical
batches.

Images are (batch, height, width, channels), or flat rows that :class:`Augmentation` reshapes to its
``image_shape`` and back. Each random choice is drawn from a generator keyed by (seed, epoch, step),
so a batch is augmented the same way whichever backend asks and however often.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spec.errors import SpecError
from spec.validation import check_positive_int


@dataclass(frozen=True)
class Augmentation:
    """Random crop after zero padding by ``crop_padding`` pixels per side (the CIFAR recipe), then a
    horizontal flip of each image with probability ½ when ``horizontal_flip``."""

    image_shape: tuple[int, int, int]  # height, width, channels
    crop_padding: int = 0
    horizontal_flip: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.image_shape, tuple) or len(self.image_shape) != 3:
            raise SpecError("augmentation.image_shape", self.image_shape, "(height, width, channels)")
        for i, size in enumerate(self.image_shape):
            check_positive_int(f"augmentation.image_shape[{i}]", size)
        if isinstance(self.crop_padding, bool) or not isinstance(self.crop_padding, int) or self.crop_padding < 0:
            raise SpecError("augmentation.crop_padding", self.crop_padding, "an integer ≥ 0")
        if not isinstance(self.horizontal_flip, bool):
            raise SpecError("augmentation.horizontal_flip", self.horizontal_flip, (True, False))
        if not self.crop_padding and not self.horizontal_flip:
            raise SpecError("augmentation", self, "crop_padding > 0 or horizontal_flip (else leave it out)")

    def __call__(self, x: np.ndarray, seed: int, epoch: int, step: int) -> np.ndarray:
        """The augmented batch, in the shape and dtype of ``x``."""
        images = _as_images(x, self.image_shape)
        rng = np.random.default_rng([seed, epoch, step])
        if self.crop_padding:
            images = random_crop(images, self.crop_padding, rng)
        if self.horizontal_flip:
            images = random_horizontal_flip(images, rng)
        return images.reshape(x.shape).astype(x.dtype, copy=False)


def _as_images(x: np.ndarray, image_shape: tuple[int, int, int]) -> np.ndarray:
    per_example = int(np.prod(image_shape))
    if x.ndim < 2 or int(np.prod(x.shape[1:])) != per_example:
        raise SpecError("x", f"array of shape {x.shape}", f"a batch of {per_example}-value images {image_shape}")
    return x.reshape(len(x), *image_shape)


def random_crop(images: np.ndarray, padding: int, rng: np.random.Generator) -> np.ndarray:
    """Each image zero-padded by ``padding`` per side, then cropped back to its size at a uniformly
    random offset in [0, 2·padding] along each axis (offset ``padding`` is the identity)."""
    n, height, width, _ = images.shape
    padded = np.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    offsets = rng.integers(0, 2 * padding + 1, size=(n, 2))
    rows = offsets[:, 0, None] + np.arange(height)  # (n, height)
    cols = offsets[:, 1, None] + np.arange(width)  # (n, width)
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def random_horizontal_flip(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each image mirrored left–right with probability ½."""
    flip = rng.random(len(images)) < 0.5
    out = images.copy()
    out[flip] = images[flip, :, ::-1]
    return out
