"""What is particular to the convolutional half of the generative zoo: the transposed convolution
and the reshape its decoders and generators need (the judge against the convolution it is the
gradient of, the published output sizes, shapes and fans), the autoencoder's recipe, the DCGAN's
count and checks of its spec. The decoders' counts, image outputs, pixel-loss gradients and
agreement on every backend are in the contract matrix (tests/contract/)."""

from __future__ import annotations

import numpy as np
import pytest

from spec import reference as ref
from spec.backend import Backend
from spec.cases import PIXEL_LOSSES, SMALL
from spec.errors import SpecError
from spec.layers import BatchNorm, Conv2D, ConvTranspose2D, Dense, Flatten, Pool2D, Reshape, resolve_padding
from spec.models import ZOO, CNNSpec, ConvGANSpec
from spec.params import count_params, init_params, param_specs
from spec.recipes import RECIPES, data_for, recipe_split

# --- the spec and the judge -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "stride", "padding", "size"),
    [
        (3, 2, "same", 4),
        (4, 2, "same", 4),
        (3, 1, "same", 5),
        (3, 2, "valid", 4),
        (2, 2, "valid", 3),
        (5, 3, "same", 2),
    ],
)
def test_judge_transposed_conv_is_the_gradient_of_its_conv(window, stride, padding, size) -> None:
    # ⟨conv(y), x⟩ = ⟨y, conv_transpose(x)⟩ for every x and y, with the conv of the same kernel viewed
    # (kh, kw, out, in) and the padding 'same' or 'valid' gives on the transposed conv's output size
    layer = ConvTranspose2D(5, window, stride, padding)
    rng = np.random.default_rng(window * 10 + stride)
    x = rng.normal(size=(2, size, size, 3))
    kernel = rng.normal(size=(window, window, 3, 5))
    y = ref.conv_transpose2d(x, kernel, layer.strides, layer.crops())
    assert y.shape == (2, *layer.output_size((size, size)), 5)
    pads = resolve_padding(padding, y.shape[1:3], layer.kernel_size, layer.strides)
    probe = rng.normal(size=y.shape)
    conv_of_probe = ref.conv2d(probe, kernel.transpose(0, 1, 3, 2), layer.strides, pads)
    assert conv_of_probe.shape == x.shape
    assert np.vdot(conv_of_probe, x) == pytest.approx(np.vdot(probe, y), rel=1e-12)


def test_output_sizes_follow_the_published_formulas() -> None:
    # torch: (n − 1)·s − 2·padding + k; Keras 'same': n·s, 'valid': (n − 1)·s + k (for k ≥ s)
    assert ConvTranspose2D(1, 4, 2, "same").output_size((7, 7)) == (14, 14) == ((7 - 1) * 2 - 2 * 1 + 4,) * 2
    assert ConvTranspose2D(1, 3, 2, "same").crops() == ((0, 1), (0, 1))
    assert ConvTranspose2D(1, 5, 2, "valid").output_size((7, 3)) == (17, 9)
    assert ConvTranspose2D(1, (3, 2), (1, 2), "same").output_size((5, 5)) == (5, 10)


def test_reshape_is_the_inverse_of_flatten_in_nhwc_order() -> None:
    spec = CNNSpec("roundtrip", (2, 3, 4), (Flatten(), Reshape((2, 3, 4)), Conv2D(1, 1)), "linear")
    params = init_params(spec, 0)
    x = np.random.default_rng(0).normal(size=(3, 2, 3, 4))
    expected = x @ params["conv_0/kernel"][0, 0] + params["conv_0/bias"]
    np.testing.assert_allclose(ref.logits(spec, params, x), expected, rtol=1e-12)


def test_canonical_shapes_and_fans_of_a_transposed_conv() -> None:
    infos = param_specs(ZOO["digits_conv_autoencoder"])
    kernel = infos["conv_transpose_1/kernel"]
    assert kernel.shape == (3, 3, 8, 16)  # (kh, kw, in, out): 8 channels in, 16 out
    assert (kernel.fan_in, kernel.fan_out) == (3 * 3 * 16, 3 * 3 * 8)  # as torch and Keras count them
    # conv 1·16·9 + 16, 16·8·9 + 8; transposed 8·8·9 + 8, 8·16·9 + 16; conv 16·1·9 + 1
    assert count_params(ZOO["digits_conv_autoencoder"]).trainable == 160 + 1_160 + 584 + 1_168 + 145 == 3_217
    generator = param_specs(SMALL["reshape_generator"])
    assert generator["dense_0/kernel"].reshaped_to == (2, 2, 5) == generator["batchnorm_0/gamma"].reshaped_to
    assert generator["conv_transpose_0/kernel"].reshaped_to is None


