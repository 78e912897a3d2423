"""Porting a user's model between frameworks: what an importer hands over, and the verification of a port.

An importer (``impls/<framework>/port.py``) reads a model written in its framework the way its users
write it — an ``nn.Module``, a ``keras.Model``, a Flax NNX module — and infers the spec it computes,
its tensors in canonical names and layouts, and which of the source's layers holds each canonical
layer. Any backend then builds the spec with those tensors; :func:`verify` runs the source, the
judge and every target on one batch and says how far each is from the judge.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import json
import sys
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

import numpy as np

from spec import reference as ref
from spec.backend import BACKEND_NAMES, Backend, available_backends
from spec.cases import Case
from spec.errors import BackendUnavailable, PortError, SpecError, UnsupportedOption, WeightFileError
from spec.layer_paths import dotted, holder_of, observed_points, point_holders, within
from spec.layers import (
    Act,
    Activation,
    BatchNorm,
    Conv2D,
    ConvTranspose2D,
    Dense,
    Dropout,
    Flatten,
    Layer,
    Pool2D,
    Reshape,
    layer_output_shape,
)
from spec.losses import DEFAULT_LOSS, LOSSES, check_model_loss, check_target_shape, takes_class_ids
from spec.models import CNNSpec, ModelSpec, ResNetSpec, RNNSpec, TransformerSpec
from spec.params import check_params, cnn_layer_names, encoder_layer_name, param_specs, trained_names
from spec.tolerances import KINK_MARGIN, RELATIVE_TO_MAGNITUDE, forward_check, max_scaled_error, tolerance
from spec.weights import save_weights


@dataclass(frozen=True)
class Imported:
    """A user's model read by an importer: the spec it computes, its tensors (canonical names and
    layouts, float32), for each canonical layer the path of the source layer that holds it, and
    ``notes``: what the port changes that a user must know (none changes the outputs)."""

    framework: str
    spec: ModelSpec
    params: Mapping[str, np.ndarray]
    sources: Mapping[str, str]
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", check_params(self.spec, self.params))


@dataclass
class SequentialReader:
    """What an importer has read of a sequential model so far: the spec's layers, where each came
    from in the source (for errors), the source path of each that holds tensors, and the output
    activation; :meth:`spec` checks them and makes the spec."""

    model: str
    layers: list[Layer] = field(default_factory=list)
    wheres: list[str] = field(default_factory=list)
    paths: list[str | None] = field(default_factory=list)
    output_activation: str = "linear"

    def add(self, layer: Layer, where: str, path: str | None = None) -> None:
        if self.output_activation != "linear":
            raise PortError(self.model, where, f"follows the output {self.output_activation}: it must come last")
        if path is not None and path in self.paths:
            raise PortError(
                self.model, where, "called twice: its tensors would be shared by two layers, which no spec has"
            )
        self.layers.append(layer)
        self.wheres.append(where)
        self.paths.append(path)

    def end_with(self, activation: str, where: str) -> None:
        """The model's output activation, read at ``where`` (softmax or sigmoid)."""
        if self.output_activation != "linear":
            raise PortError(self.model, where, f"follows the output {self.output_activation}: it must come last")
        self.output_activation = activation

    def spec(
        self, input_shape: tuple[int, ...], check_width: Callable[[str, tuple[int, ...]], None] | None = None
    ) -> tuple[CNNSpec, dict[str, str]]:
        """The sequential spec on (canonical) ``input_shape`` and the source path of each canonical
        layer. The shapes are walked first, so that a layer that does not fit its input is named as
        the source has it; ``check_width(path, shape)`` checks a source layer's own input width."""
        shape = input_shape
        for layer, where, path in zip(self.layers, self.wheres, self.paths):
            try:
                output = layer_output_shape(layer, shape)
            except SpecError as exc:
                raise PortError(self.model, where, f"on an input of shape {shape} (NHWC): {exc.allowed}") from None
            if path is not None and check_width is not None:
                check_width(path, shape)
            shape = output
        try:
            spec = CNNSpec(self.model, input_shape, tuple(self.layers), self.output_activation)
        except SpecError as exc:
            raise PortError(self.model, "its layers", f"not a valid sequential spec: {exc}") from exc
        names = cnn_layer_names(spec)
        return spec, {name: path for name, path in zip(names, self.paths) if name is not None and path is not None}


@dataclass(frozen=True)
class PortCheck:
    """One executor's outputs on the verification batch against the judge's: the largest error over
    each example's largest output magnitude (:func:`spec.reference.output_magnitude`), and that error
    over the float32 forward tolerance (≤ 1 is within it). ``unsupported`` says why a backend could
    not build the spec (its numbers are then ``None``)."""

    executor: str
    error: float | None
    scaled: float | None
    unsupported: str | None = None
    note: str | None = None  # how the executor differs from the source where it still computes its outputs

    @property
    def ok(self) -> bool:
        return self.scaled is None or self.scaled <= 1.0


@dataclass(frozen=True)
class PartCheck:
    """One part of the model on the verification batch — a product layer's output (a dense layer or
    a convolution: where a sequential model's first ``k`` layers end), or a trained tensor's gradient
    — on each executor against the judge, as in :class:`PortCheck`, and what the differences
    catalogue says can move it there."""

    part: str  # the canonical layer, or the canonical tensor
    source: str | None  # the source layer it was read from
    errors: dict[str, float | None]
    scaled: dict[str, float | None]
    likely_causes: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return all(value is None or value <= 1.0 for value in self.scaled.values())


