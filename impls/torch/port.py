"""A user's ``nn.Module`` read into triptych: the spec it computes and its tensors in canonical form.

Sequential models — ``nn.Sequential`` or attribute-style modules whose ``forward`` calls layers and
functional activations in a chain, like the texts' ``DNN`` and ``SimpleCNN`` — are read from their
``torch.fx`` graph, so a ``F.relu`` or an ``x.view(x.size(0), -1)`` in ``forward`` counts as much as
an ``nn.ReLU`` child. A recurrent forecaster (an ``nn.RNN``/``LSTM``/``GRU`` and a Linear head on the
last step, like the texts' ``TimeSeriesLSTM``) becomes an :class:`~spec.models.RNNSpec`. ResNets
are matched by torchvision's naming (``conv1``, ``bn1``, ``layer1.0.conv1``, ``downsample.0``,
``fc``) at any image size and class count. Anything else — a residual connection outside that
scheme, a layer the specs do not know, an option they cannot express — raises
:class:`~spec.errors.PortError` naming the module and the node.

The tensors are copied into triptych's own torch model for the inferred spec, whose export converts
them to the canonical layout (:mod:`impls.torch.weights`: kernels transposed, a recurrent layer's
two biases folded into one where only their sum counts).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from impls.torch import weights
from impls.torch.models import ENCODER_PARTS, MODEL_CLASSES, SpecModel, recording_outputs
from spec.errors import PortError
from spec.layer_paths import dotted, point_holders
from spec.layers import (
    Act,
    Activation,
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Layer,
    Padding,
    Pool2D,
)
from spec.models import CNNSpec, ModelSpec, ResNetSpec, RNNSpec, TransformerSpec
from spec.params import layer_names, sinusoidal_positions
from spec.port import (
    Imported,
    SequentialReader,
    SourceLayersRun,
    SourceRun,
    dropout_note,
    indexes_positions,
    probe_tokens,
    require_layer,
    transformer_form,
)

# torch's modules and functions for each activation the specs know (the output's, softmax, apart)
_ACTIVATION_MODULES: dict[type[nn.Module], Callable[[Any], Activation]] = {
    nn.ReLU: lambda m: Activation("relu"),
    nn.Tanh: lambda m: Activation("tanh"),
    nn.Sigmoid: lambda m: Activation("sigmoid"),
    nn.LeakyReLU: lambda m: Activation("leaky_relu", negative_slope=float(m.negative_slope)),
    nn.ELU: lambda m: Activation("elu", alpha=float(m.alpha)),
    nn.GELU: lambda m: Activation("gelu", approximate="exact" if m.approximate == "none" else str(m.approximate)),
}
_ACTIVATION_FUNCTIONS: dict[object, str] = {
    F.relu: "relu",
    torch.relu: "relu",
    torch.tanh: "tanh",
    F.tanh: "tanh",
    torch.sigmoid: "sigmoid",
    F.sigmoid: "sigmoid",
    "relu": "relu",  # tensor methods: x.relu()
    "tanh": "tanh",
    "sigmoid": "sigmoid",
}
_SOFTMAX = (F.softmax, torch.softmax, "softmax")
_FLATTEN_METHODS = ("view", "reshape", "flatten")
M = TypeVar("M", bound=nn.Module)
_RECURRENT_CELLS = {nn.RNN: "simple_rnn", nn.LSTM: "lstm", nn.GRU: "gru"}


def import_model(module: nn.Module, input_shape: tuple[int, ...], name: str | None = None) -> Imported:
    """The spec ``module`` computes on inputs of ``input_shape`` (one example, torch's layout: (C, H, W)
    for images, (T, F) for batch-first sequences, (F,) for vectors) and its tensors in canonical form.
    ``name`` names the spec (default: the module's class)."""
    name = name or type(module).__name__
    spec, sources, target = _infer(module, tuple(input_shape), name)
    missing = [layer for layer in layer_names(spec) if layer not in sources]
    assert not missing, f"{name}: no source layer found for canonical {missing}"  # each reader maps them all
    _copy_tensors(module, target, sources, name)
    return Imported("torch", spec, weights.export(target), sources, _notes(module, spec))


def _notes(module: nn.Module, spec: ModelSpec) -> tuple[str, ...]:
    """What the port changes in training, though not in the outputs."""
    notes = []
    if isinstance(spec, RNNSpec) and spec.cell != "gru":  # a GRU keeps both biases
        notes.append(FOLDED_BIASES)
    if isinstance(spec, TransformerSpec):
        notes += dropout_note([child.p for child in module.modules() if isinstance(child, nn.Dropout)])
        padding = [child.padding_idx for child in module.modules() if isinstance(child, nn.Embedding)]
        if padding[0] is not None:
            notes.append(
                f"nn.Embedding(padding_idx={padding[0]}) keeps that row fixed in training; the spec trains every "
                "row (the padding row's gradient is zero only where padding is masked and pooled out)"
            )
    return tuple(notes)


# Measured by tests/test_port.py::test_a_torch_rnn_s_two_biases_train_twice_as_fast_as_their_fold.
FOLDED_BIASES = (
    "torch's two biases of each SimpleRNN or LSTM layer (b_ih, b_hh) are folded into the spec's one, "
    "their sum: the outputs are the same, but torch trains both with the same gradient, so their sum "
    "moves twice as far per step as the folded bias does. Training continues identically with the "
    "biases frozen, or with their learning rate doubled under a rule without weight decay (see "
    "'recurrent biases' in docs/framework-differences.md)."
)


def load_checkpoint(module: nn.Module, path: str | Path) -> None:
    """Load a state dict saved with ``torch.save`` (itself, or in a training checkpoint) into the
    user's module, every tensor required (:func:`impls.torch.weights.load_state_file`)."""
    weights.load_state_file(module, path)


def canonical_inputs(x: np.ndarray) -> np.ndarray:
    """A batch in torch's layout (NCHW images) in the canonical one (NHWC), its dtype as given."""
    x = np.asarray(x)
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if x.ndim == 4 else x


def source_outputs(module: nn.Module) -> SourceRun:
    """A runner of the user's module on canonical batches (NHWC images are given to it as NCHW),
    giving what its ``forward`` returns, the spec's outputs: in evaluation mode, or in training mode
    with every dropout at rate 0 and its buffers (running statistics) put back after."""

    @torch.no_grad()
    def run(x: np.ndarray, *, training: bool = False) -> np.ndarray:
        x = np.asarray(x)  # token ids as torch's (int64), anything else as float32
        tensor = torch.from_numpy(x.astype(np.int64 if np.issubdtype(x.dtype, np.integer) else np.float32))
        if tensor.ndim == 4:  # canonical NHWC -> NCHW with the strides of a fresh torch batch: with
            # one channel a permuted copy can keep a channels-last stride, and so the conv's output
            n, h, w, c = tensor.shape
            tensor = torch.empty(n, c, h, w).copy_(tensor.permute(0, 3, 1, 2))
        with _in_mode(module, training):
            return module(tensor).numpy()

    return run


@contextmanager
def _in_mode(module: nn.Module, training: bool) -> Iterator[None]:
    """``module`` in evaluation mode while open — or ``training``, in training mode with every
    dropout at rate 0, ``F.dropout`` included, and its buffers put back after — then in the mode it
    was in."""
    was_training = module.training
    rates: list[tuple[nn.Module, str]] = [
        (child, "p") for child in module.modules() if isinstance(child, nn.modules.dropout._DropoutNd)
    ]
    rates += [(child, "dropout") for child in module.modules() if isinstance(child, nn.MultiheadAttention)]
    saved = [(child, attribute, getattr(child, attribute)) for child, attribute in rates] if training else []
    buffers = {name: buffer.clone() for name, buffer in module.named_buffers()}
    for child, attribute, _ in saved:
        setattr(child, attribute, 0.0)
    module.train(training)
    dropout = F.dropout  # the functional dropout the reader accepts (training=self.training) too

    def at_rate_zero(input: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> torch.Tensor:
        return dropout(input, 0.0, training, inplace)

    try:
        if training:
            F.dropout = at_rate_zero
        yield
    finally:
        F.dropout = dropout
        module.train(was_training)
        for child, attribute, value in saved:
            setattr(child, attribute, value)
        with torch.no_grad():
            for name, buffer in module.named_buffers():
                buffer.copy_(buffers[name])


def source_layer_outputs(module: nn.Module, imported: Imported) -> SourceLayersRun:
    """A runner of the user's module (in either mode, as :func:`source_outputs`) giving, by canonical
    name, what each of its layers that holds a canonical one returns (forward hooks; feature maps as
    NHWC) — for a model that is not sequential, the layer holding each of
    :func:`spec.layer_paths.observed_points`."""
    run = source_outputs(module)
    paths = {layer: dotted(path) for layer, path in imported.sources.items()}
    if not isinstance(imported.spec, CNNSpec):
        paths = point_holders(imported.spec, paths)
    layers = {name: module.get_submodule(".".join(map(str, path))) for name, path in paths.items()}

    def outputs(x: np.ndarray, *, training: bool = False) -> dict[str, np.ndarray]:
        with recording_outputs(layers) as found:
            run(x, training=training)
        if isinstance(imported.spec, TransformerSpec):  # an encoder's nested tensors, padded back, end
            # at the batch's longest sequence: the positions after it are padding, as zeros
            length = imported.spec.seq_len
            found = {
                point: np.pad(value, ((0, 0), (0, length - value.shape[1]), (0, 0))) if value.ndim == 3 else value
                for point, value in found.items()
            }
        return found

    return outputs


# --- inference ----------------------------------------------------------------------------------


def _infer(module: nn.Module, input_shape: tuple[int, ...], name: str) -> tuple[ModelSpec, dict[str, str], SpecModel]:
    """The spec, each canonical layer's source path, and triptych's torch model of the spec (built
    once: the ResNet and Transformer readers build it to check the layers against, or to run)."""
    if _is_torchvision_resnet(module):
        return _resnet(module, input_shape, name)
    if any(isinstance(child, nn.TransformerEncoder) for child in module.modules()):
        return _transformer(module, input_shape, name)
    graph = _trace(module, name)
    recurrent = [n for n in graph.nodes if n.op == "call_module" and type(_target(module, n)) in _RECURRENT_CELLS]
    reader = _recurrent if recurrent else _sequential
    spec, sources = reader(module, graph, input_shape, name)
    return spec, sources, MODEL_CLASSES[type(spec)](spec)


def _trace(module: nn.Module, name: str) -> fx.Graph:
    """``module``'s graph in evaluation mode (``self.training`` is read as False while tracing)."""
    was_training = module.training
    module.eval()
    try:
        graph = fx.symbolic_trace(module).graph
    except Exception as exc:  # fx raises many kinds: data-dependent control flow, unsupported ops
        raise PortError(name, "forward", f"torch.fx cannot trace it ({type(exc).__name__}: {exc})") from exc
    finally:
        module.train(was_training)
    graph.eliminate_dead_code()  # e.g. an LSTM's final states, unpacked and never used
    return graph


def _target(module: nn.Module, node: fx.Node) -> nn.Module:
    return module.get_submodule(str(node.target))


def _describe(node: fx.Node) -> str:
    return f"node {node.name} ({node.op} {getattr(node.target, '__name__', node.target)})"


def _chain_nodes(graph: fx.Graph, name: str) -> Iterator[fx.Node]:
    """The graph's compute nodes in order, checking that each takes the one before it: a node that
    reads two earlier results (a residual sum, a concatenation) is not a sequential model."""
    previous: fx.Node | None = None
    for node in graph.nodes:
        if node.op == "placeholder":
            if previous is not None:
                raise PortError(name, _describe(node), "a second input: a sequential model takes one tensor")
            previous = node
            continue
        if node.op == "output":
            return
        if node.op == "get_attr":
            why = "a tensor used directly in forward: the importer reads tensors through the layers that hold them"
            raise PortError(name, f"{_describe(node)} ({node.target})", why)
        if _is_shape_query(node):  # x.size(0) may read any earlier value: it is a number
            continue
        tensors = [arg for arg in node.all_input_nodes if not _is_shape_query(arg)]
        if tensors != [previous]:
            why = "it reads earlier results besides the last one (a residual connection or a branch)"
            raise PortError(
                name, _describe(node), f"{why}: not a sequential model; a ResNet ports by torchvision's naming"
            )
        previous = node
        yield node


def _is_shape_query(node: fx.Node) -> bool:
    """``x.size(0)``, ``x.shape``, ``x.shape[0]``: numbers, not a tensor flowing through the model."""
    if node.op == "call_method" and node.target == "size":
        return True
    if node.op == "call_function" and node.target is getattr:
        return node.args[1] == "shape"
    source = node.args[0] if node.args else None
    return (
        node.op == "call_function"
        and node.target is operator.getitem
        and isinstance(source, fx.Node)
        and _is_shape_query(source)
    )


def _sequential(
    module: nn.Module, graph: fx.Graph, input_shape: tuple[int, ...], name: str
) -> tuple[CNNSpec, dict[str, str]]:
    if len(input_shape) not in (1, 3):
        raise PortError(name, "input_shape", f"{input_shape}: (C, H, W) images or (F,) vectors for a sequential model")
    canonical_shape = (*input_shape[1:], input_shape[0]) if len(input_shape) == 3 else input_shape
    chain = SequentialReader(name)
    nodes = list(_chain_nodes(graph, name))
    for index, node in enumerate(nodes):
        _read_node(module, node, chain, name, last=index == len(nodes) - 1)

    def check_width(path: str, shape: tuple[int, ...]) -> None:
        """A Linear's or conv's declared input width against the width its input has."""
        child = module.get_submodule(path)
        width = {nn.Linear: "in_features", nn.Conv2d: "in_channels"}.get(type(child))  # type: ignore[call-overload]
        size = shape[-1] if isinstance(child, nn.Conv2d) else int(np.prod(shape))
        if width is not None and getattr(child, width) != size:
            why = f"{width}={getattr(child, width)}, but its input has {size} (input shape {shape} NHWC)"
            raise PortError(name, f"{path} ({type(child).__name__})", why)

    return chain.spec(canonical_shape, check_width)


def _read_node(module: nn.Module, node: fx.Node, chain: SequentialReader, name: str, last: bool) -> None:
    """Append the spec layer ``node`` computes to ``chain``, or raise naming it."""
    if node.op == "call_module":
        child = _target(module, node)
        path = str(node.target)
        if isinstance(child, nn.Softmax | nn.Sigmoid) and last:
            if isinstance(child, nn.Softmax) and child.dim not in (1, -1):
                why = f"softmax over dim {child.dim}: the specs' softmax is over the classes (dim=1 or -1)"
                raise PortError(name, f"{path} (Softmax)", why)
            chain.end_with(
                "softmax" if isinstance(child, nn.Softmax) else "sigmoid", f"{path} ({type(child).__name__})"
            )
            return
        layer = _module_layer(child, path, name)
        chain.add(layer, f"{path} ({type(child).__name__})", path if _holds_tensors(child) else None)
        return
    target = node.target
    if target in _SOFTMAX:
        if not last:
            raise PortError(name, _describe(node), "a softmax inside the model: only as its output activation")
        _output_activation(chain, "softmax", node, name)
        return
    if target in _ACTIVATION_FUNCTIONS:
        kind = _ACTIVATION_FUNCTIONS[target]  # type: ignore[index]
        if last and kind == "sigmoid":
            _output_activation(chain, "sigmoid", node, name)
        else:
            chain.add(Act(Activation(kind)), _describe(node))
        return
    if target in (F.log_softmax, torch.log_softmax, "log_softmax"):
        why = (
            "log_softmax: the specs' outputs are logits, softmax or sigmoid; "
            "return the logits (NLLLoss ∘ log_softmax is cross-entropy)"
        )
        raise PortError(name, _describe(node), why)
    if target is F.dropout:
        rate = node.kwargs.get("p", node.args[1] if len(node.args) > 1 else 0.5)
        training = node.kwargs.get("training", node.args[2] if len(node.args) > 2 else True)
        if training is not False:  # F.dropout's default: on even in model.eval()
            why = "F.dropout with training=True drops units in evaluation too; pass training=self.training"
            raise PortError(name, _describe(node), why)
        chain.add(Dropout(float(cast(float, rate))), _describe(node))
        return
    if target is torch.flatten or target in _FLATTEN_METHODS:
        _check_flatten(node, name)
        chain.add(Flatten(), _describe(node))  # the feature count is checked against the next Linear
        return
    raise PortError(name, _describe(node), "an operation the specs do not know")


def _check_flatten(node: fx.Node, name: str) -> None:
    """``torch.flatten(x, 1)``, ``x.flatten(1)``, or a view/reshape to (batch, features): ``view(-1, n)``,
    ``view(x.size(0), -1)``."""
    args = node.args[1:]
    if node.target in (torch.flatten, "flatten"):
        start = node.kwargs.get("start_dim", args[0] if args else 0)
        end = node.kwargs.get("end_dim", args[1] if len(args) > 1 else -1)
        if start == 1 and end == -1:
            return
    elif len(args) == 1 and isinstance(args[0], tuple | list):
        args = tuple(args[0])
    batch = args[0] if len(args) == 2 else None
    by_batch = batch == -1 or (isinstance(batch, fx.Node) and _is_shape_query(batch))
    if node.target in ("view", "reshape") and by_batch and (args[1] == -1 or isinstance(args[1], int)):
        return
    raise PortError(name, _describe(node), f"{args!r}: the specs flatten to (batch, features) only")


def _output_activation(chain: SequentialReader, kind: str, node: fx.Node, name: str) -> None:
    if kind == "softmax":
        _check_softmax_dim(chain.model, node)
    chain.end_with(kind, _describe(node))


def _check_softmax_dim(module_name: str, node: fx.Node, module: nn.Module | None = None) -> None:
    """A softmax over the last axis, the classes' (``nn.Softmax(dim=1)``, ``x.softmax(-1)``)."""
    if node.op == "call_module":
        dim = getattr(module.get_submodule(str(node.target)), "dim", None) if module is not None else None
    else:
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
    if dim not in (1, -1):
        why = f"softmax over dim {dim}: the specs' softmax is over the classes (dim=1 or -1)"
        raise PortError(module_name, _describe(node), why)


def _holds_tensors(module: nn.Module) -> bool:
    return any(True for _ in module.parameters()) or any(True for _ in module.buffers())


def _module_layer(child: nn.Module, path: str, name: str) -> Layer:
    """The spec layer of one torch module, every option checked against what the spec can say."""
    where = f"{path} ({type(child).__name__})"
    for kind, make in _ACTIVATION_MODULES.items():
        if type(child) is kind:
            return Act(make(child))
    match child:
        case nn.Linear():
            return Dense(child.out_features, use_bias=child.bias is not None)
        case nn.Conv2d():
            require_layer(name, where, child.groups == 1, f"groups=1 (it has {child.groups})")
            require_layer(name, where, child.dilation == (1, 1), f"dilation 1 (it has {child.dilation})")
            require_layer(name, where, child.padding_mode == "zeros", "zero padding")
            padding = child.padding if isinstance(child.padding, str) else _pads(_pair(child.padding))
            kernel, stride = _pair(child.kernel_size), _pair(child.stride)
            return Conv2D(child.out_channels, kernel, stride, padding, child.bias is not None)
        case nn.MaxPool2d() | nn.AvgPool2d():
            require_layer(name, where, not child.ceil_mode, "ceil_mode=False")
            if isinstance(child, nn.MaxPool2d):
                require_layer(name, where, child.dilation in (1, (1, 1)), "dilation 1")
            else:
                require_layer(name, where, child.divisor_override is None, "no divisor_override")
            pads = _pads(_pair(child.padding))
            if isinstance(child, nn.MaxPool2d):
                return Pool2D("max", _pair(child.kernel_size), _pair(child.stride or child.kernel_size), pads)
            count = child.count_include_pad if pads != "valid" else None
            return Pool2D("avg", _pair(child.kernel_size), _pair(child.stride or child.kernel_size), pads, count)
        case nn.BatchNorm1d() | nn.BatchNorm2d():
            require_layer(
                name, where, child.affine and child.track_running_stats, "affine=True, track_running_stats=True"
            )
            require_layer(name, where, child.momentum is not None, "a momentum (not a cumulative average)")
            return BatchNorm(1.0 - float(child.momentum or 0.0), float(child.eps), "unbiased")
        case nn.Dropout():
            require_layer(name, where, type(child) is nn.Dropout, "nn.Dropout itself (a subclass may drop otherwise)")
            return Dropout(float(child.p))
        case nn.Flatten():
            require_layer(name, where, child.start_dim == 1 and child.end_dim == -1, "start_dim=1, end_dim=-1")
            return Flatten()
    raise PortError(name, where, "not a layer the specs know")


def _pads(padding: tuple[int, int]) -> Padding:
    """torch's symmetric (rows, columns) padding as the spec's: "valid" where there is none."""
    return "valid" if padding == (0, 0) else ((padding[0], padding[0]), (padding[1], padding[1]))


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _recurrent(
    module: nn.Module, graph: fx.Graph, input_shape: tuple[int, ...], name: str
) -> tuple[RNNSpec, dict[str, str]]:
    """An ``nn.RNN``/``LSTM``/``GRU`` from a zero state, its outputs at the last step, a Linear head."""
    if len(input_shape) != 2:
        raise PortError(name, "input_shape", f"{input_shape}: (T, F), a batch-first sequence, for a recurrent model")
    nodes = [n for n in graph.nodes if n.op not in ("placeholder", "output") and not _is_zero_state(n)]
    nodes = [n for n in nodes if not _is_shape_query(n) and not (n.op == "call_function" and n.target is getattr)]
    rnn_node, *rest = nodes
    rnn = _target(module, rnn_node) if rnn_node.op == "call_module" else None
    if not isinstance(rnn, nn.RNNBase) or type(rnn) not in _RECURRENT_CELLS:
        raise PortError(name, _describe(rnn_node), "a recurrent model starts with its nn.RNN, LSTM or GRU")
    path = str(rnn_node.target)
    require_layer(name, path, rnn.batch_first, "batch_first=True")
    require_layer(
        name,
        path,
        rnn.bias and rnn.dropout == 0 and getattr(rnn, "proj_size", 0) == 0,
        "bias, no dropout or projection",
    )
    if isinstance(rnn, nn.RNN):
        require_layer(name, path, rnn.nonlinearity == "tanh", "nonlinearity='tanh'")
    for state in rnn_node.args[1:]:
        states = state if isinstance(state, tuple) else (state,)
        if not all(isinstance(s, fx.Node) and _is_zero_state(s) for s in states):
            raise PortError(name, path, "an initial state other than zeros")
    head = _read_recurrent_head(module, rnn_node, rest, rnn, name)
    spec = RNNSpec(
        name, _RECURRENT_CELLS[type(rnn)], rnn.input_size, rnn.hidden_size, input_shape[0],
        head.out_features, _output_of(module, rest[-1], name),
        num_layers=rnn.num_layers, bidirectional=rnn.bidirectional,
    )  # fmt: skip
    if input_shape[1] != rnn.input_size:
        raise PortError(
            name, path, f"input_size={rnn.input_size}, but input_shape {input_shape} has {input_shape[1]} features"
        )
    head_path = next(str(n.target) for n in rest if n.op == "call_module" and _target(module, n) is head)
    sources = {layer: path for layer in layer_names(spec) if layer.startswith("rnn_")} | {"dense_0": head_path}
    return spec, sources


def _is_zero_state(node: fx.Node) -> bool:
    return (node.op == "call_function" and node.target in (torch.zeros, torch.zeros_like)) or (
        node.op == "call_method" and node.target == "to" and _is_zero_state(node.args[0])  # type: ignore[arg-type]
    )


def _read_recurrent_head(
    module: nn.Module, rnn_node: fx.Node, nodes: list[fx.Node], rnn: nn.RNNBase, name: str
) -> nn.Linear:
    """Check that ``nodes`` are, each reading the one before: the outputs of the RNN (``[0]``), their
    last step (``[:, -1, :]``), a Linear, and an optional sigmoid or softmax; the Linear."""
    expected = "outputs, _ = rnn(x); head(outputs[:, -1, :]) (optionally through a sigmoid or softmax)"
    if len(nodes) < 3:
        raise PortError(name, "forward", f"a recurrent model the importer reads is {expected}")
    previous = rnn_node
    for position, node in enumerate(nodes):
        getitem = node.op == "call_function" and node.target is operator.getitem and len(node.args) == 2
        if (
            (position < 2 and not getitem)
            or not node.args
            or node.args[0] is not previous
            or len(node.all_input_nodes) != 1
        ):
            raise PortError(name, _describe(node), f"a recurrent model the importer reads is {expected}")
        previous = node
    outputs, last_step, linear, *activation = nodes
    if outputs.args[1] != 0:
        raise PortError(name, _describe(outputs), f"uses the RNN's final state; the importer reads {expected}")
    index = last_step.args[1]
    if not (isinstance(index, tuple) and len(index) >= 2 and index[0] == slice(None) and index[1] == -1):
        raise PortError(name, _describe(last_step), f"{index!r}: the importer reads the last step, outputs[:, -1, :]")
    if rnn.bidirectional:
        why = (
            "outputs[:, -1] of a bidirectional RNN holds the backward direction after one step; "
            "the spec's last state concatenates the forward one at T−1 and the backward one at 0"
        )
        raise PortError(name, _describe(last_step), why)
    head = _target(module, linear) if linear.op == "call_module" else None
    if not isinstance(head, nn.Linear):
        raise PortError(name, _describe(linear), f"the head must be one nn.Linear: {expected}")
    if len(activation) > 1:
        raise PortError(name, _describe(activation[1]), f"after the head's activation: {expected}")
    return head


def _output_of(module: nn.Module, node: fx.Node, name: str) -> str:
    """The output activation the last node applies: softmax, sigmoid, or none (the head's Linear)."""
    if node.op == "call_module":
        child = _target(module, node)
        if isinstance(child, nn.Linear):
            return "linear"
        if isinstance(child, nn.Softmax | nn.Sigmoid):
            if isinstance(child, nn.Softmax):
                _check_softmax_dim(name, node, module)
            return "softmax" if isinstance(child, nn.Softmax) else "sigmoid"
    elif node.target in _SOFTMAX:
        _check_softmax_dim(name, node)
        return "softmax"
    elif _ACTIVATION_FUNCTIONS.get(node.target) == "sigmoid":  # type: ignore[call-overload]
        return "sigmoid"
    raise PortError(name, _describe(node), "an output activation other than sigmoid or softmax")


# --- torchvision's ResNets ----------------------------------------------------------------------

_TORCHVISION_RESNET = ("conv1", "bn1", "relu", "maxpool", "layer1", "avgpool", "fc")


def _is_torchvision_resnet(module: nn.Module) -> bool:
    children = dict(module.named_children())
    return all(name in children for name in _TORCHVISION_RESNET)


def _resnet(module: nn.Module, input_shape: tuple[int, ...], name: str) -> tuple[ResNetSpec, dict[str, str], SpecModel]:
    """torchvision's ResNet layout: conv1/bn1/relu/maxpool, layer1…layerN of BasicBlocks (conv1–2,
    bn1–2) or Bottlenecks (conv1–3, bn1–3; stride on conv2), ``downsample`` (1×1 conv, BatchNorm) where
    the shape changes, avgpool and fc. The stem is ImageNet's (7×7/2 conv, 3×3/2 max-pool) or, with
    a 3×3/1 conv1 and ``maxpool`` an ``nn.Identity``, the CIFAR one."""
    if len(input_shape) != 3:
        raise PortError(name, "input_shape", f"{input_shape}: (C, H, W) images for a ResNet")
    stages: list[nn.Sequential] = []
    while hasattr(module, f"layer{len(stages) + 1}"):
        stages.append(cast(nn.Sequential, module.get_submodule(f"layer{len(stages) + 1}")))
    bottleneck = hasattr(stages[0][0], "conv3")
    widths = tuple(_child(stage[0], "conv1" if bottleneck else "conv2", nn.Conv2d).out_channels for stage in stages)
    stem = "imagenet" if _child(module, "conv1", nn.Conv2d).kernel_size == (7, 7) else "cifar"
    pool = module.get_submodule("maxpool")
    if not isinstance(pool, nn.Identity if stem == "cifar" else nn.MaxPool2d):
        why = (
            "a 3×3/1 conv1 (the CIFAR stem) has no pool: maxpool is an nn.Identity"
            if stem == "cifar"
            else "an nn.MaxPool2d"
        )
        raise PortError(name, f"maxpool ({type(pool).__name__})", f"torchvision's naming expects {why}")
    bn = _child(module, "bn1", nn.BatchNorm2d)
    spec = ResNetSpec(
        name,
        (*input_shape[1:], input_shape[0]),
        _child(module, "fc", nn.Linear).out_features,
        stem,
        stage_blocks=tuple(len(stage) for stage in stages),
        widths=widths,
        batchnorm=BatchNorm(1.0 - float(bn.momentum or 0.0), float(bn.eps), "unbiased"),
        output_activation="linear",
        block="bottleneck" if bottleneck else "basic",
    )
    sources = {"stem/conv": "conv1", "stem/bn": "bn1", "head": "fc"}
    letters = "abc"
    for block in spec.blocks():
        source = f"layer{block.stage + 1}.{block.index}"
        for i, letter in enumerate(letters[: 3 if bottleneck else 2]):
            sources[f"{block.name}/conv_{letter}"] = f"{source}.conv{i + 1}"
            sources[f"{block.name}/bn_{letter}"] = f"{source}.bn{i + 1}"
        if block.has_shortcut_conv:
            sources[f"{block.name}/shortcut_conv"] = f"{source}.downsample.0"
            sources[f"{block.name}/shortcut_bn"] = f"{source}.downsample.1"
    target = MODEL_CLASSES[type(spec)](spec)
    _check_resnet_layers(module, target, sources, name)
    return spec, sources, target


def _child(module: nn.Module, path: str, kind: type[M]) -> M:
    """The submodule at ``path``, which torchvision's naming says is a ``kind``."""
    child = module.get_submodule(path)
    if not isinstance(child, kind):
        raise PortError(
            type(module).__name__, path, f"a {type(child).__name__} where torchvision's naming has a {kind.__name__}"
        )
    return child


def _check_resnet_layers(module: nn.Module, target: SpecModel, sources: dict[str, str], name: str) -> None:
    """Every layer torchvision's naming promises is there, with the shape ``target`` (triptych's model
    of the spec) gives it."""
    for layer, path in sources.items():
        try:
            source = module.get_submodule(path)
        except AttributeError:
            raise PortError(name, path, f"missing: torchvision's naming puts canonical {layer} there") from None
        native = weights.native_layer(target, layer)
        if type(source) is not type(native):
            raise PortError(
                name, path, f"a {type(source).__name__} where torchvision's naming has a {type(native).__name__}"
            )
        if isinstance(source, nn.Conv2d | nn.MaxPool2d):
            for option in ("kernel_size", "stride", "padding"):
                found, expected = getattr(source, option), getattr(native, option)
                if found != expected:
                    raise PortError(
                        name, path, f"{option}={found}; a torchvision-style ResNet's {layer} has {expected}"
                    )
        if isinstance(source, nn.BatchNorm2d):
            first = module.get_submodule("bn1")
            found_options, expected_options = (source.eps, source.momentum), (first.eps, first.momentum)
            if found_options != expected_options:
                why = (
                    f"eps, momentum = {found_options}; the spec's one BatchNorm (read from bn1) has {expected_options}"
                )
                raise PortError(name, path, why)
    for path, child in module.named_modules():  # what the naming does not hold tensors for
        if path.split(".")[-1] == "relu" and type(child) is not nn.ReLU:
            raise PortError(name, f"{path} ({type(child).__name__})", "torchvision's ResNet applies nn.ReLU there")
    pool = module.get_submodule("avgpool")
    if not isinstance(pool, nn.AdaptiveAvgPool2d) or pool.output_size not in (1, (1, 1)):
        raise PortError(name, f"avgpool ({type(pool).__name__})", "torchvision's ResNet has AdaptiveAvgPool2d((1, 1))")
    output = next(node for node in _trace(module, name).nodes if node.op == "output")
    last = output.args[0]
    if not (isinstance(last, fx.Node) and last.op == "call_module" and last.target == "fc"):
        raise PortError(
            name, "forward", "it does not end at fc, as torchvision's ResNet does (an activation after it?)"
        )


# --- tensors ------------------------------------------------------------------------------------


def _copy_tensors(module: nn.Module, target: SpecModel, sources: dict[str, str], name: str) -> None:
    """Each source layer's state dict into the target's layer for the same canonical layer (the same
    torch class, so the same names and layouts); torch's own errors name the tensor and shapes."""
    copied: set[int] = set()
    for layer, path in sources.items():
        native = weights.native_layer(target, layer)
        if layer == "position":  # a learned table (an embedding or parameter): its first seq_len rows
            assert isinstance(native, nn.Embedding)
            with torch.no_grad():
                native.weight.copy_(_position_table(module, path)[: native.num_embeddings])
            continue
        if id(native) in copied:  # one nn.LSTM holds every layer and direction
            continue
        copied.add(id(native))
        try:
            native.load_state_dict(module.get_submodule(path).state_dict())
        except RuntimeError as exc:
            raise PortError(name, path, f"its tensors do not fit canonical {layer}: {exc}") from exc


# --- Transformers ---------------------------------------------------------------------------------


def _transformer(
    module: nn.Module, input_shape: tuple[int, ...], name: str
) -> tuple[TransformerSpec, dict[str, str], SpecModel]:
    """A token embedding, positions (a sinusoidal buffer, or a learned table), one
    ``nn.TransformerEncoder`` of batch-first ``nn.TransformerEncoderLayer``s and a Linear head. What
    ``forward`` does between them — the embedding scaled by √d_model or not, the padding mask, the
    pooling, an output activation — is read from what the module computes: of every form the spec
    knows, the one whose judge's outputs are the module's on a probe batch with padding."""
    if len(input_shape) != 1:
        raise PortError(name, "input_shape", f"{input_shape}: (T,), token ids, for a Transformer")
    seq_len = input_shape[0]
    children = dict(module.named_modules())
    encoder_path = _only(name, children, nn.TransformerEncoder, "one nn.TransformerEncoder")
    outside = {path: child for path, child in children.items() if not path.startswith(f"{encoder_path}.")}
    embeddings = [path for path, child in outside.items() if isinstance(child, nn.Embedding)]
    # a positions nn.Embedding is called on 0 … T−1, the tokens' on the input (here all ones)
    inputs = _embedding_inputs(module, embeddings, seq_len)
    positions = [path for path, value in inputs.items() if indexes_positions(value, seq_len)]
    tokens = [path for path in embeddings if path not in positions]
    if not tokens:
        raise PortError(name, "module", "a Transformer starts with an nn.Embedding of its tokens")
    token_path, position_paths = tokens[0], [*tokens[1:], *positions]
    head_path = _only(name, outside, nn.Linear, "one nn.Linear head after the encoder")
    token, encoder, head = children[token_path], children[encoder_path], children[head_path]
    assert isinstance(token, nn.Embedding) and isinstance(encoder, nn.TransformerEncoder)
    d_model = token.embedding_dim
    fields = _encoder_fields(encoder, encoder_path, d_model, name)
    position, position_path = _positions(
        module, position_paths, {token_path, encoder_path, head_path}, seq_len, d_model, name
    )
    assert isinstance(head, nn.Linear)
    require_layer(
        name, head_path, head.in_features == d_model and head.bias is not None, f"in_features={d_model}, a bias"
    )
    base = TransformerSpec(
        name, token.num_embeddings, seq_len, d_model, output_size=head.out_features, output_activation="linear",
        positional=position, **fields,
    )  # fmt: skip
    sources = {"embedding": token_path, "dense_0": head_path} | _encoder_sources(base, encoder_path)
    if position == "learned":
        sources["position"] = position_path
    _require_all_read(module, name, sources)
    target = MODEL_CLASSES[TransformerSpec](base)
    _copy_tensors(module, target, sources, name)
    pad = 0 if token.padding_idx is None else token.padding_idx
    try:
        form = transformer_form(base, weights.export(target), pad, source_outputs(module))
    except PortError as exc:
        # under a padding mask in evaluation, torch's nested tensors drop the padded positions: they
        # leave the encoder as zeros, so a per-token head gives them all one row, its bias's
        probe = probe_tokens(base, pad)
        outputs = source_outputs(module)(probe)
        padded = outputs[probe == pad] if outputs.ndim == 3 else outputs[:0]
        if not (getattr(encoder, "use_nested_tensor", False) and len(padded) > 1 and np.ptp(padded, axis=0).max() == 0):
            raise
        why = (
            f"{exc.why}. Its nn.TransformerEncoder runs on nested tensors in evaluation, which give zeros at "
            "padded positions, so a per-token head's outputs there are its bias alone; build the encoder "
            "with enable_nested_tensor=False to compute them"
        )
        raise PortError(exc.model, exc.where, why) from exc
    return form, sources, MODEL_CLASSES[TransformerSpec](form)  # the form's own model: its forward differs


def _embedding_inputs(module: nn.Module, paths: list[str], seq_len: int) -> dict[str, np.ndarray]:
    """What each nn.Embedding at ``paths`` is called with when the module runs on a batch of ones."""
    captured: dict[str, np.ndarray] = {}

    def keep(path: str) -> Callable[..., None]:
        return lambda _, args: captured.__setitem__(path, args[0].detach().numpy())

    hooks = [module.get_submodule(path).register_forward_pre_hook(keep(path)) for path in paths]
    try:
        source_outputs(module)(np.ones((1, seq_len), np.int64))
    finally:
        for hook in hooks:
            hook.remove()
    return captured


def _only(name: str, children: dict[str, nn.Module], kind: type[nn.Module], what: str) -> str:
    found = [path for path, child in children.items() if isinstance(child, kind)]
    if len(found) != 1:
        raise PortError(name, ", ".join(found) or "module", f"a Transformer holds {what} (found {len(found)})")
    return found[0]


def _encoder_fields(encoder: nn.TransformerEncoder, path: str, d_model: int, name: str) -> dict[str, Any]:
    """The spec's fields of ``encoder``'s layers, which must all be alike and of a form it knows."""
    layers = list(encoder.layers)
    forms = set()
    for index, layer in enumerate(layers):
        where = f"{path}.layers.{index}"
        if not isinstance(layer, nn.TransformerEncoderLayer):
            raise PortError(name, where, f"{type(layer).__name__}: an encoder of nn.TransformerEncoderLayers")
        attention = layer.self_attn
        require_layer(name, where, attention.batch_first, "batch_first=True")
        require_layer(
            name,
            f"{where}.self_attn",
            attention._qkv_same_embed_dim and attention.in_proj_bias is not None and attention.bias_k is None
            and not attention.add_zero_attn,
            "biases, one packed q/k/v projection, no add_bias_kv or add_zero_attn",
        )  # fmt: skip
        for norm in (layer.norm1, layer.norm2):
            require_layer(
                name, where, norm.elementwise_affine and norm.bias is not None, "LayerNorms with scale and shift"
            )
        require_layer(name, where, layer.linear1.bias is not None and layer.linear2.bias is not None, "FFN biases")
        forms.add(
            (layer.norm_first, layer.norm1.eps, layer.norm2.eps, attention.num_heads, layer.linear1.out_features,
             _ffn_activation(layer, where, name))
        )  # fmt: skip
    if len(forms) > 1:
        raise PortError(name, path, "layers of different forms (norm placement, ε, heads, FFN): the spec's are alike")
    norm_first, eps, eps2, heads, ff_size, activation = forms.pop()
    require_layer(name, f"{path}.layers.0", eps == eps2, "one LayerNorm ε for both norms")
    pre = bool(norm_first)
    final = encoder.norm
    if pre != (final is not None):
        why = "a final LayerNorm after a pre-norm encoder, none after a post-norm one (the spec's forms)"
        raise PortError(name, f"{path}.norm", why)
    if final is not None:
        require_layer(
            name, f"{path}.norm", isinstance(final, nn.LayerNorm) and final.eps == eps, f"a LayerNorm of ε {eps}"
        )
    return {
        "num_heads": heads, "ff_size": ff_size, "num_layers": len(layers), "activation": activation,
        "norm": "pre" if pre else "post", "layer_norm_epsilon": float(eps),
    }  # fmt: skip


def _ffn_activation(layer: nn.TransformerEncoderLayer, where: str, name: str) -> str:
    """``relu``, ``gelu(exact)`` or ``gelu(tanh)``: torch keeps the string form as a flag."""
    activation = layer.activation
    if activation is F.relu or isinstance(activation, nn.ReLU):
        return "relu"
    if activation is F.gelu:
        return "gelu(exact)"
    if isinstance(activation, nn.GELU):
        return f"gelu({'exact' if activation.approximate == 'none' else 'tanh'})"
    if isinstance(activation, partial) and activation.func is F.gelu and set(activation.keywords) == {"approximate"}:
        return f"gelu({'exact' if activation.keywords['approximate'] == 'none' else 'tanh'})"
    raise PortError(name, f"{where}.activation", f"{activation!r}: the spec's FFN takes relu or gelu")


def _positions(
    module: nn.Module, embeddings: list[str], read: set[str], seq_len: int, d_model: int, name: str
) -> tuple[str, str]:
    """``("learned", path)`` for a second nn.Embedding or a parameter holding a (≥ seq_len, d_model)
    table, ``("sinusoidal", path)`` for a buffer holding the sinusoidal table."""
    if len(embeddings) > 1:
        raise PortError(name, ", ".join(embeddings), "one nn.Embedding of positions at most")
    if embeddings:
        table = _position_table(module, embeddings[0])
        require_layer(
            name,
            embeddings[0],
            table.shape[0] >= seq_len and table.shape[1] == d_model,
            f"≥ {seq_len} rows of {d_model}",
        )
        return "learned", embeddings[0]
    tables = {
        path: tensor
        for path, tensor in [*module.named_parameters(), *module.named_buffers()]
        if not any(path.startswith(f"{layer}.") for layer in read) and tensor.ndim >= 2 and tensor.shape[-1] == d_model
    }
    if len(tables) != 1:
        raise PortError(
            name, ", ".join(tables) or "module", f"one table of positions (… × {d_model}) outside the layers"
        )
    path, tensor = tables.popitem()
    table = _position_table(module, path)
    require_layer(name, path, table.shape[0] >= seq_len, f"at least {seq_len} positions")
    if isinstance(tensor, nn.Parameter):
        return "learned", path
    expected = sinusoidal_positions(seq_len, d_model)
    if not np.allclose(table[:seq_len].double().numpy(), expected, atol=1e-6):
        why = "a buffer of positions that is not the interleaved sinusoidal table (sin at even, cos at odd features)"
        raise PortError(name, path, why)
    return "sinusoidal", path


def _position_table(module: nn.Module, path: str) -> torch.Tensor:
    """The (positions, d_model) table an nn.Embedding, parameter or buffer at ``path`` holds."""
    try:
        found: nn.Module | torch.Tensor = module.get_submodule(path)
    except AttributeError:
        owner, _, attribute = path.rpartition(".")
        found = getattr(module.get_submodule(owner) if owner else module, attribute)
    tensor = found.weight if isinstance(found, nn.Embedding) else found
    assert isinstance(tensor, torch.Tensor)
    return tensor.detach().reshape(-1, tensor.shape[-1])


def _encoder_sources(spec: TransformerSpec, encoder_path: str) -> dict[str, str]:
    """Each canonical layer of the encoder and the path of the native layer that holds it."""
    sources = {}
    for layer in layer_names(spec):
        if layer.startswith("encoder_"):
            index, part = layer.removeprefix("encoder_").split("/", 1)
            native = ENCODER_PARTS.get(part, "self_attn")  # q, k and v: packed in self_attn
            sources[layer] = f"{encoder_path}.layers.{index}.{native}"
    if spec.norm == "pre":
        sources["final_norm"] = f"{encoder_path}.norm"
    return sources


def _require_all_read(module: nn.Module, name: str, sources: dict[str, str]) -> None:
    """Every parameter of the module lies in a layer the spec reads, none is dropped unseen, and
    none is shared between two layers (tied weights: the spec's are one tensor per layer)."""
    owners: dict[int, list[str]] = {}
    for path, tensor in module.named_parameters(remove_duplicate=False):
        owners.setdefault(id(tensor), []).append(path)
    tied = [paths for paths in owners.values() if len(paths) > 1]
    if tied:
        why = (
            "tied weights (one tensor in two layers): the spec holds one tensor per layer, so training would untie them"
        )
        raise PortError(name, " = ".join(tied[0]), why)
    read = tuple(sources.values())
    unread = [
        path for path, _ in module.named_parameters() if not any(path == r or path.startswith(f"{r}.") for r in read)
    ]
    if unread:
        raise PortError(name, ", ".join(unread), "parameters the spec's Transformer has no place for")
