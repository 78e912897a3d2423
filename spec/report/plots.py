"""The report's figures: loss curves of every backend overlaid, one panel per recipe; a GAN's
samples per backend over the modes it should cover.

matplotlib is imported when a figure is drawn, not with this module, so that ``spec`` itself stays
numpy + stdlib (a test imports every spec module and checks that no framework or plotting library
came with it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spec.data.mixture import NEAR, GaussianRing

if TYPE_CHECKING:
    from matplotlib.axes import Axes
from spec.training import History

# One look per backend, the same in every figure; dashes let identical curves show through each other.
BACKEND_STYLES = {
    "torch": {"color": "#d62728", "linestyle": "-", "linewidth": 1.6},
    "keras": {"color": "#1f77b4", "linestyle": (0, (5, 3)), "linewidth": 1.4},
    "jax": {"color": "#2ca02c", "linestyle": (0, (1, 2)), "linewidth": 1.8},
    # Keras on JAX and on torch: a purple and a cyan, dash-dotted
    "keras-jax": {"color": "#9467bd", "linestyle": (0, (3, 1, 1, 1)), "linewidth": 1.4},
    "keras-torch": {"color": "#17becf", "linestyle": (0, (6, 2, 1, 2)), "linewidth": 1.4},
}
SMOOTHING_STEPS = 12  # one epoch of the digits recipes: a moving mean over it shows the trend


def moving_mean(values: Sequence[float], window: int) -> np.ndarray:
    """The mean of each run of ``window`` values ending at each step (shorter runs at the start)."""
    data = np.asarray(values, dtype=np.float64)
    sums = np.cumsum(np.concatenate([[0.0], data]))
    ends = np.arange(1, len(data) + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def loss_curve(history: History, points: int = 200) -> list[float]:
    """The training loss as the figure draws it (moving mean over :data:`SMOOTHING_STEPS`), at
    ``points`` evenly spaced steps at most: what compare.json keeps for the site's inline figures."""
    smoothed = moving_mean(history.step_loss, SMOOTHING_STEPS)
    if len(smoothed) > points:
        smoothed = smoothed[np.linspace(0, len(smoothed) - 1, points).round().astype(int)]
    return [float(v) for v in smoothed]


def plot_loss_curves(histories: Mapping[str, Sequence[History]], path: Path) -> Path:
    """Write a PNG with one panel per recipe: each backend's training loss per step (log scale,
    moving mean over :data:`SMOOTHING_STEPS`), raw losses faint behind. Returns ``path``."""
    if not histories:
        raise ValueError("no training histories to plot")
    import matplotlib

    matplotlib.use("Agg")  # files only: never open a window, work without a display
    import matplotlib.pyplot as plt

    columns = min(3, len(histories))
    rows = math.ceil(len(histories) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 3.6 * rows), squeeze=False)
    for ax, (recipe, runs) in zip(axes.flat, histories.items()):
        for history in runs:
            style = BACKEND_STYLES.get(history.backend, {})
            steps = np.arange(len(history.step_loss))
            ax.plot(steps, history.step_loss, color=style.get("color"), alpha=0.15, linewidth=0.8)
            native = ", ".join(f"native {name}" for name in history.substitutions)
            label = f"{history.backend} ({native})" if native else history.backend
            ax.plot(steps, moving_mean(history.step_loss, SMOOTHING_STEPS), label=label, **style)
        ax.set_yscale("log")
        ax.set_title(recipe, fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(histories) :]:
        ax.set_visible(False)
    fig.suptitle("Training loss per step, every backend from the same init and batches", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_gan_samples(histories: Mapping[str, Sequence[History]], ring: GaussianRing, path: Path) -> Path:
    """Write a PNG with one row per GAN recipe and one panel per backend: its generated points over
    the ring's modes (circles of 3σ, the radius the coverage metric counts), or a grid of its first
    generated images. Returns ``path``."""
    if not histories:
        raise ValueError("no GAN samples to plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = max(len(runs) for runs in histories.values())
    fig, axes = plt.subplots(len(histories), columns, figsize=(3.4 * columns, 3.4 * len(histories)), squeeze=False)
    for row, (recipe, runs) in zip(axes, histories.items()):
        for ax, history in zip(row, runs):
            coverage, samples = history.coverage, history.samples
            if samples is None:
                raise ValueError(f"{recipe} on {history.backend}: the history holds no samples")
            modes: int | str
            if samples.shape[1] == 2:
                _draw_points(ax, samples, history.backend, ring)
                modes = ring.modes
            else:
                ax.imshow(image_grid(samples), cmap="gray_r", vmin=0.0, vmax=1.0)
                ax.axis("off")
                modes = len(coverage.per_mode) if coverage else "?"
            covered = coverage.modes_covered if coverage else "?"
            ax.set_title(f"{recipe} · {history.backend}: {covered}/{modes} modes", fontsize=9)
        for ax in row[len(runs) :]:
            ax.set_visible(False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _draw_points(ax: Axes, samples: np.ndarray, backend: str, ring: GaussianRing) -> None:
    from matplotlib.patches import Circle

    style = BACKEND_STYLES.get(backend, {})
    ax.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.4, color=style.get("color"))
    for centre in ring.centres:
        ax.add_patch(Circle(centre, NEAR * ring.std, fill=False, color="black", linewidth=0.8))
    limit = 1.5 * ring.radius
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_aspect("equal")


GRID_SIDE = 8  # generated images per row and column of a backend's grid


def image_grid(samples: np.ndarray, side: int = GRID_SIDE) -> np.ndarray:
    """The first side² square one-channel images (flattened or not) tiled into one picture, a pixel
    of gap between them."""
    samples = samples.reshape(len(samples), -1)
    pixels = math.isqrt(samples.shape[1])
    if pixels * pixels != samples.shape[1]:
        raise ValueError(f"samples of {samples.shape[1]} values are not square images")
    tiles = np.ones((side * (pixels + 1) - 1,) * 2) * np.nan
    for i, image in enumerate(samples[: side * side]):
        r, c = divmod(i, side)
        tiles[r * (pixels + 1) : r * (pixels + 1) + pixels, c * (pixels + 1) : c * (pixels + 1) + pixels] = (
            image.reshape(pixels, pixels)
        )
    return tiles
