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

from spec.models import ModelSpec, ResNetSpec, RNNSpec, TransformerSpec
from spec.params import encoder_layer_name, layer_names
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


def dotted(path: str) -> NativePath:
    """A source model's dotted path ("layer1.0.conv1", "bilstm.forward_rnn") as a :data:`NativePath`."""
    return tuple(int(part) if part.isdigit() else part for part in path.split("."))


def place(root: object, path: NativePath, value: object) -> None:
    """Put ``value`` at ``path`` from ``root``, where :func:`resolve` finds what is there."""
    parent: Any = resolve(root, path[:-1])
    key = path[-1]
    if isinstance(key, int) or isinstance(parent, Mapping):
        parent[key] = value
    else:
        setattr(parent, key, value)


def check_layer_paths(spec: ModelSpec, paths: LayerPaths, backend: str) -> None:
    """That a native model recorded exactly the spec's canonical layers: a model class that forgets
    one (or records one the spec does not have) fails at build, naming them."""
    missing, extra = mismatched_names(layer_names(spec), paths)
    if missing or extra:
        raise RuntimeError(
            f"{backend}: the native model of {spec.name!r} recorded the wrong canonical layers "
            f"(missing: {missing}; not in the spec: {extra})"
        )


def observed_points(spec: ModelSpec) -> list[str]:
    """Where a port of a residual, recurrent or Transformer model is judged inside the model, in the
    order they are computed: the output of each canonical layer or block named — a ResNet's every
    convolution, BatchNorm and residual block; each recurrent layer (its directions joined); a
    Transformer's embedding lookup (unscaled), encoder layers and final norm — and the head. Each is
    the output of the native layer that holds the point's canonical layers (:func:`point_holders`)."""
    match spec:
        case ResNetSpec():
            points = ["stem/conv", "stem/bn"]
            for block in spec.blocks():
                parts = [f"{kind}_{letter}" for letter in block.path for kind in ("conv", "bn")]
                parts += ["shortcut_conv", "shortcut_bn"] if block.has_shortcut_conv else []
                points += [*(f"{block.name}/{part}" for part in parts), block.name]
            return [*points, "head"]
        case RNNSpec():
            return [*(f"rnn_{index}" for index in range(spec.num_layers)), "dense_0"]
        case TransformerSpec():
            encoders = [encoder_layer_name(index) for index in range(spec.num_layers)]
            return ["embedding", *encoders, *(["final_norm"] if spec.norm == "pre" else []), "dense_0"]
    raise ValueError(f"no observed points for a {type(spec).__name__}: a sequential spec is cut after its layers")


def within(layer: str, point: str) -> bool:
    """Whether canonical ``layer`` is ``point`` or inside it (``stage_0/block_0/conv_a`` is in ``stage_0/block_0``)."""
    return layer == point or layer.startswith(f"{point}/")


def holder_of(point: str, paths: Mapping[str, tuple[Any, ...]]) -> tuple[Any, ...] | None:
    """The path of the deepest native layer holding all of ``point``'s canonical layers (the common
    start of their ``paths``), or ``None`` where they share none."""
    own = [path for layer, path in paths.items() if within(layer, point)]
    if not own:
        return None
    common = own[0][: min(len(path) for path in own)]
    while any(path[: len(common)] != common for path in own):
        common = common[:-1]
    if common and common[-1] == "cell":  # a recurrent layer's cell runs one step: the layer runs them all
        common = common[:-1]
    return common or None


def point_holders(spec: ModelSpec, paths: Mapping[str, tuple[Any, ...]]) -> dict[str, tuple[Any, ...]]:
    """The path of the native layer whose output is each of :func:`observed_points` (:func:`holder_of`).
    Where one layer holds several points (torch's ``nn.LSTM`` holds a whole stack), its output is the
    last of them, and the others have no holder."""
    holders: dict[tuple[Any, ...], str] = {}
    for point in observed_points(spec):
        holder = holder_of(point, paths)
        if holder is not None:
            holders[holder] = point  # a later point held by the same layer replaces the earlier one
    return {point: path for path, point in holders.items()}
