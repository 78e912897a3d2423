"""The canonical weight file, as .npz and as safetensors: round trip and clear errors for bad files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from spec.backend import Backend
from spec.cases import perturbed_params
from spec.errors import WeightFileError
from spec.models import ModelSpec, get_model
from spec.params import init_params
from spec.weights import load_weights, save_weights

SPEC = get_model("digits_mlp")


# the two formats of the canonical file, by the path's suffix
FORMATS = pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
READABLE = {".npz": "not a readable .npz", ".safetensors": "not a readable safetensors"}


@FORMATS
def test_round_trip_is_bit_exact(tmp_path: Path, suffix: str) -> None:
    params = init_params(SPEC, 3)
    path = save_weights(tmp_path / f"w{suffix}", SPEC, params)
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
    """A file as another tool (or another version) would write it: any tensors, any metadata."""
    if path.suffix == ".safetensors":
        from safetensors.numpy import save_file

        save_file(arrays, path, None if meta is None else {"__triptych__": json.dumps(meta)})
        return path
    with path.open("wb") as f:
        extra = {} if meta is None else {"__triptych__": np.array(json.dumps(meta))}
        np.savez(f, **arrays, **extra)
    return path


META = {"format_version": 1, "model": "digits_mlp", "kind": "mlp"}


@FORMATS
def test_wrong_shape_names_the_parameter_and_the_file(tmp_path: Path, suffix: str) -> None:
    params = init_params(SPEC, 0)
    params["dense_1/kernel"] = np.zeros((64, 31), np.float32)
    path = _write_raw(tmp_path / f"bad{suffix}", params, META)
    with pytest.raises(WeightFileError, match=rf"bad\{suffix}.*'dense_1/kernel' has shape \(64, 31\)"):
        load_weights(path, SPEC)


@FORMATS
def test_wrong_name_is_listed(tmp_path: Path, suffix: str) -> None:
    params = init_params(SPEC, 0)
    params["dense_one/kernel"] = params.pop("dense_1/kernel")
    path = _write_raw(tmp_path / f"renamed{suffix}", params, META)
    with pytest.raises(WeightFileError, match=r"missing \['dense_1/kernel'\].*unexpected \['dense_one/kernel'\]"):
        load_weights(path, SPEC)


@FORMATS
def test_weights_for_another_architecture_are_refused(tmp_path: Path, suffix: str) -> None:
    path = save_weights(tmp_path / f"mnist{suffix}", get_model("mnist_mlp"), init_params(get_model("mnist_mlp"), 0))
    with pytest.raises(WeightFileError, match=rf"mnist\{suffix}.*missing \['dense_2/kernel', 'dense_2/bias'\]"):
        load_weights(path, SPEC)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated zip", b"hello, I am a text file"])
@FORMATS
def test_corrupt_file_is_named(tmp_path: Path, content: bytes, suffix: str) -> None:
    path = tmp_path / f"corrupt{suffix}"
    path.write_bytes(content)
    with pytest.raises(WeightFileError, match=rf"corrupt\{suffix}.*{READABLE[suffix]}"):
        load_weights(path, SPEC)


@FORMATS
def test_truncated_archive_is_named(tmp_path: Path, suffix: str) -> None:
    good = save_weights(tmp_path / f"good{suffix}", SPEC, init_params(SPEC, 0)).read_bytes()
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(WeightFileError, match=rf"cut\{suffix}.*{READABLE[suffix]}"):
        load_weights(path, SPEC)


@FORMATS
def test_missing_metadata_version_or_kind(tmp_path: Path, suffix: str) -> None:
    params = init_params(SPEC, 0)
    with pytest.raises(WeightFileError, match="not a triptych weight file"):
        load_weights(_write_raw(tmp_path / f"plain{suffix}", params, None), SPEC)
    with pytest.raises(WeightFileError, match="format version 99"):
        load_weights(_write_raw(tmp_path / f"future{suffix}", params, {**META, "format_version": 99}), SPEC)
    with pytest.raises(WeightFileError, match="holds a 'cnn' model"):
        load_weights(_write_raw(tmp_path / f"cnn{suffix}", params, {**META, "kind": "cnn"}), SPEC)
    with pytest.raises(WeightFileError, match="does not exist"):
        load_weights(tmp_path / f"nowhere{suffix}", SPEC)


# --- each framework's own file ------------------------------------------------------------------

# a CNN; an LSTM's held bias; BatchNorm statistics; then a model of each other kind, whose file a
# framework must rebuild whole (Keras's .keras: the spec in its config)
NATIVE_SPECS = [
    "digits_cnn",
    "lstm_forecaster",
    "batchnorm_cnn",
    "tiny_resnet_cifar",
    "tiny_pre_first",
    "digits_vae_gelu",
    "pixel_gan",
]


def native_spec(name: str) -> ModelSpec:
    from spec.cases import SMALL

    return SMALL.get(name) or get_model(name)


@pytest.mark.parametrize("name", NATIVE_SPECS)
def test_a_native_file_round_trips_bit_exactly(backend: Backend, name: str, tmp_path: Path) -> None:
    spec = native_spec(name)
    saved, other = perturbed_params(spec, 1), perturbed_params(spec, 2)
    path = backend.save_native(backend.build(spec, saved), tmp_path / name)
    assert path.name == name + backend.native_suffix and path.is_file()
    model = backend.build(spec, other)
    backend.load_native(model, path)
    loaded = backend.export_params(model)
    for tensor, value in saved.items():
        np.testing.assert_array_equal(loaded[tensor], value, err_msg=tensor)
    if backend.framework == "keras":  # a .keras file: Keras rebuilds the model from the spec in its config
        import keras

        rebuilt = keras.saving.load_model(path)
        assert rebuilt.spec == spec
        for tensor, value in backend.export_params(rebuilt).items():
            np.testing.assert_array_equal(value, saved[tensor], err_msg=tensor)


def test_a_bad_native_file_is_named(backend: Backend, tmp_path: Path) -> None:
    spec = native_spec("digits_cnn")
    path = backend.save_native(backend.build(spec, init_params(spec, 0)), tmp_path / "digits_cnn")
    model = backend.build(spec, init_params(spec, 1))
    with pytest.raises(WeightFileError, match="does not exist"):
        backend.load_native(model, tmp_path / f"nowhere{backend.native_suffix}")
    cut = tmp_path / f"cut{backend.native_suffix}"
    cut.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(WeightFileError, match=re.escape(str(cut))):
        backend.load_native(model, cut)
    # a file of another model: the MLP's tensors where the CNN has others
    mlp = get_model("digits_mlp")
    foreign = backend.save_native(backend.build(mlp, init_params(mlp, 0)), tmp_path / "digits_mlp")
    with pytest.raises(WeightFileError, match=re.escape(str(foreign))):
        backend.load_native(model, foreign)
    np.testing.assert_array_equal(backend.export_params(model)["conv_0/kernel"], init_params(spec, 1)["conv_0/kernel"])
