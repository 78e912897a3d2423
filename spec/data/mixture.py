"""The 2-D Gaussian mixture a GAN must cover, the latent noise it draws from, and the mode-coverage
metric that says whether it did.

The mixture is the classic test of mode collapse (Metz et al., "Unrolled GANs", 2017): equal-weight
Gaussians centred on a ring. A generator that collapses produces points near few of the centres;
one that covers the mixture puts a fair share of its samples near each.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spec.data import Split
from spec.errors import SpecError
from spec.validation import check_number, check_positive_int


@dataclass(frozen=True)
class GaussianRing:
    """``modes`` Gaussians of standard deviation ``std`` centred evenly on a circle of ``radius``."""

    modes: int = 8
    radius: float = 2.0
    std: float = 0.05

    def __post_init__(self) -> None:
        check_positive_int("modes", self.modes)
        check_number("radius", self.radius, low=0.0, low_open=True)
        check_number("std", self.std, low=0.0, low_open=True)

    @property
    def centres(self) -> np.ndarray:
        angles = 2 * np.pi * np.arange(self.modes) / self.modes
        return self.radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)

    def sample(self, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """``count`` float32 points (count, 2) and the mode each came from."""
        rng = np.random.default_rng(seed)
        modes = rng.integers(self.modes, size=count)
        points = self.centres[modes] + self.std * rng.standard_normal((count, 2))
        return points.astype(np.float32), modes

    def split(self, train: int = 4096, test: int = 2048, seed: int = 0) -> Split:
        x_train, y_train = self.sample(train, seed)
        x_test, y_test = self.sample(test, seed + 1)
        return Split(x_train, y_train, x_test, y_test)


# Within this many standard deviations of a centre a sample counts as that mode's.
NEAR = 3.0
# A mode is covered when at least this share of its fair share of the samples lands near it.
COVERED_SHARE = 0.25


@dataclass(frozen=True)
class ModeCoverage:
    modes_covered: int
    high_quality: float  # the share of samples near some centre
    per_mode: tuple[int, ...]  # samples near each centre


def mode_coverage(samples: np.ndarray, ring: GaussianRing) -> ModeCoverage:
    """How many of the ring's modes ``samples`` cover, and how many samples are near any mode."""
    samples = np.asarray(samples, np.float64)
    if samples.ndim != 2 or samples.shape[1] != 2 or not len(samples):
        raise SpecError("samples", f"array of shape {samples.shape}", "(count, 2) points, count > 0")
    if not np.isfinite(samples).all():
        raise SpecError("samples", "non-finite values", "finite points (did the generator diverge?)")
    distances = np.linalg.norm(samples[:, None, :] - ring.centres[None], axis=2)
    nearest = distances.argmin(axis=1)
    near = distances[np.arange(len(samples)), nearest] <= NEAR * ring.std
    per_mode = np.bincount(nearest[near], minlength=ring.modes)
    fair = len(samples) / ring.modes
    return ModeCoverage(int((per_mode >= COVERED_SHARE * fair).sum()), float(near.mean()), tuple(map(int, per_mode)))


# A generated digit is "like a real one" when its nearest training image is no farther than this
# quantile of the real test digits' distances to their nearest training images.
REAL_DISTANCE_QUANTILE = 0.95


def class_coverage(samples: np.ndarray, split: Split) -> ModeCoverage:
    """Mode coverage for generated digits, a digit class being a mode: each sample takes the label
    of its nearest training image (1-NN), and a class is covered when at least a quarter of its
    fair share of the samples (:data:`COVERED_SHARE`) are like-real digits labelled with it."""
    samples = np.asarray(samples, np.float64)
    samples = samples.reshape(len(samples), -1) if samples.ndim > 2 else samples  # images, flattened
    train = split.x_train.reshape(len(split.x_train), -1).astype(np.float64)
    if samples.ndim != 2 or samples.shape[1] != train.shape[1] or not len(samples):
        raise SpecError("samples", f"array of shape {samples.shape}", f"(count, {train.shape[1]}) images, count > 0")
    if not np.isfinite(samples).all():
        raise SpecError("samples", "non-finite values", "finite pixels (did the generator diverge?)")

    def nearest(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        distances = (points**2).sum(1)[:, None] - 2 * points @ train.T + (train**2).sum(1)[None]
        index = distances.argmin(axis=1)
        return index, np.sqrt(np.maximum(distances[np.arange(len(points)), index], 0.0))

    test = split.x_test.reshape(len(split.x_test), -1).astype(np.float64)
    threshold = np.quantile(nearest(test)[1], REAL_DISTANCE_QUANTILE)
    index, distance = nearest(samples)
    near = distance <= threshold
    classes = int(split.y_train.max()) + 1
    per_class = np.bincount(split.y_train[index[near]], minlength=classes)
    covered = int((per_class >= COVERED_SHARE * len(samples) / classes).sum())
    return ModeCoverage(covered, float(near.mean()), tuple(map(int, per_class)))


# The ring the GAN recipes learn and the GAN examples draw from.
RING = GaussianRing()
# The task a recipe names to train on RING's points (with the mode each came from as its label).
GAUSSIAN_RING = "gaussian_ring"
