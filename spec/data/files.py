"""Loaders for the standard image data files, for users who have them (nothing is downloaded).

* MNIST as Keras stores it: one ``mnist.npz`` with ``x_train`` (n, 28, 28) uint8, ``y_train``,
  ``x_test`` and ``y_test``.
* MNIST as LeCun distributes it: four IDX files (``train-images-idx3-ubyte`` …, optionally ``.gz``).
  IDX: two zero bytes, a type code (0x08 unsigned byte …), the number of dimensions, each dimension
  as a big-endian int32, then the values, big-endian.
* CIFAR-10, python version: ``data_batch_1`` … ``data_batch_5`` and ``test_batch``, each a pickled
  dict with ``data`` (n, 3072) uint8 — 1024 red, 1024 green, then 1024 blue values of a 32×32 image
  — and ``labels``. Images come back NHWC.

Pixels are returned as float32 in [0, 1], labels as int64. A file that is missing, corrupt,
truncated or of the wrong shape raises :class:`DataFileError` naming the file and what is wrong.
Pickles are read with an unpickler that builds nothing but plain containers and NumPy arrays, so a
hostile file cannot run code.
"""

from __future__ import annotations

import gzip
import io
import pickle
import zipfile
from pathlib import Path
from typing import ClassVar

import numpy as np

from spec.data import Split

MNIST_SHAPE = (28, 28)
CIFAR_SHAPE = (32, 32, 3)
CLASSES = 10
MNIST_IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_BATCH = "test_batch"

# IDX type codes -> big-endian NumPy dtypes
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DataFileError(ValueError):
    """A data file that cannot be used: names the file and what is wrong with it."""


def _fail(path: Path, problem: str) -> DataFileError:
    return DataFileError(f"{path}: {problem}")


def _pixels(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float32) / 255.0


def _labels(path: Path, labels: np.ndarray, count: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer):
        raise _fail(path, f"labels of shape {labels.shape} and dtype {labels.dtype}; expected {count} integers")
    if count and (labels.min() < 0 or labels.max() >= CLASSES):
        raise _fail(path, f"labels range over [{labels.min()}, {labels.max()}]; expected class ids 0–{CLASSES - 1}")
    return labels.astype(np.int64)


def _mnist_images(path: Path, images: np.ndarray) -> np.ndarray:
    if images.ndim != 3 or images.shape[1:] != MNIST_SHAPE or images.dtype != np.uint8:
        raise _fail(path, f"images of shape {images.shape} and dtype {images.dtype}; expected (n, 28, 28) uint8")
    return _pixels(images)[..., None]  # NHWC with one channel


def load_mnist_npz(path: str | Path) -> Split:
    """MNIST from Keras's ``mnist.npz``: images (n, 28, 28, 1) float32 in [0, 1], labels int64."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in MNIST_IDX_FILES if key not in archive.files]
            if missing:
                raise _fail(path, f"missing arrays {missing}; found {archive.files}")
            arrays = {key: archive[key] for key in MNIST_IDX_FILES}
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        if isinstance(exc, DataFileError):
            raise
        raise _fail(path, f"not a readable .npz archive ({exc})") from None
    x_train, x_test = (_mnist_images(path, arrays[key]) for key in ("x_train", "x_test"))
    return Split(
        x_train, _labels(path, arrays["y_train"], len(x_train)), x_test, _labels(path, arrays["y_test"], len(x_test))
    )


def read_idx(path: str | Path) -> np.ndarray:
    """The array in one IDX file (gzip-compressed if its name ends in ``.gz``), in native byte order."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise _fail(path, f"not a readable gzip file ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise _fail(path, "not an IDX file (it must start with two zero bytes, a type code and a rank)")
    type_code, rank = raw[2], raw[3]
    if type_code not in _IDX_TYPES:
        raise _fail(path, f"unknown IDX type code 0x{type_code:02x}; known: {[hex(c) for c in _IDX_TYPES]}")
    header = 4 + 4 * rank
    if len(raw) < header:
        raise _fail(path, f"truncated header: {len(raw)} bytes, a rank-{rank} header needs {header}")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=rank, offset=4))
    dtype = np.dtype(_IDX_TYPES[type_code])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        state = "truncated" if len(raw) < expected else "too long"
        raise _fail(path, f"{state}: {len(raw)} bytes, shape {shape} of {dtype} needs {expected}")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _idx_file(directory: Path, stem: str) -> Path:
    for name in (stem, f"{stem}.gz"):
        if (directory / name).exists():
            return directory / name
    raise _fail(directory / stem, "no such file (nor with .gz)")


def load_mnist_idx(directory: str | Path) -> Split:
    """MNIST from the four IDX files in ``directory`` (plain or ``.gz``)."""
    directory = Path(directory)
    arrays = {}
    for key, stem in MNIST_IDX_FILES.items():
        path = _idx_file(directory, stem)
        arrays[key] = (path, read_idx(path))
    x_train = _mnist_images(*arrays["x_train"])
    x_test = _mnist_images(*arrays["x_test"])
    return Split(x_train, _labels(*arrays["y_train"], len(x_train)), x_test, _labels(*arrays["y_test"], len(x_test)))


class _SafeUnpickler(pickle.Unpickler):
    """Builds NumPy arrays and plain containers only; anything else in the file is refused."""

    _ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to build {module}.{name}")


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _SafeUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise _fail(path, f"not a readable CIFAR-10 pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(batch, dict):
        raise _fail(path, f"holds a {type(batch).__name__}; expected a dict with 'data' and 'labels'")
    batch = {key.decode() if isinstance(key, bytes) else key: value for key, value in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise _fail(path, f"keys {sorted(map(str, batch))}; expected 'data' and 'labels'")
    data = np.asarray(batch["data"])
    if data.ndim != 2 or data.shape[1] != 3072 or data.dtype != np.uint8:
        raise _fail(path, f"data of shape {data.shape} and dtype {data.dtype}; expected (n, 3072) uint8")
    images = _pixels(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))  # channel planes -> NHWC
    return images, _labels(path, np.asarray(batch["labels"]), len(images))


def load_cifar10(directory: str | Path) -> Split:
    """CIFAR-10 from the python batches in ``directory`` (e.g. ``cifar-10-batches-py``): images
    (n, 32, 32, 3) float32 in [0, 1] (NHWC), labels int64."""
    directory = Path(directory)
    train = [_cifar_batch(directory / name) for name in CIFAR_TRAIN_BATCHES]
    x_test, y_test = _cifar_batch(directory / CIFAR_TEST_BATCH)
    return Split(np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]), x_test, y_test)
