"""Where each canonical layer lives in a native model, as the model records it while it builds.

Every backend's model holds a :class:`LayerPaths` as ``model.layer_paths``: for each canonical layer
with tensors (:func:`spec.params.layer_names`), the path from the model down to the native layer
that holds them — attribute names, and indices into list-like containers. The model writes it
beside the code that makes each layer, so the backends' ``weights.py`` look layers up instead of
re-deriving where each kind of model keeps them; they only convert names of variables and layouts.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from spec.models import ModelSpec
from spec.params import layer_names
from spec.validation import mismatched_names

NativePath = tuple[str | int, ...]  # attribute names (or mapping keys) and list indices, from the model down


class LayerPaths(Mapping[str, NativePath]):
    """Canonical layer name -> :data:`NativePath` of its native layer. Immutable and hashable (a Flax
    module keeps it as a static attribute, part of the graph definition that ``jax.jit`` hashes)."""

    __slots__ = ("_paths",)

    def __init__(self, paths: Mapping[str, NativePath] | Iterable[tuple[str, NativePath]] = ()) -> None:
        self._paths: dict[str, NativePath] = dict(paths)

    def __getitem__(self, layer: str) -> NativePath:
        try:
            return self._paths[layer]
        except KeyError:
            raise KeyError(f"no native layer recorded for canonical layer {layer!r}; recorded: {list(self)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def __hash__(self) -> int:
        return hash(tuple(self._paths.items()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LayerPaths) and self._paths == other._paths

    def __repr__(self) -> str:
        return f"LayerPaths({self._paths!r})"

    def __or__(self, other: Mapping[str, NativePath]) -> LayerPaths:
        clash = self._paths.keys() & other.keys()
        if clash:
            raise ValueError(f"canonical layers recorded twice: {sorted(clash)}")
        return LayerPaths({**self._paths, **other})

    def under(self, layer_prefix: str, *path_prefix: str | int) -> LayerPaths:
        """These paths of a sub-model (a VAE's encoder, a residual block) as its parent sees them: its
        canonical layers under ``layer_prefix/``, its native layers under ``path_prefix``."""
        return LayerPaths({f"{layer_prefix}/{layer}": (*path_prefix, *path) for layer, path in self._paths.items()})


def resolve(root: object, path: NativePath) -> object:
    """The object at ``path`` from ``root``: an int indexes, a string is a key of a mapping (an
    ``nnx.State``) or else an attribute (a module, a Keras layer, a torch ``ModuleDict``)."""
    node: Any = root
    for key in path:
        node = node[key] if isinstance(key, int) or isinstance(node, Mapping) else getattr(node, key)
    return node


def check_layer_paths(spec: ModelSpec, paths: LayerPaths, backend: str) -> None:
    """That a native model recorded exactly the spec's canonical layers: a model class that forgets
    one (or records one the spec does not have) fails at build, naming them."""
    missing, extra = mismatched_names(layer_names(spec), paths)
    if missing or extra:
        raise RuntimeError(
            f"{backend}: the native model of {spec.name!r} recorded the wrong canonical layers "
            f"(missing: {missing}; not in the spec: {extra})"
        )