@dataclass(frozen=True)
class PortReport:
    """The source and every target against the judge on one batch: in evaluation mode (``checks``)
    and layer by layer (``layers``; ``None`` for a kind not judged inside: a VAE, a GAN); with
    targets for the batch, in training mode too (``training``, ``training_layers``), and each
    target's trained tensors' gradients (``gradients``), with ``training_note`` saying what was
    left out."""

    model: str
    source: str
    checks: list[PortCheck] = field(default_factory=list)
    layers: list[PartCheck] | None = None
    loss: str | None = None  # the training checks' loss; None: not run
    training: list[PortCheck] = field(default_factory=list)
    training_layers: list[PartCheck] | None = None
    gradients: list[PartCheck] | None = None
    training_note: str | None = None

    @property
    def ok(self) -> bool:
        """Every executor within tolerance: whole, at every layer, in both modes, and by every gradient."""
        parts: list[Any] = [*self.checks, *(self.layers or []), *self.training, *(self.training_layers or [])]
        return all(part.ok for part in [*parts, *(self.gradients or [])])

    @property
    def first_divergence(self) -> PartCheck | None:
        """The first layer some executor computes out of tolerance."""
        return next((layer for layer in self.layers or [] if not layer.ok), None)

    @property
    def first_training_divergence(self) -> PartCheck | None:
        """The first layer some executor computes out of tolerance in training mode."""
        return next((layer for layer in self.training_layers or [] if not layer.ok), None)

    @property
    def first_gradient_divergence(self) -> PartCheck | None:
        """The trained tensor nearest the output whose gradient some target computes out of
        tolerance: backpropagation reaches it first, so the tensors before it inherit its error."""
        return next((check for check in reversed(self.gradients or []) if not check.ok), None)


P = TypeVar("P")
SOURCE = "source"  # the executor name of the user's own model in the reports


def verify(
    imported: Imported,
    source_outputs: SourceRun,
    x: np.ndarray,
    targets: Sequence[Backend],
    source_layers: SourceLayersRun | None = None,
    *,
    y: np.ndarray | None = None,
    loss: str | None = None,
) -> PortReport:
    """Run ``x`` (canonical layout) through the source model (``source_outputs``: the importer's
    runner of the user's model, returning what it returns), the judge, and each target built from
    the imported tensors. The targets' logits are held against the judge's, relative to their
    magnitude; the source's outputs against the judge's outputs (after the output activation,
    which the source applies itself where it has one). :func:`localise` does the same inside the
    model (``source_layers``: the source's outputs of its layers).
    With the batch's targets ``y``, :func:`verify_training` judges the source and targets in training mode
    and their gradients of ``loss`` (default: the output activation's usual loss)."""
    spec, params = imported.spec, imported.params
    logits = ref.logits(spec, params, x)
    outputs = ref.output_activation(logits, spec.output_activation)
    magnitude = ref.output_magnitude(spec, params, x) if spec.output_activation == "linear" else None
    report = PortReport(spec.name, imported.framework)
    report.checks.append(PortCheck(SOURCE, *judged_source(source_outputs, x, logits, magnitude, spec)))
    for backend in targets:
        try:
            model, note = build_target(backend, spec, params)
        except UnsupportedOption as exc:
            report.checks.append(PortCheck(backend.name, None, None, unsupported=str(exc)))
            continue
        error, scaled = judged(backend.forward(model, x), outputs, magnitude, spec, backend.device())
        report.checks.append(PortCheck(backend.name, error, scaled, note=note))
    if isinstance(spec, LOCALISED):
        report = replace(report, layers=localise(imported, x, targets, source_layers))
    if y is not None:
        loss = loss or DEFAULT_LOSS[spec.output_activation]
        report = verify_training(report, imported, x, y, loss, targets, source_outputs, source_layers)
    return report


def verify_training(
    report: PortReport,
    imported: Imported,
    x: np.ndarray,
    y: np.ndarray,
    loss: str,
    targets: Sequence[Backend],
    source_outputs: SourceRun | None = None,
    source_layers: SourceLayersRun | None = None,
) -> PortReport:
    """``report`` with the source and every target in training mode: their outputs against the
    judge's (BatchNorm on the batch's statistics), layer by layer, and each target's trained tensors'
    gradients of ``loss`` on ``(x, y)`` against the judge's finite differences. The judge draws no
    dropout masks, so a model with dropout is judged at rate 0. A deep network's gradients are not
    judged element by element (:data:`spec.cases.DEEP_GRADIENTS`), nor those of a batch that puts a
    piecewise op's input within :data:`~spec.tolerances.KINK_MARGIN` of its kink."""
    spec, params = training_spec(imported.spec), imported.params
    check_model_loss(spec, loss)
    notes = ["dropout at rate 0 (each framework draws its own masks)"] if imported.spec.has_dropout else []
    expected = ref.logits(spec, params, x, training=True)
    check_target_shape(loss, expected.shape, np.shape(y))
    if takes_class_ids(loss):  # the judge would index with them: a wrong one would wrap or raise
        classes, ids = expected.shape[-1], np.asarray(y)
        if not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0 or ids.max() >= classes:
            raise SpecError(
                "targets", f"{ids.dtype} ids from {ids.min()} to {ids.max()}", f"class ids in [0, {classes})"
            )
    magnitude = ref.output_magnitude(spec, params, x, training=True)
    kept, why = well_posed_examples(spec, params, x, y, loss)
    if why is not None:
        notes.append(why)
    judged_x, judged_y = x[kept], np.asarray(y)[kept]
    directions = ref.judge_directions(spec, params, judged_x, judged_y, loss) if len(kept) else []
    training, grads = [], {}
    if source_outputs is not None:
        training.append(PortCheck(SOURCE, *judged_source(source_outputs, x, expected, magnitude, spec, training=True)))
    for backend in targets:
        try:
            model, note = build_target(backend, spec, params)
        except UnsupportedOption as exc:
            training.append(PortCheck(backend.name, None, None, unsupported=str(exc)))
            continue
        actual = backend.logits(model, x, training=True)
        error, scaled = judged(actual, expected, magnitude, spec, backend.device(), training=True)
        training.append(PortCheck(backend.name, error, scaled, note=note))
        if len(kept):
            model, _ = build_target(backend, spec, params)  # its running statistics as imported
            grads[backend] = backend.loss_and_grads(model, judged_x, judged_y, loss)[1]
    layers = localise(imported, x, targets, source_layers, training=True) if isinstance(spec, LOCALISED) else None
    if layers is not None and spec.is_deep and not isinstance(spec, CNNSpec):
        notes.append(INSIDE_DEEP_TRAINING)
    gradients = gradient_checks(imported, spec, judged_x, judged_y, loss, grads, directions) if len(kept) else None
    unresolved = [
        check.part for check in gradients or [] if check.errors and all(e is None for e in check.errors.values())
    ]
    if unresolved:
        notes.append(
            f"below the judge's resolution (its differences' rounding over {ref.FD_RESOLUTION:g} of the derivative), "
            f"not judged: the gradients of {', '.join(unresolved)}"
        )
    return replace(
        report,
        loss=loss,
        training=training,
        training_layers=layers,
        gradients=gradients,
        training_note="; ".join(notes) or None,
    )