def test_flops_count_each_transposed_conv_as_its_conv() -> None:
    # per image, 2 per multiply-add: conv 8·8·9·1·16, conv 4·4·9·16·8; transposed convs paint a 3×3
    # patch per input pixel: 2·2·9·8·8 and 4·4·9·8·16 — each the count of the conv it is the
    # gradient of (that conv's output is the transposed conv's input); conv 8·8·9·16·1
    macs = 8 * 8 * 9 * 16 + 4 * 4 * 9 * 16 * 8 + 2 * 2 * 9 * 8 * 8 + 4 * 4 * 9 * 8 * 16 + 8 * 8 * 9 * 16
    assert ZOO["digits_conv_autoencoder"].forward_flops(3) == 3 * 2 * macs


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: ConvTranspose2D(4, 3, 2, ((0, 1), (0, 1))), "conv_transpose.padding"),
        (lambda: ConvTranspose2D(4, 2, 3, "valid"), "conv_transpose.kernel_size"),
        (lambda: ConvTranspose2D(4, (3, 1), (1, 2), "same"), "conv_transpose.kernel_size"),
        (lambda: ConvTranspose2D(0, 3), "conv_transpose.filters"),
        (lambda: Reshape((2, 2)), "reshape.target_shape"),
        (lambda: CNNSpec("bad", (6,), (Dense(12), Reshape((2, 2, 4)), Conv2D(1, 1)), "linear"), "reshape.target_shape"),
        (lambda: CNNSpec("bad", (8, 8, 1), (Reshape((8, 8, 1)), Conv2D(1, 1)), "linear"), "layers"),
        (lambda: CNNSpec("bad", (6,), (ConvTranspose2D(1, 3),), "linear"), "layers"),
        (lambda: CNNSpec("bad", (8, 8, 1), (Conv2D(1, 3, padding="same"),), "softmax"), "output_activation"),
        (lambda: CNNSpec("bad", (8, 8, 1), (Conv2D(4, 3), Pool2D("max", 2)), "linear"), "layers"),
    ],
)
def test_bad_decoder_spec_names_the_field(make, field: str) -> None:
    with pytest.raises(SpecError, match=field.replace(".", r"\.")):
        make()


def test_the_autoencoder_recipe_reconstructs_the_images() -> None:
    spec = ZOO["digits_conv_autoencoder"]
    assert spec.reconstructs_input and spec.output_shape == spec.input_shape == (8, 8, 1)
    recipe = RECIPES["digits_conv_autoencoder_mse"]
    assert data_for(spec) == (recipe.data,)
    split = recipe_split(recipe)
    assert split.x_train.shape[1:] == (8, 8, 1)
    np.testing.assert_array_equal(split.x_train, split.y_train)
    images = split.x_test[:4]
    np.testing.assert_array_equal(spec.targets_on_digits(images, split.y_test[:4]), images)
    # its target is well below predicting the mean training image for every pixel
    mean_image_mse = float(((split.x_test - split.x_train.mean(axis=0)) ** 2).mean())
    assert recipe.target_loss < 0.5 * mean_image_mse


# --- every backend --------------------------------------------------------------------------------


def test_targets_of_another_shape_are_refused_not_broadcast(backend: Backend) -> None:
    spec = ZOO["digits_conv_autoencoder"]
    model = backend.build(spec, init_params(spec, 0))
    x, images = spec.example_batch(4)
    for loss in PIXEL_LOSSES:  # (4, 64) against (4, 8, 8, 1) logits would broadcast to (4, 8, 8, 64)
        with pytest.raises(SpecError, match=r"targets: got 'shape \(4, 64\)'"):
            backend.loss_and_grads(model, x, images.reshape(4, 64), loss)


# --- the DCGAN-style GAN (its GAN checks run with the MLP GANs' in tests/test_generative.py) ---------


def test_dcgan_param_count_follows_from_the_layer_sizes() -> None:
    # generator: 32·1024 + 1024, transposed 64→32 4×4: 4·4·64·32 + 32, transposed 32→1 3×3: 9·32 + 1
    # discriminator: 1→32 4×4: 16·32 + 32, 32→64 4×4: 16·32·64 + 64, Dense 2·2·64 → 1: 256 + 1
    generator = 33_792 + 32_800 + 289
    discriminator = 544 + 32_832 + 257
    assert count_params(ZOO["digits_dcgan"]).trainable == generator + discriminator == 100_514
    spec = ZOO["digits_dcgan"]
    assert spec.data_shape == (8, 8, 1) and spec.latent_size == 32 and data_for(spec) == ("digits",)
    infos = param_specs(spec)
    assert infos["generator/dense_0/kernel"].reshaped_to == (4, 4, 64)
    assert infos["discriminator/dense_0/kernel"].flattened_from == (2, 2, 64)


def _gan_parts(**change: object) -> dict[str, CNNSpec]:
    parts = {"generator": ZOO["digits_dcgan"].generator, "discriminator": ZOO["digits_dcgan"].discriminator}
    return parts | change


_DCGAN = ZOO["digits_dcgan"]
_TO_8X8 = (Dense(16), Reshape((4, 4, 1)), ConvTranspose2D(1, 4, 2, "same"))
_TO_6X6 = (Dense(36), Reshape((6, 6, 1)), Conv2D(1, 1))


@pytest.mark.parametrize(
    ("make", "field"),
    [
        # an image out, not one logit
        (lambda: ConvGANSpec("bad", _DCGAN.generator, ZOO["digits_conv_autoencoder"]), "discriminator"),
        (lambda: ConvGANSpec("bad", ZOO["digits_conv_autoencoder"], _DCGAN.discriminator), "generator.input_shape"),
        # 6×6 samples for the discriminator's 8×8×1 input
        (
            lambda: ConvGANSpec(
                "bad",
                CNNSpec("g", (4,), (Dense(36), Reshape((6, 6, 1)), Conv2D(1, 1)), "sigmoid"),
                _DCGAN.discriminator,
            ),
            "generator",
        ),
        (
            lambda: ConvGANSpec(
                "bad", CNNSpec("g", (4,), (_TO_8X8[0], BatchNorm(), *_TO_8X8[1:]), "sigmoid"), _DCGAN.discriminator
            ),
            "generator.layers",
        ),
        (lambda: ConvGANSpec("bad", CNNSpec("g", (4,), _TO_8X8, "linear"), _DCGAN.discriminator), None),
        (lambda: ConvGANSpec("bad", _DCGAN.generator, "digits_cnn"), "discriminator"),
    ],
)
def test_bad_conv_gan_names_the_field(make, field: str | None) -> None:
    if field is None:  # the valid one the others change
        assert make().data_shape == (8, 8, 1)
        return
    with pytest.raises(SpecError, match=field.replace(".", r"\.")):
        make()
