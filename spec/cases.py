"""The cases every backend is judged on: each zoo model, and small specs that reach what the zoo does
not (every activation, padding rule, cell, head, norm placement and loss) and are cheap enough for
the judge's finite differences.

A case is a spec, the loss it trains with, how its parameters are moved off their init, its batch,
and which checks judge it. The contract tests (``tests/contract/``) run each check on every case it
judges and every backend; ``make compare`` and the benchmarks take their models and batches from here.

Which checks judge a case, and in which tier, follows from its spec in one place,
:meth:`Case.tier`: a deep network's gradients are not judged element by element (see
:data:`DEEP_GRADIENTS`), and a check whose judge costs more than the quick tier's budget runs in
the exhaustive tier (``pytest -m exhaustive``, ``make test-all``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Literal

import numpy as np

from spec import reference
from spec.data import one_hot
from spec.layers import Act, BatchNorm, Conv2D, ConvTranspose2D, Dense, Dropout, Flatten, GlobalAvgPool, Pool2D, Reshape
from spec.models import (
    ZOO,
    CNNSpec,
    GANSpec,
    MLPSpec,
    ModelSpec,
    ResNetSpec,
    RNNSpec,
    TransformerSpec,
    VAESpec,
    is_frozen,
)
from spec.params import init_params, param_specs, trained_names
from spec.tolerances import KINK_MARGIN

# The smallest zoo model of each kind: where `make test` checks what does not vary with the layers.
FIRST_OF_KIND: dict[str, str] = {
    kind: min((name for name, spec in ZOO.items() if spec.kind == kind), key=lambda name: ZOO[name].forward_flops(1))
    for kind in dict.fromkeys(spec.kind for spec in ZOO.values())
}

# What the contract checks, in tests/contract/ (test_<check>.py; the witness and mixed ones share theirs).
CHECKS = (
    "counts",  # the framework's own parameter count equals the spec's
    "forward",  # logits and outputs against the judge, in evaluation and training mode
    "gradients",  # the loss and every gradient against the judge's finite differences
    "agreement",  # evaluation logits and every parameter's gradient, backend against backend
    "optimizer_step",  # canonical gradients through the native optimizer land on the judge's update
    "round_trip",  # export → import gives the same model, and an export is a snapshot
    "compiled",  # compiled and eager passes and train steps agree
    "inputs",  # a batch that does not fit the spec is refused, naming the model
    "witness",  # the float64 build (spec.precision) against the judge: logits, loss, gradients
    "witness_agreement",  # float64 gradients of every parameter, backend against backend
    "mixed",  # mixed bfloat16 and float16 builds' outputs against the judge, relative to their magnitude
    "mixed_gradients",  # and their gradients against the float64 witness
)
Check = Literal[
    "counts", "forward", "gradients", "agreement", "optimizer_step", "round_trip", "compiled", "inputs", "witness",
    "witness_agreement", "mixed", "mixed_gradients",
]  # fmt: skip
Tier = Literal["quick", "exhaustive"]

# Why a deep network's float32 gradients are not judged element by element. In training mode the
# closest of its ~10⁶ ReLU inputs (ResNet-18, 2 images of 32×32) lies 6e-8 to 2.3e-6 of its layer's
# rms from the kink (the judge, 8 batches), below the float32 forward error at depth (medians to
# 3e-6, at worst 3e-5 of the rms, torch float32 vs float64), so each framework's rounding picks
# the side of a few units. Measured on resnet18_cifar
# (2 images, perturbed parameters, batches 0–7): torch float32 against its float64 witness, worst
# per tensor, 1e-2 to 8e-2 on 5 batches and 7e-6 on the other 3; Keras, JAX and torch without
# oneDNN flip units on other batches. The float64 gradient itself is discontinuous at that scale:
# inputs moved by 1e-6 of their range move it by 3.6e-2 to 2.2e-1 (the logits by 3e-5), so no float32
# computation can be held to it. Its float64 witnesses agree with each other to 3e-14
# (tests/contract/test_witness.py, tests/test_precision.py). A network whose training leaves the
# ReLUs out — resnet50_finetune trains its head on a frozen backbone — is judged like any other.
DEEP_GRADIENTS = "float32 gradients through a deep ReLU network's kinks are ill-posed (measured: spec.cases)"
# Why even a well-posed deep network's gradients are not compared element by element across
# backends: resnet50_finetune's head gradient reaches 687 (logits in the hundreds, on running
# statistics that do not normalise), and its small elements carry float32 rounding at that scale —
# torch float32 against its float64 witness: 1.7e-2 relative on some element, 6.4e-7 of the tensor's
# largest (measured, batch 16). It is judged per tensor against the witness instead.
DEEP_ELEMENTS = "a deep network's gradient elements round at the scale of the largest: judged per tensor (witness)"


# Which cases mixed-precision gradients are judged on: each needs the backend's float64 witness,
# and the small specs hold every layer and layout variant; the other zoo models would add minutes
# of float64 backward passes for no new operation (their mixed outputs are judged, "mixed").
MIXED_CASES = "mixed-precision gradients are judged on the small specs and the smallest zoo model of each kind"


def float32_gradients_ill_posed(spec: ModelSpec, loss: str) -> bool:
    """Whether ``spec``'s float32 gradients for ``loss`` are ill-posed element by element (see
    :data:`DEEP_GRADIENTS`): a deep network that trains more than its head, the one layer above
    its last ReLU."""
    return spec.is_deep and any(not name.startswith("head/") for name in trained_names(spec, loss))


# The quick tier's budget for one check of one case, in the spec's forward FLOPs on the case's batch
# (times the judge's passes for a gradient check): above it a check runs in the exhaustive tier. At
# 3e7 the quick tier judges the gradients of every zoo MLP, VAE, GAN, recurrent net and Transformer
# but Keras's 8-head one, and leaves the full-size CNNs' and ResNets' to the exhaustive tier.
QUICK_FLOPS = 30_000_000
# Checks that build and run the model once per backend (no judge): quick up to ten times the budget.
MODEL_ONLY_FLOPS = 10 * QUICK_FLOPS
# Checks that the quick tier makes on the zoo's first model of each kind only (and on the small
# specs, which hold every layer and layout variant): the other zoo models' took 177 s of the quick
# tier's 1,063 worker-seconds (measured on a 2-core Zen 4 EPYC), most of it JAX compiling
# recurrent and attention layers that the small specs also hold.
BEYOND_FIRST: frozenset[str] = frozenset({"forward", "gradients", "agreement"})


@dataclass(frozen=True)
class Case:
    """A spec judged with ``loss`` (``None``: its default) on a batch of ``batch_size`` examples
    (:meth:`spec.models.ModelSpec.example_batch`); ``perturbed``: its biases, norms' scales and
    shifts, running statistics and learned positions are moved off their initial 0 and 1 (see
    :func:`perturbed_params`), so that a backend that drops or swaps one cannot match the judge."""

    spec: ModelSpec
    loss: str | None = None
    # 16: a first-layer kernel gradient sums batch × height × width terms that largely cancel, and at
    # 64 images of 64×64 its float32 rounding alone reaches 1e-4 of its norm (measured on cnn_64:
    # torch float32 vs float64, which agrees with the judge to 1e-7)
    batch_size: int = 16
    perturbed: bool = True
    another_loss: bool = False  # a second case of the same spec (a GAN's generator loss, say)

    @property
    def trains_with(self) -> str:
        return self.loss or self.spec.default_loss

    @property
    def id(self) -> str:
        return self.spec.name if self.loss is None else f"{self.spec.name}-{self.loss}"

    def params(self, seed: int) -> dict[str, np.ndarray]:
        """The parameters a check starts from: the canonical init for ``seed``, perturbed if the case is."""
        return perturbed_params(self.spec, seed) if self.perturbed else init_params(self.spec, seed)

    def batch(self, seed: int = 0, size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets for :attr:`trains_with` (``size`` examples, the case's by default): the
        spec's example batch, its class ids one-hot for a loss other than the sparse one."""
        x, targets = self.spec.example_batch(size or self.batch_size, seed)
        if targets.dtype.kind in "iu" and self.trains_with != "sparse_categorical_crossentropy":
            targets = one_hot(targets, self.spec.output_size)
        return x, targets

    def gradient_batch(self, seed: int = 0, size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The batch on which float32 gradients are judged: the first draw for ``seed`` on which, with
        the parameters for ``seed``, every input of a piecewise op lies
        :data:`~spec.tolerances.KINK_MARGIN` from its kink (:func:`well_posed_draw`); a deep
        network's first draw (:data:`DEEP_GRADIENTS`: none of its batches is well-posed)."""
        size = size or self.batch_size
        return self.batch(seed if self.spec.is_deep else well_posed_draw(self, seed, size), size)

    @property
    def trains_on_batch_statistics(self) -> bool:
        """Whether a BatchNorm of the spec normalises with the batch's statistics in training mode
        (every one does but those frozen with ``frozen_batchnorm="inference"``)."""
        spec = self.spec
        layers = [name.rsplit("/", 1)[0] for name in param_specs(spec) if name.endswith("/moving_mean")]
        return any(not (spec.frozen_batchnorm == "inference" and is_frozen(spec, n)) for n in layers)

    def tier(self, check: Check) -> Tier | None:
        """The tier in which ``check`` judges this case, or ``None`` where it does not (see
        :func:`not_judged`). The quick tier (`make test`) keeps every check on at least one case of
        each kind: checks of code that does not vary with the layers (input checks, the compilers) on
        the smallest zoo model of each kind; checks of layouts (optimizer step, round trip) and of
        the float64 witnesses on the small specs, which hold every layout and layer variant; the
        others on every case within their budget (building a full-size ResNet on three backends
        costs more than the quick tier's checks of it)."""
        if not_judged(self, check) is not None:
            return None
        flops = self.spec.forward_flops(self.batch_size)
        if check in ("inputs", "compiled"):  # a first compile takes 5–60 s a backend
            first = self.spec.name in FIRST_OF_KIND.values() and flops <= QUICK_FLOPS
            return "quick" if first else "exhaustive"
        if check in ("optimizer_step", "round_trip", "witness", "witness_agreement"):
            return "quick" if self.spec.name in SMALL else "exhaustive"
        if check in ("mixed", "mixed_gradients"):  # a build a backend and format, compiled by JAX: a hundredth
            first = self.spec.name in FIRST_OF_KIND.values() and flops <= QUICK_FLOPS / 100
            return "quick" if first else "exhaustive"
        if check in BEYOND_FIRST and self.spec.name in ZOO and self.spec.name not in FIRST_OF_KIND.values():
            return "exhaustive"  # the small specs hold their layers; make test judges the first of each kind
        if check in ("gradients", "agreement"):  # the judge's passes, or a backward pass on two backends
            return "quick" if flops <= QUICK_FLOPS else "exhaustive"
        return "quick" if flops <= MODEL_ONLY_FLOPS else "exhaustive"


# The checks that do not depend on the loss: judged once per spec, on its first case.
LOSS_FREE: frozenset[Check] = frozenset({"counts", "forward", "round_trip", "compiled", "inputs", "mixed"})


def not_judged(case: Case, check: Check) -> str | None:
    """Why ``check`` does not judge ``case``, or ``None`` where it does."""
    if check in ("gradients", "agreement", "mixed_gradients") and float32_gradients_ill_posed(
        case.spec, case.trains_with
    ):
        return DEEP_GRADIENTS
    if check == "agreement" and case.spec.is_deep:
        return DEEP_ELEMENTS
    if check == "compiled" and ZOO.get(case.spec.name) != case.spec:
        return "the compilers are judged on the zoo's models; the small specs are there for the judge"
    if check == "mixed_gradients" and case.spec.name not in SMALL and case.spec.name not in FIRST_OF_KIND.values():
        return MIXED_CASES
    if check in LOSS_FREE and case.another_loss:
        return f"does not depend on the loss: judged on {case.spec.name}'s first case"
    return None


# Redraws for a well-posed batch, and the stride between their seeds (far from the seeds tests use).
WELL_POSED_DRAWS = 200
REDRAW_STRIDE = 1_000_003


@cache
def well_posed_draw(case: Case, seed: int, size: int) -> int:
    """The seed of the first of ``seed``, ``seed + REDRAW_STRIDE``, … whose batch of ``size`` keeps
    every input of a piecewise op of the training loss's pass :data:`~spec.tolerances.KINK_MARGIN`
    from its kink (:func:`spec.reference.closest_kink`), with the case's parameters for ``seed``:
    where one lies nearer, float32 rounding may cross it and its gradients are ill-posed element by
    element. Not for a deep network (:data:`DEEP_GRADIENTS`: no batch of it is well-posed)."""
    params = case.params(seed)
    best = reference.Kink("none", 0.0)
    for attempt in range(WELL_POSED_DRAWS):
        draw = seed + REDRAW_STRIDE * attempt
        kink = reference.closest_kink(case.spec, params, *case.batch(draw, size), case.trains_with)
        if kink is None or kink.margin >= KINK_MARGIN:
            return draw
        best = max(best, kink, key=lambda k: k.margin)
    raise RuntimeError(
        f"{case.id}: in none of {WELL_POSED_DRAWS} batches of {size} does every piecewise op's input lie "
        f"{KINK_MARGIN:g} of its rms from a kink (the best: {best.margin:.1e}, at {best.op}); judge it on "
        "fewer examples"
    )


def perturbed_params(spec: ModelSpec, seed: int) -> dict[str, np.ndarray]:
    """The canonical init with every tensor that starts at 0 or 1 moved off it: biases, BatchNorm's
    and LayerNorm's shifts and running means to U(−0.5, 0.5), their scales and running variances to
    U(0.5, 1.5), learned positions to N(0, 0.5²)."""
    params = init_params(spec, seed)
    rng = np.random.default_rng(seed)
    for name, info in param_specs(spec).items():
        variable = name.rsplit("/", 1)[1]
        if variable in ("gamma", "moving_variance"):
            params[name] = rng.uniform(0.5, 1.5, info.shape).astype(np.float32)
        elif variable in ("beta", "moving_mean", "bias"):
            params[name] = rng.uniform(-0.5, 0.5, info.shape).astype(np.float32)
        elif name == "position/embeddings":
            params[name] = rng.normal(0.0, 0.5, info.shape).astype(np.float32)
    return params


# --- the small specs, by family -------------------------------------------------------------------

# Dense: every activation, every output activation with every loss it allows, no bias, each
# initializer's scale, and the L2 term large enough to be a tenth of the loss.
DENSE: list[tuple[MLPSpec, str]] = [
    (
        MLPSpec("act_tanh", 64, (16,), 10, "tanh", "softmax", kernel_initializer="glorot_normal"),
        "categorical_crossentropy",
    ),
    (
        MLPSpec("act_sigmoid", 64, (16,), 10, "sigmoid", "softmax", kernel_initializer="he_uniform"),
        "sparse_categorical_crossentropy",
    ),
    (
        MLPSpec("act_leaky", 64, (16, 12), 10, "leaky_relu(0.2)", "softmax", bias_initializer="torch_default"),
        "sparse_categorical_crossentropy",
    ),
    (
        MLPSpec("act_gelu_tanh", 64, (16,), 10, "gelu(tanh)", "sigmoid", kernel_initializer="lecun_normal"),
        "binary_crossentropy",
    ),
    (MLPSpec("act_elu", 64, (16,), 10, "elu(0.5)", "sigmoid", kernel_initializer="torch_default"), "mse"),
    (MLPSpec("act_linear_nobias", 64, (16,), 10, "linear", "linear", use_bias=False), "mse"),
    (MLPSpec("act_gelu_exact", 64, (16,), 10, "gelu(exact)", "softmax", bias_initializer="torch_default"), "mse"),
    (MLPSpec("kernel_l2", 64, (16,), 10, "relu", "softmax", kernel_l2=0.01), "sparse_categorical_crossentropy"),
]

# Vision: every padding rule (asymmetric 'same' at stride 2, explicit, −∞ for max, counted or not for
# average), BatchNorm before and after the flatten, global average pooling, tiny ResNets with both
# stems and both blocks.
_BN = BatchNorm(momentum=0.8, epsilon=1e-3)
VISION: list[CNNSpec | ResNetSpec] = [
    CNNSpec(
        "same_stride2",
        (8, 8, 1),
        (Conv2D(4, 3, 2, "same"), Act("tanh"), Pool2D("max", 3, 2, "same"), Flatten(), Dense(10)),
        "softmax",
    ),
    CNNSpec(
        "explicit_pads",
        (8, 8, 1),
        (
            Conv2D(4, 3, 1, ((2, 0), (1, 3))),
            Act("elu(1.0)"),
            Pool2D("max", 2, 2, ((1, 0), (0, 1))),
            Conv2D(3, 2, (1, 2), "valid", use_bias=False),
            Flatten(),
            Dense(10),
        ),
        "softmax",
        bias_initializer="torch_default",
    ),
    CNNSpec(
        "avg_pools",
        (8, 8, 1),
        (
            Conv2D(4, 3, 1, "same"),
            Pool2D("avg", 3, 1, "same", count_padding=False),  # (1, 1) each side: torch can leave it out too
            Act("relu"),
            Pool2D("avg", 3, 2, "same", count_padding=True),  # (0, 1): asymmetric, padded zeros counted
            Pool2D("avg", 2, 1, ((1, 1), (1, 1)), count_padding=True),
            GlobalAvgPool(),
            Dense(10),
        ),
        "softmax",
    ),
    CNNSpec(
        "batchnorm_cnn",
        (8, 8, 1),
        # no bias before a BatchNorm: it would cancel out (its gradient is zero)
        (
            Conv2D(6, 3, use_bias=False),
            _BN,
            Act("relu"),
            Flatten(),
            Dense(12, use_bias=False),
            _BN,
            Act("relu"),
            Dropout(0.0),
            Dense(10),
        ),
        "softmax",
        kernel_l2=1e-3,
    ),
    ResNetSpec("tiny_resnet_cifar", (8, 8, 1), 10, "cifar", (1, 1), (4, 6), batchnorm=_BN),
    ResNetSpec("tiny_resnet_imagenet", (16, 16, 1), 10, "imagenet", (1, 1), (4, 6), batchnorm=_BN, kernel_l2=1e-3),
    # Bottleneck blocks (conv_a 1×1, conv_b 3×3/stride, conv_c 1×1 to 4× the width), both shortcuts
    ResNetSpec("tiny_bottleneck", (16, 16, 1), 10, "cifar", (2, 1), (4, 6), batchnorm=_BN, block="bottleneck"),
]

# Decoders: each way a transposed conv's padding maps onto a framework — 'same' at stride 2 with an
# odd window (crop (0, 1): torch crops by hand), with an even one (crop (1, 1): torch's padding=1,
# DCGAN's 4×4/s2/p1), 'valid' (no crop), unequal windows and strides per axis, no bias; and a
# generator from a vector through Dense → BatchNorm → Reshape (torch unflattens NCHW, so the Dense
# columns and BatchNorm vectors are reordered at its edge). Each with both pixel losses.
_RELU = Act("relu")
DECODERS: list[CNNSpec] = [
    CNNSpec(
        "deconv_decoder",
        (8, 8, 1),
        (
            Conv2D(6, 3, 2, "same"), _RELU,
            ConvTranspose2D(5, 3, 2, "same"), _RELU,
            ConvTranspose2D(4, 4, 2, "same"), Act("tanh"),
            ConvTranspose2D(3, (3, 2), (1, 2), "valid", use_bias=False), _RELU,
            Conv2D(1, (3, 4), (2, 4), "valid"),
        ),
        "sigmoid",
        bias_initializer="torch_default",
    ),
    CNNSpec(
        "reshape_generator",
        (6,),
        (
            Dense(2 * 2 * 5, use_bias=False), BatchNorm(momentum=0.8), _RELU, Reshape((2, 2, 5)),
            ConvTranspose2D(4, 4, 2, "same"), _RELU,
            ConvTranspose2D(1, 3, 2, "same"),
        ),
        "sigmoid",
        bias_initializer="torch_default",
    ),
]  # fmt: skip
PIXEL_LOSSES = ("mse", "binary_crossentropy")

# Recurrent: every cell, both GRU formulas, stacking, both directions, every head, both attention scores.
SEQUENCE: list[RNNSpec] = [
    RNNSpec("tiny_simple_rnn", "simple_rnn", 2, 5, 7, 3, "softmax", num_layers=2),
    RNNSpec("tiny_lstm", "lstm", 2, 4, 6, 2, "linear", bidirectional=True, head="sequence"),
    RNNSpec("tiny_gru_after", "gru", 3, 4, 6, 1, "sigmoid", num_layers=2, bidirectional=True),
    RNNSpec("tiny_gru_before", "gru", 3, 4, 6, 1, "linear", gru_reset="before"),
    RNNSpec("tiny_lstm_dot_attention", "lstm", 2, 4, 6, 3, "softmax", head="attention", attention="dot"),
    RNNSpec(
        "tiny_gru_additive_attention", "gru", 2, 4, 6, 1, "linear",
        bidirectional=True, head="attention", attention_units=3,
    ),
]  # fmt: skip

# Transformer: both norm placements, every pooling, both positional encodings, ReLU and both GELUs,
# no padding mask, a pad token other than 0, the three LayerNorm epsilons the frameworks default to,
# and heads whose size is not d_model / heads (Keras's key_dim; not native on torch).
TRANSFORMER: list[TransformerSpec] = [
    TransformerSpec("tiny_post_mean", 7, 6, 8, 2, 12, 2, 3, "softmax"),
    TransformerSpec("tiny_key_dim", 7, 6, 8, 2, 12, 1, 3, "softmax", key_dim=6),
    TransformerSpec(
        "tiny_pre_first", 7, 6, 8, 2, 12, 1, 2, "sigmoid",
        activation="gelu(exact)", positional="learned", norm="pre", layer_norm_epsilon=1e-3, pooling="first",
    ),
    TransformerSpec(
        "tiny_pre_tagger", 7, 5, 8, 4, 12, 2, 2, "linear",
        activation="gelu(tanh)", norm="pre", layer_norm_epsilon=1e-6, pooling="none", pad_token=6,
    ),
    TransformerSpec("tiny_unmasked", 5, 6, 8, 2, 12, 1, 3, "softmax", pad_token=None, scale_embedding=False),
]  # fmt: skip

# Generative: the other reconstruction loss, a KL weight and smooth activations for the VAE; a GAN
# with sigmoid samples (pixels), smooth activations and torch's init.
GENERATIVE: list[VAESpec | GANSpec] = [
    VAESpec("digits_vae_mse", 64, 32, 4, activation="tanh", reconstruction="mse", kl_weight=0.5),
    VAESpec("digits_vae_gelu", 64, 24, 3, activation="gelu(exact)", kernel_initializer="he_normal"),
    GANSpec(
        "pixel_gan", 4, 64, (12,), (10, 6), activation="tanh", discriminator_activation="elu(1.0)",
        generator_output="sigmoid", kernel_initializer="torch_default", bias_initializer="torch_default",
    ),
]  # fmt: skip

SMALL: dict[str, ModelSpec] = {
    spec.name: spec for spec in [*(s for s, _ in DENSE), *VISION, *DECODERS, *SEQUENCE, *TRANSFORMER, *GENERATIVE]
}


def _cases_of(spec: ModelSpec, batch_size: int = 16) -> list[Case]:
    """One case per loss ``spec`` trains with: a GAN's two, a decoder's two pixel losses, else its
    default. A full-size image network whose gradients are judged takes 4 images up to 32×32, one
    above: each image adds units that may lie within float32 rounding of a kink, and its batch must
    keep them all :data:`~spec.tolerances.KINK_MARGIN` away (:func:`well_posed_draw`): measured,
    cnn_64 (64×64) has 1.5 such units per image, and none of 200 draws of 4 images kept clear of
    them; cifar_simple_cnn (32×32) needed up to 12 draws of 4."""
    if len(spec.input_shape) == 3 and spec.input_shape[0] >= 28 and not spec.is_deep:
        batch_size = 4 if spec.input_shape[0] * spec.input_shape[1] <= 32 * 32 else 1
    if spec.own_losses:
        losses: tuple[str, ...] = spec.own_losses
    elif spec.output_activation == "sigmoid" and len(spec.output_shape) == 3:  # images out: a decoder
        losses = PIXEL_LOSSES
    else:
        return [Case(spec, batch_size=batch_size)]
    return [Case(spec, loss, batch_size, another_loss=i > 0) for i, loss in enumerate(losses)]


CASES: list[Case] = [
    *(case for spec in ZOO.values() for case in _cases_of(spec)),
    *(Case(spec, loss) for spec, loss in DENSE),
    *(case for spec in [*VISION, *DECODERS, *GENERATIVE] for case in _cases_of(spec)),
    # sequences and token sequences of 8: their judge unrolls every step in Python
    *(case for spec in [*SEQUENCE, *TRANSFORMER] for case in _cases_of(spec, batch_size=8)),
]
ZOO_CASES: dict[str, Case] = {name: _cases_of(spec)[0] for name, spec in ZOO.items()}


def case_of(spec: ModelSpec) -> Case:
    """The case a spec outside the zoo (a user's) is judged as: its default loss, the zoo's batch size."""
    return _cases_of(spec)[0]