def well_posed_examples(
    spec: ModelSpec, params: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray, loss: str
) -> tuple[np.ndarray, str | None]:
    """The indices of the examples whose gradients can be judged element by element, and why the
    others cannot: where a piecewise op's input lies within :data:`~spec.tolerances.KINK_MARGIN` of
    its rms from its kink, float32 rounding may cross it. Without BatchNorm on the batch's
    statistics each example's pass is its own, so the ill-posed ones are left out; with it, or in a
    deep network (:data:`spec.cases.DEEP_GRADIENTS`), none is judged."""
    if spec.is_deep:
        return np.arange(0), "gradients not judged: a deep network's float32 gradients are ill-posed element by element"
    kink = ref.closest_kink(spec, params, x, y, loss)
    if kink is None or kink.margin >= KINK_MARGIN:
        return np.arange(len(x)), None
    where = (
        f"a piecewise op's input lies under {KINK_MARGIN:g} of its rms from its kink (nearest: {kink.op}, "
        f"{kink.margin:.1e}), where float32 rounding may cross it"
    )
    if Case(spec).trains_on_batch_statistics:  # the examples' passes are one
        return np.arange(0), f"gradients not judged: on this batch {where}; pass another --batch"
    kinks = [ref.closest_kink(spec, params, x[i : i + 1], np.asarray(y)[i : i + 1], loss) for i in range(len(x))]
    kept = np.array([i for i, k in enumerate(kinks) if k is None or k.margin >= KINK_MARGIN], dtype=int)
    return kept, f"gradients judged on {len(kept)} of {len(x)} examples: in the others {where}"


def gradient_checks(
    imported: Imported,
    spec: ModelSpec,
    x: np.ndarray,
    y: np.ndarray,
    loss: str,
    grads: Mapping[Backend, Mapping[str, np.ndarray]],
    directions: Sequence[ref.JudgedDirection],
) -> list[PartCheck]:
    """Each trained tensor, in the spec's order: every target's gradient along the judge's
    directions of that tensor, the worst relative error, and it over the float32 gradient tolerance."""
    checks = []
    for tensor in trained_names(spec, loss):
        own = [one for one in directions if one.param == tensor]
        errors: dict[str, float | None] = {}
        scaled: dict[str, float | None] = {}
        for backend, backend_grads in grads.items():
            judged = ref.check_gradients(spec, imported.params, x, y, loss, backend_grads, judged=own)
            resolved = [c.relative_error for c in judged if c.resolved]
            worst = max(resolved) if resolved else None  # None: below the judge's resolution
            errors[backend.name] = worst
            rtol = tolerance("gradient", "float32", backend.device()).rtol
            scaled[backend.name] = None if worst is None else worst / rtol
        layer = tensor.rsplit("/", 1)[0]
        checks.append(PartCheck(tensor, imported.sources.get(layer), errors, scaled, causes_of(spec, layer)))
    return checks


def training_spec(spec: ModelSpec) -> ModelSpec:
    """``spec`` as the training-mode checks judge it: its dropouts at rate 0, where the judge is."""
    return with_parts(spec, Dropout, lambda _: Dropout(0.0))


def causes_of(spec: ModelSpec, layer: str) -> tuple[str, ...]:
    """The likely causes of a difference in canonical layer ``layer``: of a sequential spec's layer
    its kind's (:func:`likely_causes`), else those of the observed point holding it."""
    if isinstance(spec, CNNSpec):
        return likely_causes(dict(zip(cnn_layer_names(spec), spec.layers)).get(layer))
    if isinstance(spec, ResNetSpec):
        return likely_causes(spec.named_layers().get(layer))
    holding = [point for point in observed_points(spec) if within(layer, point)]
    return point_causes(spec, holding[0]) if holding else ()


def judged(
    actual: np.ndarray,
    expected: np.ndarray,
    magnitude: np.ndarray | None,
    spec: ModelSpec,
    device: str,
    *,
    training: bool = False,
    inside: bool = False,
) -> tuple[float, float]:
    """The error relative to each example's largest magnitude (or, without one, its largest
    output), and the error over the float32 forward tolerance (in ``training`` mode, with
    BatchNorm on the batch's statistics). ``inside`` the model, a value is held to the tolerance
    relative to its example's largest value there: cancellation leaves single values near 0
    without a scale of their own, and no magnitude is recorded for them."""
    relative = replace(RELATIVE_TO_MAGNITUDE, of_magnitude=magnitude is not None)
    tol = tolerance(forward_check(deep=spec.is_deep, training=training), "float32", device)
    tol = replace(tol, per_example=True) if inside else tol
    return max_scaled_error(actual, expected, relative, magnitude), max_scaled_error(actual, expected, tol)


def judged_source(
    run: SourceRun,
    x: np.ndarray,
    logits: np.ndarray,
    magnitude: np.ndarray | None,
    spec: ModelSpec,
    *,
    training: bool = False,
) -> tuple[float, float]:
    """:func:`judged` for the source, which returns its outputs: the judge's ``logits`` after the
    output activation, relative to their ``magnitude`` only where that activation is linear."""
    outputs = ref.output_activation(logits, spec.output_activation)
    relative_to = magnitude if spec.output_activation == "linear" else None
    return judged(run(x, training=training), outputs, relative_to, spec, "cpu", training=training)


