"""The MNIST (npz, IDX) and CIFAR-10 loaders, on small files written here in each format."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from spec.data.files import (
    CIFAR_TEST_BATCH,
    CIFAR_TRAIN_BATCHES,
    MNIST_IDX_FILES,
    DataFileError,
    load_cifar10,
    load_mnist_idx,
    load_mnist_npz,
    read_idx,
)

RNG = np.random.default_rng(0)


def mnist_arrays(train: int = 5, test: int = 3) -> dict[str, np.ndarray]:
    return {
        "x_train": RNG.integers(0, 256, (train, 28, 28), dtype=np.uint8),
        "y_train": RNG.integers(0, 10, train).astype(np.uint8),
        "x_test": RNG.integers(0, 256, (test, 28, 28), dtype=np.uint8),
        "y_test": RNG.integers(0, 10, test).astype(np.uint8),
    }


def write_idx(path: Path, array: np.ndarray, type_code: int = 0x08, compress: bool = False) -> Path:
    """An IDX file as LeCun's MNIST files are written: magic, big-endian dims, big-endian values."""
    dtype = {0x08: ">u1", 0x0C: ">i4", 0x0D: ">f4"}[type_code]
    raw = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += np.asarray(array).astype(dtype).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def test_mnist_npz_as_keras_stores_it(tmp_path: Path) -> None:
    arrays = mnist_arrays()
    np.savez(tmp_path / "mnist.npz", **arrays)
    split = load_mnist_npz(tmp_path / "mnist.npz")
    assert split.x_train.shape == (5, 28, 28, 1) and split.x_train.dtype == np.float32
    np.testing.assert_array_equal(split.x_train[..., 0], arrays["x_train"] / np.float32(255))
    np.testing.assert_array_equal(split.y_test, arrays["y_test"])
    assert split.y_train.dtype == np.int64


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_idx_files(tmp_path: Path, compress: bool) -> None:
    arrays = mnist_arrays()
    for key, stem in MNIST_IDX_FILES.items():
        write_idx(tmp_path / (stem + (".gz" if compress else "")), arrays[key], compress=compress)
    split = load_mnist_idx(tmp_path)
    np.testing.assert_array_equal(split.x_test[..., 0], arrays["x_test"] / np.float32(255))
    np.testing.assert_array_equal(split.y_train, arrays["y_train"])


def test_idx_reads_other_types_big_endian(tmp_path: Path) -> None:
    values = np.array([[1, -2, 70000], [3, 4, -5]], np.int32)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "a.idx", values, 0x0C)), values)
    floats = np.array([0.5, -1.25], np.float32)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "b.idx", floats, 0x0D)), floats)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not an IDX file"),
        (b"\x01\x00\x08\x01", "not an IDX file"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "unknown IDX type code 0x07"),
        (b"\x00\x00\x08\x03\x00\x00", "truncated header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02", r"truncated: 10 bytes, shape \(5,\)"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x01\x02", "too long"),
    ],
)
def test_corrupt_idx_is_named(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(DataFileError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_truncated_gzip_idx_is_named(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(50, dtype=np.uint8) % 10, compress=True)
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(DataFileError, match=r"t10k-labels-idx1-ubyte\.gz: not a readable gzip file"):
        read_idx(path)


def test_missing_idx_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="train-images-idx3-ubyte: no such file"):
        load_mnist_idx(tmp_path)


def test_idx_labels_that_do_not_fit_the_images_are_refused(tmp_path: Path) -> None:
    arrays = mnist_arrays()
    arrays["y_train"] = np.array([1, 2, 3], np.uint8)  # 5 images
    for key, stem in MNIST_IDX_FILES.items():
        write_idx(tmp_path / stem, arrays[key])
    with pytest.raises(DataFileError, match=r"train-labels-idx1-ubyte: labels of shape \(3,\).*expected 5"):
        load_mnist_idx(tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.pop("y_test"), r"missing arrays \['y_test'\]"),
        (lambda a: a.__setitem__("x_train", np.zeros((2, 32, 32), np.uint8)), r"images of shape \(2, 32, 32\)"),
        (lambda a: a.__setitem__("x_test", np.zeros((3, 28, 28), np.float64)), "dtype float64"),
        (lambda a: a.__setitem__("y_train", np.array([0, 1, 2, 3, 12])), r"labels range over \[0, 12\]"),
    ],
)
def test_mnist_npz_of_the_wrong_kind_is_named(tmp_path: Path, change, message: str) -> None:
    arrays = mnist_arrays()
    change(arrays)
    np.savez(tmp_path / "mnist.npz", **arrays)
    with pytest.raises(DataFileError, match=message):
        load_mnist_npz(tmp_path / "mnist.npz")


