"""Where native models record their canonical layers (:mod:`spec.layer_paths`): the container and its
checks (each built model's record: ``tests/contract/test_counts.py``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from spec.layer_paths import LayerPaths, check_layer_paths, resolve
from spec.models import ZOO
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