def localise(
    imported: Imported,
    x: np.ndarray,
    targets: Sequence[Backend],
    source_layers: SourceLayersRun | None = None,
    *,
    training: bool = False,
) -> list[PartCheck]:
    """Each product layer of a sequential spec in turn: the model cut after it (its first layers,
    the product's output as the logits) built on every target, and the source's own output of
    that layer, against the judge's — in ``training`` mode, the targets' on :func:`training_spec`.
    Other kinds are observed inside (:func:`observed_inside`). The first layer out of tolerance is
    where the port parts."""
    spec = training_spec(imported.spec) if training else imported.spec
    from_source = None if source_layers is None else dict(source_layers(x, training=training))
    if not isinstance(spec, CNNSpec):
        return observed_inside(imported, spec, x, targets, from_source, training)
    checks, since = [], 0
    for index, (layer, name) in enumerate(zip(spec.layers, cnn_layer_names(spec))):
        if not isinstance(layer, PRODUCTS) or name is None:
            continue
        cut = CNNSpec(f"{spec.name}_to_{name}", spec.input_shape, spec.layers[: index + 1], "linear")
        params = {tensor: imported.params[tensor] for tensor in param_specs(cut)}
        expected = ref.logits(cut, params, x, training=training)
        magnitude = ref.output_magnitude(cut, params, x, training=training)
        errors: dict[str, float | None] = {}
        scaled: dict[str, float | None] = {}
        if from_source is not None and name in from_source:
            errors[SOURCE], scaled[SOURCE] = judged(
                from_source[name], expected, magnitude, cut, "cpu", training=training
            )
        for backend in targets:
            try:
                model, _ = build_target(backend, cut, params)
            except UnsupportedOption:
                errors[backend.name] = scaled[backend.name] = None
                continue
            actual = backend.logits(model, x, training=training)
            errors[backend.name], scaled[backend.name] = judged(
                actual, expected, magnitude, cut, backend.device(), training=training
            )
        causes = tuple(dict.fromkeys(cause for part in spec.layers[since : index + 1] for cause in likely_causes(part)))
        checks.append(PartCheck(name, imported.sources.get(name), errors, scaled, causes))
        since = index + 1
    return checks


PRODUCTS = (Dense, Conv2D, ConvTranspose2D)
LOCALISED = (CNNSpec, ResNetSpec, RNNSpec, TransformerSpec)  # the kinds a port is judged inside


# Why a deep network's values inside are not judged in training mode, as its gradients are not:
# measured on tests/test_port.py's torchvision-named ResNet-18 (7 classes, a batch of 4 32×32 images),
# where BatchNorm at the last stage normalises 4 values per channel.
INSIDE_DEEP_TRAINING = (
    "inside a deep network in training mode the values are shown, not judged: BatchNorm on a small "
    "batch's statistics leaves single values ill-conditioned in float32 (a ResNet-18's last stage on a "
    "batch of 4: 2.6e-4 of the example's largest value, over the tolerance, while its logits are within "
    "a fifth of theirs)"
)


def observed_inside(
    imported: Imported,
    spec: ModelSpec,
    x: np.ndarray,
    targets: Sequence[Backend],
    from_source: Mapping[str, np.ndarray] | None,
    training: bool,
) -> list[PartCheck]:
    """Each of :func:`spec.layer_paths.observed_points` of a residual, recurrent or Transformer
    model: what the native layer holding it returns on every target built from ``spec`` (and
    ``from_source``, the source's own values), against the judge's value there
    (:func:`spec.reference.layer_outputs`). A point no layer of an executor holds alone (a layer
    inside torch's ``nn.LSTM`` stack) has no error for it. A Transformer's padded positions are
    judged only where its head reads them."""
    expected = ref.layer_outputs(spec, imported.params, x, training=training)
    found: dict[str, tuple[Mapping[str, np.ndarray], str]] = (
        {} if from_source is None else {SOURCE: (from_source, "cpu")}
    )
    for backend in targets:
        try:
            model, _ = build_target(backend, spec, imported.params)
        except UnsupportedOption:
            found[backend.name] = {}, backend.device()
            continue
        holders = point_holders(spec, model.layer_paths)
        found[backend.name] = backend.layer_outputs(model, x, holders, training=training), backend.device()
    hidden = None
    if isinstance(spec, TransformerSpec) and spec.pooling != "none":
        hidden = ~ref.padding_mask(spec, x)
    checks = []
    for point in observed_points(spec):
        errors: dict[str, float | None] = {}
        scaled: dict[str, float | None] = {}
        for executor, (outputs, device) in found.items():
            if point not in outputs:
                errors[executor] = scaled[executor] = None
                continue
            actual, wanted = np.asarray(outputs[point], np.float64), expected[point]
            if isinstance(spec, RNNSpec) and actual.ndim == wanted.ndim - 1:  # Keras's top layer of a
                wanted = ref.last_states(spec, wanted)  # "last" head returns only the states it reads
            if hidden is not None and wanted.ndim == 3:  # (batch, positions, features)
                actual, wanted = np.where(hidden[..., None], 0.0, actual), np.where(hidden[..., None], 0.0, wanted)
            errors[executor], scaled[executor] = judged(
                actual, wanted, None, spec, device, training=training, inside=True
            )
            if training and spec.is_deep:  # shown, not judged: see INSIDE_DEEP_TRAINING
                scaled[executor] = None
        source = _source_of(point, imported.sources)
        checks.append(PartCheck(point, source, errors, scaled, point_causes(spec, point)))
    return checks


def _source_of(point: str, sources: Mapping[str, str]) -> str | None:
    """The source path holding ``point``'s canonical layers (their common start), if any."""
    holder = holder_of(point, {layer: dotted(path) for layer, path in sources.items()})
    return None if holder is None else ".".join(map(str, holder))


def point_causes(spec: ModelSpec, point: str) -> tuple[str, ...]:
    """The differences catalogue's topics that can move the value at observed ``point``."""
    match spec:
        case ResNetSpec():
            held = [layer for name, layer in spec.named_layers().items() if within(name, point)]
            causes = ["ResNet stem"] if point.startswith("stem/") else []
            return tuple(dict.fromkeys(causes + [cause for layer in held for cause in likely_causes(layer)]))
        case RNNSpec() if point.startswith("rnn_"):
            causes = ["recurrent gate order", "recurrent biases"]
            causes += ["GRU reset gate"] if spec.cell == "gru" else []
            causes += ["last state of a bidirectional layer"] if spec.bidirectional else []
            return tuple(causes)
        case TransformerSpec() if point.startswith("encoder_"):
            causes = ["attention weights", "padding mask", "LayerNorm epsilon", "LayerNorm variance", "pre/post norm"]
            causes += ["GELU"] if spec.activation.kind == "gelu" else []
            # the first encoder layer is the first point after the positions are added
            first = point == encoder_layer_name(0) and spec.positional == "sinusoidal"
            return tuple(causes + (["sinusoidal positions"] if first else []))
        case TransformerSpec() if point == "final_norm":
            return ("LayerNorm epsilon", "LayerNorm variance")
    return ("dense kernel layout",) if point in ("dense_0", "head") else ()


