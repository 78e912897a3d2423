"""Where native models record their canonical layers (:mod:`spec.layer_paths`): the container and its
checks (each built model's record: ``tests/contract/test_counts.py``)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from spec import port
from spec import reference as ref
from spec.backend import Backend
from spec.cases import Case, perturbed_params
from spec.errors import UnsupportedOption
from spec.layer_paths import LayerPaths, check_layer_paths, observed_points, place, point_holders, resolve
from spec.models import ZOO, RNNSpec
from spec.params import layer_names


def test_a_sub_models_paths_join_under_its_prefix() -> None:
    block = LayerPaths({"conv_a": ("conv_a",), "bn_a": ("bn_a",)})
    joined = LayerPaths({"stem/conv": ("stem", 0)}) | block.under("stage_1/block_0", "stages", 1, 0)
    assert dict(joined) == {
        "stem/conv": ("stem", 0),
        "stage_1/block_0/conv_a": ("stages", 1, 0, "conv_a"),
        "stage_1/block_0/bn_a": ("stages", 1, 0, "bn_a"),
    }
    assert list(joined) == ["stem/conv", "stage_1/block_0/conv_a", "stage_1/block_0/bn_a"]  # build order kept


def test_a_layer_recorded_twice_is_refused() -> None:
    with pytest.raises(ValueError, match=r"recorded twice: \['head'\]"):
        LayerPaths({"head": ("head",)}) | {"head": ("fc",)}


def test_paths_are_hashable_values() -> None:
    # a Flax module keeps them as a static attribute, which jax.jit hashes with the graph definition
    first, second = LayerPaths({"dense_0": ("dense", 0)}), LayerPaths([("dense_0", ("dense", 0))])
    assert first == second and hash(first) == hash(second)
    assert first != LayerPaths({"dense_0": ("dense", 1)})


def test_an_unrecorded_layer_is_named_with_what_was_recorded() -> None:
    with pytest.raises(KeyError, match=r"'dense_1'.*recorded: \['dense_0'\]"):
        LayerPaths({"dense_0": ("dense", 0)})["dense_1"]


def test_resolve_walks_attributes_indices_and_mapping_keys() -> None:
    leaf = object()
    root = SimpleNamespace(stages=[SimpleNamespace(blocks={"block_0": SimpleNamespace(conv=leaf)})])
    assert resolve(root, ("stages", 0, "blocks", "block_0", "conv")) is leaf


def test_a_model_recording_the_wrong_layers_fails_naming_them() -> None:
    spec = ZOO["digits_mlp"]
    assert layer_names(spec) == ["dense_0", "dense_1", "dense_2"]
    wrong = LayerPaths({"dense_0": ("dense", 0), "dense_1": ("dense", 1), "output": ("dense", 2)})
    with pytest.raises(
        RuntimeError, match=r"torch: .*'digits_mlp'.*missing: \['dense_2'\].*not in the spec: \['output'\]"
    ):
        check_layer_paths(spec, wrong, "torch")


# --- inside a model: the points a port is judged at ---------------------------------------------------


def test_a_point_is_held_by_the_deepest_layer_holding_all_of_it() -> None:
    spec = ZOO["bigru_classifier"]  # two bidirectional layers
    keras_like = {  # each direction's cell holds its tensors; the layer running the cell is the point's
        "rnn_0/forward": ("recurrent", 0, "forward_layer", "cell"),
        "rnn_0/backward": ("recurrent", 0, "backward_layer", "cell"),
        "rnn_1/forward": ("recurrent", 1, "forward_layer", "cell"),
        "rnn_1/backward": ("recurrent", 1, "backward_layer", "cell"),
        "dense_0": ("head",),
    }
    assert point_holders(spec, keras_like) == {
        "rnn_0": ("recurrent", 0),
        "rnn_1": ("recurrent", 1),
        "dense_0": ("head",),
    }
    # torch's one nn.GRU holds the whole stack: its output is the top layer's, the lower one is not observed
    torch_like = {**{layer: ("recurrent",) for layer in keras_like if layer != "dense_0"}, "dense_0": ("head",)}
    assert point_holders(spec, torch_like) == {"rnn_1": ("recurrent",), "dense_0": ("head",)}
    # layers spread over a functional model's top level share no layer: that point is not observed
    encoder = {"encoder_0/ffn_0": ("dense_1",), "encoder_0/ffn_1": ("dense_2",), "dense_0": ("dense_3",)}
    assert point_holders(ZOO["transformer_classifier"], encoder) == {"dense_0": ("dense_3",)}


def test_place_puts_back_what_resolve_finds() -> None:
    root = SimpleNamespace(layers=[SimpleNamespace(conv="a")], table={"key": "b"})
    place(root, ("layers", 0, "conv"), "c")
    place(root, ("table", "key"), "d")
    assert resolve(root, ("layers", 0, "conv")) == "c" and root.table == {"key": "d"}


OBSERVED = [
    "resnet18_narrow",
    "bigru_classifier",
    "lstm_attention_forecaster",
    "transformer_classifier",
    "transformer_tagger",
]


@pytest.mark.parametrize("name", OBSERVED)
def test_every_point_inside_a_model_is_observed_and_agrees_with_the_judge(backend: Backend, name: str) -> None:
    """The judge records every observed point; each backend's layer holding it returns the judge's
    value there in evaluation and training mode — but inside torch's nn.GRU/nn.LSTM stack, which
    no layer holds alone. Keras's calls are wrapped only meanwhile."""
    spec = ZOO[name]
    params = perturbed_params(spec, 0)
    x = Case(spec).batch(0, 4)[0]
    assert set(observed_points(spec)) <= set(ref.layer_outputs(spec, params, x))
    try:
        model = backend.build(spec, params)
    except UnsupportedOption as exc:
        pytest.skip(f"{backend.name} cannot build {name}: {exc}")
    held = point_holders(spec, model.layer_paths)
    stacked = backend.name == "torch" and isinstance(spec, RNNSpec) and spec.num_layers > 1
    missing = {f"rnn_{index}" for index in range(spec.num_layers - 1)} if stacked else set()
    assert set(observed_points(spec)) - set(held) == missing
    imported = port.Imported("zoo", spec, params, {})
    for training in (False, True):
        checks = port.localise(imported, x, [backend], training=training)
        assert [check.part for check in checks] == observed_points(spec)
        assert all(check.ok for check in checks), checks
        assert {check.part for check in checks if check.errors[backend.name] is None} == missing
    # recording on this model leaves it as it was: a Keras layer's own call, Flax's layers put back
    before = backend.logits(model, x)
    assert set(backend.layer_outputs(model, x, held)) == set(held)
    layers = [resolve(model, path) for path in held.values()]
    assert not any("call" in vars(layer) for layer in layers)
    assert all(not type(layer).__name__.startswith("_Recording") for layer in layers)
    np.testing.assert_array_equal(backend.logits(model, x), before)
