"""A spec as plain JSON data, and back: for files other tools read, and for Keras's own model files
(triptych's Keras models carry their spec in ``get_config``, so a ``.keras`` file rebuilds them)."""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any

from spec.errors import SpecError
from spec.layers import (
    Act,
    Activation,
    BatchNorm,
    Conv2D,
    ConvTranspose2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool,
    Pool2D,
    Reshape,
)
from spec.models import CNNSpec, ConvGANSpec, GANSpec, MLPSpec, ModelSpec, ResNetSpec, RNNSpec, TransformerSpec, VAESpec
from spec.optimizers import OptimizerSpec
from spec.schedules import ScheduleSpec

# Every class a spec is made of, by name: what a config may name, and nothing else.
CLASSES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        MLPSpec, CNNSpec, ResNetSpec, RNNSpec, TransformerSpec, VAESpec, GANSpec, ConvGANSpec,
        OptimizerSpec, ScheduleSpec,
        Activation, Act, BatchNorm, Conv2D, ConvTranspose2D, Dense, Dropout, Flatten, GlobalAvgPool, Pool2D, Reshape,
    )
}  # fmt: skip


def to_config(value: Any) -> Any:
    """``value`` (a spec, a layer, or a field of one) as JSON data: a dataclass as its class's name and
    its fields, a tuple as ``{"tuple": [...]}`` (JSON has lists only; specs hold tuples)."""
    if is_dataclass(value) and not isinstance(value, type):
        if type(value).__name__ not in CLASSES:
            raise SpecError("config", type(value).__name__, sorted(CLASSES))
        return {
            "class": type(value).__name__,
            **{f.name: to_config(getattr(value, f.name)) for f in fields(value) if f.init},
        }
    if isinstance(value, tuple):
        return {"tuple": [to_config(item) for item in value]}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise SpecError("config", type(value).__name__, "specs, layers, tuples, strings, numbers, booleans and None")


def from_config(config: Any) -> Any:
    """The spec (or layer, or field) :func:`to_config` made ``config`` of; a class it does not know, or a
    field its class does not take, raises naming it."""
    if isinstance(config, dict):
        if set(config) == {"tuple"}:
            return tuple(from_config(item) for item in config["tuple"])
        name = config.get("class")
        if name not in CLASSES:
            raise SpecError("config.class", name, sorted(CLASSES))
        values = {key: from_config(value) for key, value in config.items() if key != "class"}
        try:
            return CLASSES[name](**values)
        except TypeError as exc:  # a field the class does not have
            raise SpecError(f"config of {name}", sorted(values), str(exc)) from exc
    if isinstance(config, list):
        raise SpecError("config", "a list", "tuples as {'tuple': [...]}")
    return config


def spec_from_config(config: Any) -> ModelSpec:
    """A model spec from its config."""
    spec = from_config(config)
    if not isinstance(spec, ModelSpec):
        raise SpecError("config", type(spec).__name__, "a model spec")
    return spec