def likely_causes(layer: object) -> tuple[str, ...]:
    """The topics of the differences catalogue (docs/framework-differences.md, its first column)
    that can make ``layer`` compute differently in another framework."""
    match layer:
        case Dense():
            return ("dense kernel layout",)
        case Conv2D():
            return ("image layout", "'same' padding") if layer.padding == "same" else ("image layout",)
        case ConvTranspose2D():
            return ("transposed conv kernel", "transposed conv padding")
        case Flatten():
            return ("flatten order",)
        case Reshape():
            return ("reshape to an image",)
        case Pool2D() if layer.padding != "valid":
            return ("max-pool padding",) if layer.kind == "max" else ("average-pool padding",)
        case BatchNorm():
            return ("BatchNorm epsilon", "BatchNorm momentum", "BatchNorm running variance", "BatchNorm batch variance")
        case Act(activation=activation) if activation.kind in ("gelu", "leaky_relu"):
            return ("GELU",) if activation.kind == "gelu" else ("leaky ReLU slope",)
    return ()


# Options that change only what training does, not the outputs in evaluation mode: a target that
# cannot express one still computes the source's outputs, with its own rule for training.
TRAINING_ONLY = frozenset({"batchnorm.running_variance"})


def build_target(backend: Backend, spec: ModelSpec, params: Mapping[str, np.ndarray]) -> tuple[Any, str | None]:
    """``backend``'s model of ``spec``, or where it cannot express an option of :data:`TRAINING_ONLY`,
    its model with the value it computes instead, and a note saying so."""
    try:
        return backend.build(spec, params), None
    except UnsupportedOption as exc:
        if exc.field not in TRAINING_ONLY or exc.native is None:
            raise
        computed = str(exc.native)
        note = f"{exc}; the outputs are the source's in both modes, but training moves its running statistics apart"
    native = with_parts(spec, BatchNorm, lambda bn: replace(bn, running_variance=computed))
    return backend.build(native, params), note


def with_parts(spec: ModelSpec, kind: type[P], change: Callable[[P], P]) -> ModelSpec:
    """``spec`` with ``change`` applied to each of its layers of type ``kind``, wherever it holds them
    (a field, or the layers of a sequential spec)."""

    def visit(value: Any) -> Any:
        if isinstance(value, kind):
            return change(value)
        if isinstance(value, tuple):
            return tuple(visit(item) for item in value)
        return value

    return replace(spec, **{f.name: visit(getattr(spec, f.name)) for f in fields(spec) if f.init})


def dropout_note(rates: Sequence[float]) -> tuple[str, ...]:
    """The note on the dropout a Transformer port leaves out (the spec's Transformer has none)."""
    kept = sorted({float(rate) for rate in rates if rate > 0})
    if not kept:
        return ()
    return (
        f"the source's dropout ({', '.join(f'{rate:g}' for rate in kept)}) is left out: the spec's Transformer has "
        "none, so training draws no masks",
    )


# --- what a Transformer's forward does between its layers ----------------------------------------

# How close (relative to the largest output, or absolutely below 1) the user's model and the judge's
# model of one candidate form must agree for the form to be the one the model computes: float32
# rounding is ~1e-6 of it, a wrong pooling, scale, mask or output activation O(1).
SAME_FORM = 1e-3


