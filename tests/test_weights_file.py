"""The canonical weight file: round trip and clear errors for bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spec.errors import WeightFileError
from spec.models import get_model
from spec.params import init_params
from spec.weights import load_weights, save_weights

SPEC = get_model("digits_mlp")


def test_round_trip_is_bit_exact(tmp_path: Path) -> None:
    params = init_params(SPEC, 3)
    path = save_weights(tmp_path / "w.npz", SPEC, params)
    loaded = load_weights(path, SPEC)
    assert list(loaded) == list(params)
    for name in params:
        assert loaded[name].dtype == np.float32
        np.testing.assert_array_equal(loaded[name], params[name])


def test_name_without_npz_suffix_is_kept(tmp_path: Path) -> None:
    path = save_weights(tmp_path / "weights.bin", SPEC, init_params(SPEC, 0))
    assert path.name == "weights.bin" and path.exists()
    load_weights(path, SPEC)


def _write_raw(path: Path, arrays: dict[str, np.ndarray], meta: object) -> Path:
    with path.open("wb") as f:
        extra = {} if meta is None else {"__triptych__": np.array(json.dumps(meta))}
        np.savez(f, **arrays, **extra)
    return path


META = {"format_version": 1, "model": "digits_mlp", "kind": "mlp"}


def test_wrong_shape_names_the_parameter_and_the_file(tmp_path: Path) -> None:
    params = init_params(SPEC, 0)
    params["dense_1/kernel"] = np.zeros((64, 31), np.float32)
    path = _write_raw(tmp_path / "bad.npz", params, META)
    with pytest.raises(WeightFileError, match=r"bad\.npz.*'dense_1/kernel' has shape \(64, 31\)"):
        load_weights(path, SPEC)


def test_wrong_name_is_listed(tmp_path: Path) -> None:
    params = init_params(SPEC, 0)
    params["dense_one/kernel"] = params.pop("dense_1/kernel")
    path = _write_raw(tmp_path / "renamed.npz", params, META)
    with pytest.raises(WeightFileError, match=r"missing \['dense_1/kernel'\].*unexpected \['dense_one/kernel'\]"):
        load_weights(path, SPEC)


def test_weights_for_another_architecture_are_refused(tmp_path: Path) -> None:
    path = save_weights(tmp_path / "mnist.npz", get_model("mnist_mlp"), init_params(get_model("mnist_mlp"), 0))
    with pytest.raises(WeightFileError, match=r"mnist\.npz.*missing \['dense_2/kernel', 'dense_2/bias'\]"):
        load_weights(path, SPEC)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a readable .npz"),
        (b"PK\x03\x04 truncated zip", "not a readable .npz"),
        (b"hello, I am a text file", "not a readable .npz"),
    ],
)
def test_corrupt_file_is_named(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "corrupt.npz"
    path.write_bytes(content)
    with pytest.raises(WeightFileError, match=rf"corrupt\.npz.*{message}"):
        load_weights(path, SPEC)


def test_truncated_archive_is_named(tmp_path: Path) -> None:
    good = save_weights(tmp_path / "good.npz", SPEC, init_params(SPEC, 0)).read_bytes()
    path = tmp_path / "cut.npz"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(WeightFileError, match=r"cut\.npz"):
        load_weights(path, SPEC)


def test_missing_metadata_version_or_kind(tmp_path: Path) -> None:
    params = init_params(SPEC, 0)
    with pytest.raises(WeightFileError, match="not a triptych weight file"):
        load_weights(_write_raw(tmp_path / "plain.npz", params, None), SPEC)
    with pytest.raises(WeightFileError, match="format version 99"):
        load_weights(_write_raw(tmp_path / "future.npz", params, {**META, "format_version": 99}), SPEC)
    with pytest.raises(WeightFileError, match="holds a 'cnn' model"):
        load_weights(_write_raw(tmp_path / "cnn.npz", params, {**META, "kind": "cnn"}), SPEC)
    with pytest.raises(WeightFileError, match="does not exist"):
        load_weights(tmp_path / "nowhere.npz", SPEC)
