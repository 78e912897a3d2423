"""Spec validation: every bad field raises SpecError naming the field and what is allowed."""

from __future__ import annotations

import ast
import dataclasses
import inspect

import pytest

import spec.layers
import spec.models.dense
import spec.models.transformer
import spec.models.vision
from spec.errors import SpecError
from spec.layers import Activation
from spec.models import ZOO, MLPSpec, get_model


def mlp(**overrides: object) -> MLPSpec:
    fields = dict(
        name="tiny", input_size=4, hidden_sizes=(3,), output_size=2, activations=("relu",), output_activation="softmax"
    )
    fields.update(overrides)
    return MLPSpec(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "field", "allowed_fragment"),
    [
        ({"name": "not valid"}, "name", "identifier"),
        ({"input_size": 0}, "input_size", "positive integer"),
        ({"input_size": 2.5}, "input_size", "positive integer"),
        ({"input_size": True}, "input_size", "positive integer"),
        ({"output_size": -1}, "output_size", "positive integer"),
        ({"hidden_sizes": "64"}, "hidden_sizes", "sequence"),
        ({"hidden_sizes": (3, 0), "activations": ("relu", "relu")}, "hidden_sizes[1]", "positive integer"),
        ({"activations": ("relu", "relu")}, "activations", "one per hidden layer (1)"),
        ({"activations": ("swish",)}, "activation", "relu"),
        ({"activations": ("leaky_relu",)}, "activation.negative_slope", "explicit value"),
        ({"activations": ("leaky_relu(abc)",)}, "activation.negative_slope", "a number"),
        ({"activations": ("leaky_relu(1.5)",)}, "activation.negative_slope", "[0, 1)"),
        ({"activations": ("elu",)}, "activation.alpha", "explicit value"),
        ({"activations": ("elu(-1)",)}, "activation.alpha", "> 0"),
        ({"activations": ("gelu",)}, "activation.approximate", "explicit value"),
        ({"activations": ("gelu(fast)",)}, "activation.approximate", "'exact', 'tanh'"),
        ({"activations": ("relu(2)",)}, "activation", "relu without parameters"),
        ({"output_activation": "relu"}, "output_activation", "'softmax', 'sigmoid', 'linear'"),
        ({"use_bias": 1}, "use_bias", "True, False"),
        ({"kernel_initializer": "xavier"}, "kernel_initializer", "glorot_uniform"),
        ({"bias_initializer": "ones"}, "bias_initializer", "zeros"),
    ],
)
def test_bad_field_raises_spec_error_naming_it(overrides: dict, field: str, allowed_fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        mlp(**overrides)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert allowed_fragment in str(info.value)


def test_activation_keyword_form_checks_parameters_too() -> None:
    with pytest.raises(SpecError, match=r"activation\.alpha"):
        Activation("relu", alpha=1.0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("relu", Activation("relu")),
        ("leaky_relu(0.2)", Activation("leaky_relu", negative_slope=0.2)),
        (" elu( 1.0 ) ", Activation("elu", alpha=1.0)),
        ("gelu(tanh)", Activation("gelu", approximate="tanh")),
        ("gelu(exact)", Activation("gelu", approximate="exact")),
    ],
)
def test_activation_parse_round_trips_through_str(text: str, expected: Activation) -> None:
    parsed = Activation.parse(text)
    assert parsed == expected
    assert Activation.parse(str(parsed)) == parsed


def test_one_activation_string_applies_to_every_hidden_layer() -> None:
    spec = mlp(hidden_sizes=[5, 4], activations="tanh")
    assert spec.hidden_sizes == (5, 4)
    assert spec.activations == (Activation("tanh"), Activation("tanh"))


def test_specs_are_frozen_and_hashable() -> None:
    spec = mlp()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.input_size = 5  # type: ignore[misc]
    assert hash(spec) == hash(mlp())


def test_zoo_has_the_classic_mnist_net() -> None:
    spec = get_model("mnist_mlp")
    assert spec.layer_sizes == (784, 512, 10)
    assert spec.activations == (Activation("relu"),)
    assert spec.output_activation == "softmax"
    assert spec.describe() == "784-512(relu)-10(softmax)"


def test_unknown_zoo_model_lists_the_known_ones() -> None:
    with pytest.raises(SpecError) as info:
        get_model("lenet9000")
    assert info.value.field == "model"
    for name in ZOO:
        assert name in str(info.value)


def _typed_constructors() -> list[tuple[type, ast.FunctionDef]]:
    """Every spec class whose ``__init__`` is written out for the type checker only (under
    ``if TYPE_CHECKING:``, to accept what ``__post_init__`` parses), with that ``__init__``."""
    found = []
    for module in (spec.layers, spec.models.dense, spec.models.transformer, spec.models.vision):
        for node in ast.walk(ast.parse(inspect.getsource(module))):
            if not isinstance(node, ast.ClassDef):
                continue
            for block in node.body:
                if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING":
                    for stub in block.body:
                        if isinstance(stub, ast.FunctionDef) and stub.name == "__init__":
                            found.append((getattr(module, node.name), stub))
    return found


def test_the_type_checkers_constructors_take_the_dataclass_fields() -> None:
    # a field added to a spec class but not to its typed __init__ would go unchecked by mypy
    constructors = _typed_constructors()
    assert {cls.__name__ for cls, _ in constructors} >= {"Act", "MLPSpec", "TransformerSpec", "Conv2D"}
    for cls, stub in constructors:
        runtime = inspect.signature(cls.__init__).parameters
        positional = [a.arg for a in (*stub.args.posonlyargs, *stub.args.args)]
        assert positional + [a.arg for a in stub.args.kwonlyargs] == list(runtime), cls.__name__
        keyword_only = [n for n, p in runtime.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
        assert [a.arg for a in stub.args.kwonlyargs] == keyword_only, cls.__name__