def probe_tokens(spec: TransformerSpec, pad: int) -> np.ndarray:
    """Four sequences of random tokens other than ``pad``, all but the first ending in ``pad``."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, spec.vocab_size, (4, spec.seq_len)).astype(np.int32)
    tokens[tokens == pad] = (pad + 1) % spec.vocab_size
    for row, length in enumerate((spec.seq_len, max(1, spec.seq_len // 2), max(1, spec.seq_len - 1), 1)):
        tokens[row, length:] = pad
    return tokens


def transformer_form(
    base: TransformerSpec,
    params: Mapping[str, np.ndarray],
    pad: int,
    source: Callable[[np.ndarray], np.ndarray],
    activations: Sequence[str] = (),
) -> TransformerSpec:
    """The form of ``base`` — mean, first or no pooling; the embedding scaled by √d_model or not;
    keys masked at token ``pad`` or not; a linear, softmax or sigmoid output; and the FFN's
    activation among ``activations`` (default: ``base``'s) — whose judge's outputs are the user's
    model's (``source``) on a probe: sequences of random tokens, all but one ending in padding. What
    an importer cannot read from the layers (the forward between them) is read from what the model
    computes; a model of no such form raises :class:`PortError`."""
    tokens = probe_tokens(base, pad)
    actual = np.asarray(source(tokens))
    forms = [
        replace(
            base,
            pooling=pooling,
            scale_embedding=scale,
            pad_token=pad_token,
            output_activation=output,
            activation=Activation.parse(ffn),
        )
        for ffn in activations or (str(base.activation),)
        for pooling in ("mean", "first", "none")
        for scale in (True, False)
        for pad_token in (pad, None)
        for output in ("linear", "softmax", "sigmoid")
        if not (pooling == "none" and output == "softmax")
    ]
    known = (
        "mean, first or no pooling; the embedding scaled by √d_model or not; keys masked at the padding token or "
        f"not; a linear, softmax or sigmoid output; an FFN activation of "
        f"{', '.join(map(str, activations or (base.activation,)))}"
    )
    return closest_form(forms, params, tokens, actual, f"the spec's Transformer ({known})")


M = TypeVar("M", bound=ModelSpec)


def closest_form(
    forms: Sequence[M], params: Mapping[str, np.ndarray], x: np.ndarray, actual: np.ndarray, known: str
) -> M:
    """Of ``forms`` (specs that differ only in what their forward does between the same tensors), the
    one whose judge's outputs on ``x`` are closest to ``actual``, the user's model's, if it is within
    :data:`SAME_FORM` (the GELUs' two forms differ by less: the closest, not the first, is the one);
    else :class:`PortError`, naming the forms ``known`` covers."""
    errors = {}
    for form in forms:
        expected = ref.forward(form, params, x)
        if expected.shape == actual.shape:
            errors[form] = np.abs(actual - expected).max() / max(1.0, np.abs(expected).max())
    best = min(errors, key=errors.__getitem__, default=None)
    if best is None or errors[best] > SAME_FORM:
        raise PortError(forms[0].name, "forward", f"it computes none of the forms of {known}")
    return best


L = TypeVar("L")


def encoder_roles(
    name: str,
    attentions: Sequence[L],
    norms: Sequence[L],
    linears: Sequence[L],
    label: Callable[[L], str],
    kinds: tuple[str, str, str],
) -> dict[str, L]:
    """Each canonical sub-layer of a Transformer's encoder and head — ``encoder_<i>/attention``,
    ``…/attention_norm``, ``…/ffn_0``, ``…/ffn_1``, ``…/ffn_norm``, ``final_norm`` (pre-norm) and
    ``dense_0`` — and the source layer playing it, from the attention layers, LayerNorms and dense
    layers in the order the model calls them: per block the first LayerNorm called is the
    attention's (after it post-norm, before it pre-norm), the dense layers come in FFN pairs, the
    last is the head, and a LayerNorm left over is the pre-norm encoder's final one. ``kinds``: the
    framework's names of the attention, LayerNorm and dense layers, for the error."""
    count, (attention_kind, norm_kind, dense_kind) = len(attentions), kinds
    if len(linears) != 2 * count + 1 or len(norms) not in (2 * count, 2 * count + 1):
        why = (
            f"per {attention_kind} ({count}) two {norm_kind} and two {dense_kind} (an FFN), then one {dense_kind} "
            f"head (and for pre-norm a final {norm_kind}): found {len(norms)} {norm_kind}, {len(linears)} {dense_kind}"
        )
        raise PortError(name, ", ".join(map(label, [*norms, *linears])), why)
    roles: dict[str, L] = {}
    for index, attention in enumerate(attentions):
        layer = encoder_layer_name(index)
        roles |= {f"{layer}/attention": attention, f"{layer}/attention_norm": norms[2 * index]}
        roles |= {f"{layer}/ffn_0": linears[2 * index], f"{layer}/ffn_1": linears[2 * index + 1]}
        roles[f"{layer}/ffn_norm"] = norms[2 * index + 1]
    if len(norms) % 2:
        roles["final_norm"] = norms[-1]
    return roles | {"dense_0": linears[-1]}


def refuse_shared_calls(name: str, called: Sequence[str]) -> None:
    """A layer the model calls twice holds one layer's tensors for two of the spec's."""
    shared = sorted({layer for layer in called if called.count(layer) > 1})
    if shared:
        raise PortError(name, ", ".join(shared), "a layer called twice (shared weights): the spec's are one per use")


def require_layer(name: str, where: str, condition: bool, what: str) -> None:
    """An importer's check of an option a source layer must have for the specs to express it."""
    if not condition:
        raise PortError(name, where, f"the specs express this layer only with {what}")


def indexes_positions(value: Any, seq_len: int) -> bool:
    """Whether an embedding's input is 0, 1, …, seq_len − 1: it is a table of positions, not tokens."""
    return bool(np.array_equal(np.asarray(value).reshape(-1)[:seq_len], np.arange(seq_len)))


# --- the command: triptych-port -----------------------------------------------------------------


class SourceRun(Protocol):
    """An importer's runner of the user's model on a canonical batch: what the model returns, in
    evaluation mode or in ``training`` mode — dropout at rate 0 (the judge draws no masks), its
    running statistics put back after."""

    def __call__(self, x: np.ndarray, *, training: bool = False) -> np.ndarray: ...


class SourceLayersRun(Protocol):
    """An importer's runner of the user's model giving its layers' outputs by canonical name, in
    either mode as :class:`SourceRun`."""

    def __call__(self, x: np.ndarray, *, training: bool = False) -> Mapping[str, np.ndarray]: ...


class Importer(Protocol):
    """What ``impls/<framework>/port.py`` offers (the torch one: :mod:`impls.torch.port`)."""

    def import_model(self, model: Any, input_shape: tuple[int, ...], name: str | None = None) -> Imported: ...

    def load_checkpoint(self, model: Any, path: str | Path) -> None: ...

    def canonical_inputs(self, x: np.ndarray) -> np.ndarray: ...

    def source_outputs(self, model: Any) -> SourceRun: ...

    def source_layer_outputs(self, model: Any, imported: Imported) -> SourceLayersRun: ...


# The framework whose importer reads a model, by the package its class comes from.
FRAMEWORK_PACKAGES = {"torch": "torch", "keras": "keras", "flax": "jax"}


def framework_of(model: object) -> str:
    """The backend name of the framework ``model`` is written in."""
    for cls in type(model).__mro__:
        package = cls.__module__.split(".")[0]
        if package in FRAMEWORK_PACKAGES:
            return FRAMEWORK_PACKAGES[package]
    raise PortError(type(model).__name__, "the model", "not a torch nn.Module, a keras.Model or a Flax NNX module")


def load_importer(framework: str) -> Importer:
    """``impls.<framework>.port``; a clear error where that framework has no importer yet."""
    try:
        return cast(Importer, importlib.import_module(f"impls.{framework}.port"))
    except ModuleNotFoundError as exc:
        if exc.name != f"impls.{framework}.port":
            raise BackendUnavailable(f"the {framework} importer needs its framework: {exc}") from exc
        raise PortError(framework, "importer", f"reading {framework} models is not written yet") from None


def load_builder(reference: str, kwargs: Mapping[str, Any]) -> object:
    """The user's model from ``path/to/file.py:Name`` or ``package.module:Name``: a class or function
    called with ``kwargs``, or a model object itself."""
    found = load_object(reference)
    return found(**kwargs) if isinstance(found, type) or inspect.isfunction(found) else found


def load_spec(reference: str) -> ModelSpec:
    """A user's spec from ``path/to/file.py`` (its ``SPEC``, as ``triptych-port`` writes it) or
    ``path/to/file.py:NAME`` / ``package.module:NAME``."""
    if reference.endswith(".py"):
        reference += ":SPEC"
    found = load_object(reference)
    if not isinstance(found, ModelSpec):
        raise PortError(reference, "the spec", f"a {type(found).__name__}, not a spec (spec.models)")
    return found


def load_object(reference: str) -> object:
    """What ``path/to/file.py:Name`` or ``package.module:Name`` names."""
    location, _, attribute = reference.rpartition(":")
    if not location or not attribute:
        raise PortError(reference, "the reference", "give it as path/to/file.py:Name or package.module:Name")
    if location.endswith(".py"):
        path = Path(location)
        if not path.is_file():
            raise PortError(reference, location, "no such file")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        assert module_spec is not None and module_spec.loader is not None  # a .py file always has one
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(location)
    if not hasattr(module, attribute):
        raise PortError(reference, attribute, f"{location} defines no {attribute}")
    return getattr(module, attribute)


def report_markdown(report: PortReport, imported: Imported) -> str:
    lines = [
        f"# Port of {report.model} from {report.source}",
        "",
        f"Spec: `{imported.spec!r}`",
        "",
        "Each executor's outputs on the verification batch against the float64 judge, relative to each",
        "example's largest output magnitude; within tolerance means within the float32 forward tolerance.",
        "",
        *executor_table(report.checks),
    ]
    if report.layers:
        how = (
            ["Layer by layer: the model cut after each dense layer or convolution, on every executor, against",
             "the judge's output of that layer (the source: its own layer's output)."]
            if isinstance(imported.spec, CNNSpec)
            else ["Inside the model: what the layer holding each canonical layer or block returns, on every",
                  "executor, against the judge's value there, relative to each example's largest value there",
                  "(not observed: no layer of that executor holds it alone)."]
        )  # fmt: skip
        lines += [
            "",
            *how,
            "",
            *layer_table(report.layers, "canonical layer", "source layer", missing=layer_missing(imported.spec)),
            *parting("The port parts", report.first_divergence),
        ]
    else:
        lines += ["", "| canonical layer | source layer |", "|---|---|"]
        lines += [f"| {layer} | `{source}` |" for layer, source in imported.sources.items()]
    if report.loss is not None:
        lines += [
            "",
            f"## Training mode (loss {report.loss})",
            "",
            "The source and every target in training mode (BatchNorm on the batch's statistics) against the judge's",
            f"training-mode outputs{f'; {report.training_note}' if report.training_note else ''}.",
            "",
            *executor_table(report.training),
        ]
        if report.training_layers:
            missing = layer_missing(imported.spec)
            lines += ["", *layer_table(report.training_layers, "canonical layer", "source layer", missing=missing)]
            lines += parting("In training mode the port parts", report.first_training_divergence)
        if report.gradients:
            lines += [
                "",
                "Each trained tensor's gradient against the judge's float64 finite differences along random",
                "directions of that tensor: the worst relative error (within tolerance: within the float32",
                "gradient tolerance).",
                "",
                *layer_table(report.gradients, "canonical tensor", "source layer", missing="unresolved"),
                *parting("Backpropagation parts", report.first_gradient_divergence),
            ]
    if imported.notes:
        lines += ["", "Notes on the port:", "", *(f"- {note}" for note in imported.notes)]
    return "\n".join(lines) + "\n"


def layer_missing(spec: ModelSpec) -> str:
    """What a layer table says where an executor has no value: a cut model it cannot build, or a
    point inside the model none of its layers holds alone."""
    return "not native" if isinstance(spec, CNNSpec) else "not observed"


def executor_table(checks: Sequence[PortCheck]) -> list[str]:
    lines = ["| executor | error | within tolerance | note |", "|---|---:|:---:|---|"]
    for check in checks:
        error = "not native" if check.error is None else f"{check.error:.2e}"
        verdict = "yes" if check.ok else "**NO**"
        lines.append(f"| {check.executor} | {error} | {verdict} | {check.unsupported or check.note or ''} |")
    return lines


def layer_table(rows: Sequence[PartCheck], part: str, source: str, missing: str = "not native") -> list[str]:
    """``rows`` as a table, each executor's error a column (``missing`` where it has none)."""
    executors = list(rows[0].errors)
    lines = [f"| {part} | {source} | {' | '.join(executors)} | within tolerance |"]
    lines.append(f"|---|---|{'---:|' * len(executors)}:---:|")
    for row in rows:
        cells = [missing if row.errors[e] is None else f"{row.errors[e]:.2e}" for e in executors]
        shown_only = all(row.scaled[e] is None for e in executors if row.errors[e] is not None)
        verdict = "not judged" if shown_only and any(row.errors[e] is not None for e in executors) else None
        verdict = verdict or ("yes" if row.ok else "**NO**")
        lines.append(f"| {row.part} | `{row.source}` | {' | '.join(cells)} | {verdict} |")
    return lines


def parting(what: str, first: PartCheck | None) -> list[str]:
    """The sentence naming where the port parts, with the catalogue's likely causes."""
    if first is None:
        return []
    parted = ", ".join(e for e, value in first.scaled.items() if value is not None and value > 1.0)
    return [
        "",
        f"**{what} at {first.part}** (`{first.source}`) on {parted}. Likely causes, in",
        f"docs/framework-differences.md: {', '.join(first.likely_causes) or 'none catalogued'}.",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="triptych-port",
        description="Port a torch, Keras or Flax model to every backend, verified against the float64 judge.",
    )
    parser.add_argument("model", help="path/to/file.py:Name or package.module:Name (a class, function or model)")
    parser.add_argument(
        "--input-shape", required=True, help="one example's shape in the source's layout: C,H,W | T,F | F"
    )
    parser.add_argument("--kwargs", default="{}", help="JSON keyword arguments for the class or function")
    parser.add_argument(
        "--checkpoint",
        type=Path,
        help="the source's weight file (torch: a state dict; Keras: .weights.h5 or .keras; Flax: msgpack)",
    )
    parser.add_argument(
        "--batch", type=Path, help=".npz whose 'x' is the verification batch (source layout) and 'y' its targets"
    )
    parser.add_argument("--loss", choices=LOSSES, help="the training checks' loss (default: the output's usual one)")
    parser.add_argument("--to", action="append", choices=BACKEND_NAMES, default=[], help="targets (default: all)")
    parser.add_argument("--name", help="the spec's name (default: the model's class)")
    parser.add_argument("--out", type=Path, default=Path("reports/port"), help="directory for the files written")
    args = parser.parse_args(argv)
    try:
        shape = tuple(int(n) for n in args.input_shape.split(","))
        model = load_builder(args.model, json.loads(args.kwargs))
        importer = load_importer(framework_of(model))
        if args.checkpoint is not None:
            importer.load_checkpoint(model, args.checkpoint)
        step("reading the model")
        imported = importer.import_model(model, shape, args.name)
        loss = check_model_loss(imported.spec, args.loss or DEFAULT_LOSS[imported.spec.output_activation])
        if args.batch is None:
            x, y = verification_batch(imported.spec, loss)
        else:
            source_x, given = load_batch(args.batch)
            x = as_input_dtype(importer.canonical_inputs(source_x), imported.spec)
            if given is None:
                y = seeded_targets(imported.spec, loss, len(x))
            else:  # class ids as given (verify_training checks them), arrays in the canonical layout
                y = given if takes_class_ids(loss) else importer.canonical_inputs(given).astype(np.float32)
        step(f"loading {', '.join(args.to) if args.to else 'every installed backend'}")
        targets = []
        for name, found in available_backends(tuple(args.to) if args.to else BACKEND_NAMES).items():
            if isinstance(found, BackendUnavailable):
                if args.to:  # asked for by name
                    raise found
                print(f"[port] skipping {name}: {found}", file=sys.stderr)
                continue
            targets.append(found)
        step(f"verifying on {', '.join(b.name for b in targets)}")
        layers = importer.source_layer_outputs(model, imported)
        report = verify(imported, importer.source_outputs(model), x, targets, layers, y=y, loss=loss)
    except (PortError, WeightFileError, SpecError, BackendUnavailable, ValueError) as exc:
        print(f"triptych-port: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / imported.spec.name
    spec, params = imported.spec, imported.params
    markdown = report_markdown(report, imported)
    (args.out / "port.md").write_text(markdown)
    payload = {
        "ok": report.ok,
        "spec": repr(spec),
        "sources": dict(imported.sources),
        "notes": list(imported.notes),
        **asdict(report),
    }
    (args.out / "port.json").write_text(json.dumps(payload, indent=2))
    written = [
        args.out / "port.md",
        args.out / "port.json",
        save_weights(stem.with_suffix(".npz"), spec, params),
        save_weights(stem.with_suffix(".safetensors"), spec, params),
        write_spec_module(args.out / f"{spec.name}_spec.py", spec),
    ]
    for backend in targets:  # each target's model in its framework's own file
        try:
            model, _ = build_target(backend, spec, params)
        except UnsupportedOption:
            continue
        written.append(backend.save_native(model, args.out / f"{spec.name}_{backend.name}"))
    print(markdown)
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 0 if report.ok else 1


VERIFY_BATCH = 8  # examples of the embedded data each executor runs, without a --batch


def verification_batch(spec: ModelSpec, loss: str) -> tuple[np.ndarray, np.ndarray]:
    """:data:`VERIFY_BATCH` examples of the embedded data shaped for the model and their targets
    (``example_batch``), or seeded N(0, 1) inputs where the data takes no such shape (an image of
    30×30, a vector of 20) or targets that do not fit ``loss``, with :func:`seeded_targets`."""
    try:
        x, y = spec.example_batch(VERIFY_BATCH)
    except SpecError:
        x = np.empty((0,))
    if x.shape[1:] != tuple(spec.input_shape):
        x = np.random.default_rng(0).standard_normal((VERIFY_BATCH, *spec.input_shape)).astype(np.float32)
        return x, seeded_targets(spec, loss, len(x))
    return x, y if np.shape(y)[1:] == target_shape(spec, loss) else seeded_targets(spec, loss, len(x))


def as_input_dtype(x: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """A batch in the dtype ``spec`` takes: float32, or int32 token ids (from integers, or from
    floats holding whole numbers; anything else is refused, naming the batch)."""
    if spec.input_dtype == "float32":
        return np.asarray(x, np.float32)
    if not np.issubdtype(x.dtype, np.integer) and not np.array_equal(x, np.round(x)):
        raise SpecError("batch", f"{x.dtype} values that are not whole", f"token ids for {spec.name}")
    return np.asarray(x).astype(np.int32)


def target_shape(spec: ModelSpec, loss: str) -> tuple[int, ...]:
    """One example's targets for ``loss``: a class id, or an array shaped as the output."""
    return () if takes_class_ids(loss) else tuple(spec.output_shape)


def seeded_targets(spec: ModelSpec, loss: str, size: int) -> np.ndarray:
    """Seeded targets for ``size`` examples that ``loss`` takes: class ids, 0/1 labels for binary
    cross-entropy, one-hot rows for categorical, N(0, 1) values for MSE."""
    rng = np.random.default_rng(1)
    shape = (size, *target_shape(spec, loss))
    if takes_class_ids(loss):
        return rng.integers(0, spec.output_shape[-1], shape)
    if loss == "binary_crossentropy":
        return rng.integers(0, 2, shape).astype(np.float32)
    if loss == "categorical_crossentropy":
        return np.eye(shape[-1], dtype=np.float32)[rng.integers(0, shape[-1], shape[:-1])]
    return rng.standard_normal(shape).astype(np.float32)


def step(text: str) -> None:
    print(f"[port] {text}", file=sys.stderr, flush=True)


def load_batch(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """The ``x`` array of an ``.npz`` file and its ``y`` (the targets) if it has one, named in the
    error where ``x`` is missing or the file unreadable."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "x" not in archive.files:
                raise WeightFileError(f"batch file {str(path)!r} has no 'x' array (it has {archive.files})")
            return np.asarray(archive["x"]), np.asarray(archive["y"]) if "y" in archive.files else None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise WeightFileError(f"batch file {str(path)!r} is not a readable .npz archive ({exc})") from exc


def write_spec_module(path: Path, spec: ModelSpec) -> Path:
    """A Python file defining ``SPEC``, the inferred spec: to read, to edit, and for ``make compare``."""
    path.write_text(
        '"""The spec triptych-port inferred; its weights are in the .npz beside this file."""\n\n'
        "from spec.layers import *  # noqa: F403\n"
        "from spec.models import *  # noqa: F403\n\n"
        f"SPEC = {spec!r}\n"
    )
    return path


if __name__ == "__main__":
    raise SystemExit(main())
