"""The embedded digits and deterministic batching."""

from __future__ import annotations

import numpy as np
import pytest

from spec.data import batch_indices, digits, load_digits, one_hot, stratified_split, upsample_to_mnist
from spec.errors import SpecError


def test_digits_match_the_published_description() -> None:
    images, labels = load_digits()
    # UCI optdigits as shipped by scikit-learn: 1,797 8×8 images, 10 classes, ~180 per class.
    assert images.shape == (1797, 8, 8) and images.dtype == np.float32
    assert images.min() == 0.0 and images.max() == 1.0
    np.testing.assert_array_equal(np.unique(images * 16), np.arange(17))  # 16 grey levels
    np.testing.assert_array_equal(np.bincount(labels), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])


def test_split_is_deterministic_disjoint_complete_and_stratified() -> None:
    _, labels = load_digits()
    train, test = stratified_split(labels, 0.2, seed=0)
    again_train, again_test = stratified_split(labels, 0.2, seed=0)
    np.testing.assert_array_equal(train, again_train)
    np.testing.assert_array_equal(test, again_test)
    assert not set(train) & set(test)
    assert len(train) + len(test) == len(labels)
    assert abs(len(test) - 0.2 * len(labels)) <= 10
    per_class_fraction = np.bincount(labels[test]) / np.bincount(labels)
    assert np.all(np.abs(per_class_fraction - 0.2) < 0.01)
    other_train, _ = stratified_split(labels, 0.2, seed=1)
    assert not np.array_equal(train, other_train)


@pytest.mark.parametrize("shape", [(64,), (8, 8), (8, 8, 1), (784,), (28, 28), (28, 28, 1)])
def test_digits_in_every_supported_shape(shape: tuple[int, ...]) -> None:
    split = digits(shape)
    assert split.x_train.shape[1:] == shape and split.x_test.shape[1:] == shape
    assert split.x_train.dtype == np.float32 and split.y_train.dtype == np.int64
    assert len(split.x_train) + len(split.x_test) == 1797


def test_unsupported_shape_is_named() -> None:
    for shape in [(30, 30, 3), (32, 32, 2), (32, 16, 1), (100,)]:
        with pytest.raises(SpecError, match="input_shape"):
            digits(shape)


def test_upsampling_repeats_pixels_inside_a_border() -> None:
    image = np.arange(64, dtype=np.float32).reshape(8, 8)
    big = upsample_to_mnist(image)
    assert big.shape == (28, 28)
    assert not big[:2].any() and not big[-2:].any() and not big[:, :2].any() and not big[:, -2:].any()
    np.testing.assert_array_equal(big[2:26:3, 2:26:3], image)
    np.testing.assert_array_equal(big[4:26:3, 4:26:3], image)


def test_batches_cover_every_index_once_and_repeat_per_seed_and_epoch() -> None:
    batches = batch_indices(103, 10, seed=5, epoch=2)
    assert [len(b) for b in batches] == [10] * 10 + [3]
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(103))
    again = batch_indices(103, 10, seed=5, epoch=2)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))
    next_epoch = batch_indices(103, 10, seed=5, epoch=3)
    assert not np.array_equal(batches[0], next_epoch[0])
    assert [len(b) for b in batch_indices(103, 10, seed=5, drop_last=True)] == [10] * 10
    np.testing.assert_array_equal(batch_indices(5, 2, seed=0, shuffle=False)[1], [2, 3])


def test_bad_batch_size_and_labels_are_named() -> None:
    with pytest.raises(SpecError, match="batch_size"):
        batch_indices(10, 0, seed=0)
    with pytest.raises(SpecError, match="labels"):
        one_hot(np.array([0, 10]), 10)
    np.testing.assert_array_equal(one_hot(np.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])


def test_digits_as_larger_colour_images() -> None:
    grey = digits((8, 8, 1))
    big = digits((32, 32, 3))
    assert big.x_train.shape[1:] == (32, 32, 3)
    np.testing.assert_array_equal(big.x_train[:, ::4, ::4, 0], grey.x_train[..., 0])
    np.testing.assert_array_equal(big.x_train[..., 0], big.x_train[..., 2])