@pytest.mark.parametrize(
    ("content", "message"), [(b"not a zip", r"not a readable \.npz archive"), (None, "no such file")]
)
def test_corrupt_or_missing_npz_is_named(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "mnist.npz"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataFileError, match=f"mnist.npz: {message}"):
        load_mnist_npz(path)


def test_truncated_npz_is_named(tmp_path: Path) -> None:
    np.savez(tmp_path / "mnist.npz", **mnist_arrays())
    raw = (tmp_path / "mnist.npz").read_bytes()
    (tmp_path / "mnist.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataFileError, match=r"not a readable \.npz archive"):
        load_mnist_npz(tmp_path / "mnist.npz")


def write_cifar(directory: Path, per_batch: int = 4) -> dict[str, tuple[np.ndarray, list[int]]]:
    """CIFAR-10 python batches as the dataset's authors pickled them: byte-string keys, rows of 3072
    values holding the red, green and blue planes one after the other."""
    written = {}
    for name in (*CIFAR_TRAIN_BATCHES, CIFAR_TEST_BATCH):
        data = RNG.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in RNG.integers(0, 10, per_batch)]
        (directory / name).write_bytes(pickle.dumps({b"batch_label": name.encode(), b"data": data, b"labels": labels}))
        written[name] = (data, labels)
    return written


def test_cifar10_batches_come_back_nhwc(tmp_path: Path) -> None:
    written = write_cifar(tmp_path)
    split = load_cifar10(tmp_path)
    assert split.x_train.shape == (20, 32, 32, 3) and split.x_test.shape == (4, 32, 32, 3)
    data, labels = written["data_batch_2"]
    first = split.x_train[4]  # the first image of the second batch
    # pixel (row 1, column 2) of each channel plane
    np.testing.assert_array_equal(first[1, 2], data[0, [32 + 2, 1024 + 32 + 2, 2048 + 32 + 2]] / np.float32(255))
    np.testing.assert_array_equal(split.y_train[4:8], labels)


def test_cifar_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    write_cifar(tmp_path)

    class Exploit:
        def __reduce__(self):
            return (print, ("this must not run",))

    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": Exploit(), b"labels": []}))
    with pytest.raises(
        DataFileError, match=r"test_batch: not a readable CIFAR-10 pickle.*refusing to build builtins\.print"
    ):
        load_cifar10(tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"garbage", "not a readable CIFAR-10 pickle"),
        (pickle.dumps([1, 2, 3]), "holds a list"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}), r"keys \['data'\]; expected 'data' and 'labels'"),
        (pickle.dumps({b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]}), r"data of shape \(2, 1024\)"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}), r"labels of shape \(1,\)"),
    ],
)
def test_corrupt_cifar_batch_is_named(tmp_path: Path, content: bytes, message: str) -> None:
    write_cifar(tmp_path)
    (tmp_path / "data_batch_3").write_bytes(content)
    with pytest.raises(DataFileError, match=f"data_batch_3: {message}"):
        load_cifar10(tmp_path)


def test_truncated_cifar_batch_is_named(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    raw = (tmp_path / "data_batch_5").read_bytes()
    (tmp_path / "data_batch_5").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(DataFileError, match="data_batch_5: not a readable CIFAR-10 pickle"):
        load_cifar10(tmp_path)


def test_missing_cifar_batch_is_named(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    (tmp_path / "data_batch_1").unlink()
    with pytest.raises(DataFileError, match="data_batch_1: no such file"):
        load_cifar10(tmp_path)
