"""Floating-point operations per step, from a spec alone, for the benchmarks' achieved FLOP/s.

Counts multiply–adds of the dense and convolution layers as two operations (the convention of published peak
figures); activations, losses and optimizer updates are a few operations per element and are left
out, so the figures are slight underestimates.
"""

from __future__ import annotations

from itertools import pairwise

from spec.layers import Conv2D, ConvTranspose2D, Dense, Layer
from spec.models import (
    GAN_SPECS,
    CNNSpec,
    ConvGANSpec,
    GANSpec,
    MLPSpec,
    ModelSpec,
    ResNetSpec,
    RNNSpec,
    TransformerSpec,
    VAESpec,
    layer_output_shape,
)
from spec.validation import check_positive_int


def forward_flops(spec: ModelSpec, batch: int) -> int:
    """Operations of one forward pass over ``batch`` examples."""
    check_positive_int("batch", batch)
    match spec:
        case MLPSpec():
            return 2 * batch * sum(fan_in * fan_out for fan_in, fan_out in pairwise(spec.layer_sizes))
        case CNNSpec():
            return batch * sum(_layer_flops(layer, shape) for layer, shape in zip(spec.layers, spec.shapes()))
        case ResNetSpec():
            shapes = spec.shapes()
            total, shape = 0, spec.input_shape
            for layer in spec.stem_layers:
                total += _layer_flops(layer, shape)
                shape = layer_output_shape(layer, shape)
            for block in spec.blocks():
                shape = shapes[block.name]
                after = (*layer_output_shape(block.conv_a, shape)[:2], block.out_channels)
                total += _layer_flops(block.conv_a, shape) + _layer_flops(block.conv_b, after)
                total += _layer_flops(block.shortcut_conv, shape) if block.has_shortcut_conv else 0
            return batch * (total + _layer_flops(Dense(spec.num_classes), (spec.widths[-1],)))
        case RNNSpec():  # per step, layer and direction: the input and the recurrent matmul
            gates = len(spec.gates) * spec.hidden_size
            inputs = [spec.input_size] + [spec.features] * (spec.num_layers - 1)
            per_step = sum(2 * (n + spec.hidden_size) * gates * len(spec.directions) for n in inputs)
            head_steps = spec.seq_len if spec.head == "sequence" else 1
            return batch * (spec.seq_len * per_step + head_steps * 2 * spec.features * spec.output_size)
        case TransformerSpec():  # per layer and position: q, k, v, output projections, scores and mixing, FFN
            t, d = spec.seq_len, spec.d_model
            per_layer = t * (2 * 4 * d * d + 2 * 2 * t * d + 2 * 2 * d * spec.ff_size)
            head_positions = t if spec.pooling == "none" else 1
            return batch * (spec.num_layers * per_layer + head_positions * 2 * d * spec.output_size)
        case VAESpec():  # the reparameterisation is a few operations per latent unit
            return forward_flops(spec.encoder, batch) + forward_flops(spec.decoder, batch)
        case GANSpec() | ConvGANSpec():  # the model's forward: the generator's samples
            return forward_flops(spec.generator, batch)
    raise TypeError(f"no FLOP count for {type(spec).__name__}")


def _layer_flops(layer: Layer, shape: tuple[int, ...]) -> int:
    """Operations of one layer on one example whose input has ``shape``."""
    if isinstance(layer, Conv2D):
        out_h, out_w, filters = layer_output_shape(layer, shape)
        kh, kw = layer.kernel_size
        return 2 * out_h * out_w * kh * kw * shape[2] * filters
    if isinstance(layer, ConvTranspose2D):  # every input pixel paints a kh×kw patch (the cropped part too)
        kh, kw = layer.kernel_size
        return 2 * shape[0] * shape[1] * kh * kw * shape[2] * layer.filters
    if isinstance(layer, Dense):
        return 2 * shape[0] * layer.units
    return 0


def train_step_flops(spec: ModelSpec, batch: int) -> int:
    """Operations of one training step: the forward pass, and a backward pass of twice its cost
    (the gradient with respect to each layer's input and to its weights). A GAN's is its
    discriminator's step (its default loss): the generator's samples, then the discriminator
    forward and backward on them and on as many real points."""
    if isinstance(spec, GAN_SPECS):
        return forward_flops(spec.generator, batch) + 3 * forward_flops(spec.discriminator, 2 * batch)
    return 3 * forward_flops(spec, batch)
