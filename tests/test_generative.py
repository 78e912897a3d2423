"""What is particular to the generative models: the VAE's encoder (mean and log-variance), its KL
term and negative ELBO by hand, the noise ε it takes as an input; the GAN's losses by hand, each
step updating its own network only, one full iteration against the judge, and the mode-coverage
metric its recipe is judged by. Counts, forward passes, gradients of every loss, agreement and the
optimizer step of each network are in the contract matrix (tests/contract/)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from spec import reference as ref
from spec.backend import Backend
from spec.cases import SMALL
from spec.data import digits, latent_noise, vae_batch, vae_inputs
from spec.data.mixture import RING, class_coverage, mode_coverage
from spec.errors import SpecError
from spec.layers import Act, Conv2D, ConvTranspose2D, Dense, Flatten, Reshape
from spec.losses import check_model_loss
from spec.models import ZOO, CNNSpec, ConvGANSpec, GANSpec, VAESpec
from spec.optimizers import OptimizerSpec
from spec.params import GAN_LOSS_TRAINS, count_params, init_params, param_specs, trainable_names, trained_names
from spec.recipes import RECIPES, EarlyStopping, RecipeSpec, recipe_split
from spec.report.plots import image_grid, plot_gan_samples
from spec.tolerances import max_scaled_error, tolerance
from spec.training import History
from tests.checks import (
    ADAM,
)

LOSS = "negative_elbo"
GAN_LOSSES = list(GAN_LOSS_TRAINS)
# The classic VAE, and the contract's small ones (the other reconstruction loss, a KL weight, smooth
# activations on the native 8×8 digits).
VAES = {spec.name: spec for spec in (ZOO["mnist_vae"], SMALL["digits_vae_mse"], SMALL["digits_vae_gelu"])}
CASES = [pytest.param(spec, id=name) for name, spec in VAES.items()]
BATCH = 16


def batch(spec: VAESpec, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    return vae_batch(digits((spec.input_size,)).x_test[:BATCH], spec.latent_size, seed)


def test_param_counts_follow_from_the_layer_sizes() -> None:
    # 784·256 + 256, 256·20 + 20 (mean and log-variance), 10·256 + 256, 256·784 + 784
    assert count_params(ZOO["mnist_vae"]).trainable == 200_960 + 5_140 + 2_816 + 201_488 == 410_404
    # 64 → 32 → 8 → 32 → 64
    assert count_params(ZOO["digits_autoencoder"]).trainable == 2_080 + 264 + 288 + 2_112 == 4_744


def test_the_encoder_output_layer_holds_mean_then_log_variance() -> None:
    spec = ZOO["mnist_vae"]
    infos = param_specs(spec)
    assert infos["encoder/dense_1/kernel"].shape == (256, 2 * spec.latent_size)
    params = init_params(spec, 0)
    x, _ = batch(spec)
    _, mean, log_variance = ref.vae_outputs(spec, params, x)
    hidden = np.maximum(x[:, :784].astype(np.float64) @ params["encoder/dense_0/kernel"], 0)
    np.testing.assert_allclose(mean, hidden @ params["encoder/dense_1/kernel"][:, :10], rtol=1e-12)
    np.testing.assert_allclose(log_variance, hidden @ params["encoder/dense_1/kernel"][:, 10:], rtol=1e-12)


def test_judge_kl_is_the_closed_form_and_matches_sampling() -> None:
    # one dimension: KL(N(μ, σ²) ‖ N(0, 1)) = ½(σ² + μ² − 1 − ln σ²)
    mu, sigma = 0.7, 1.8
    expected = 0.5 * (sigma**2 + mu**2 - 1 - math.log(sigma**2))
    assert ref.kl_divergence(np.array([[mu]]), np.array([[math.log(sigma**2)]]))[0] == pytest.approx(expected)
    # several dimensions: a Monte Carlo estimate of E_q[log q(z) − log p(z)]
    rng = np.random.default_rng(0)
    mean, log_variance = rng.normal(size=4), rng.normal(scale=0.5, size=4)
    std = np.exp(0.5 * log_variance)
    z = mean + std * rng.standard_normal((400_000, 4))
    log_q = -0.5 * (((z - mean) / std) ** 2 + log_variance + math.log(2 * math.pi)).sum(axis=1)
    log_p = -0.5 * (z**2 + math.log(2 * math.pi)).sum(axis=1)
    estimate = float((log_q - log_p).mean())
    assert ref.kl_divergence(mean[None], log_variance[None])[0] == pytest.approx(estimate, abs=0.01)


def test_judge_negative_elbo_sums_over_pixels_and_averages_over_the_batch() -> None:
    spec = VAES["digits_vae_mse"]
    params = init_params(spec, 0)
    x, images = batch(spec)
    logits, mean, log_variance = ref.vae_outputs(spec, params, x)
    per_example = ((ref.sigmoid(logits) - images) ** 2).sum(axis=1) + 0.5 * ref.kl_divergence(mean, log_variance)
    assert ref.loss(spec, params, x, images, LOSS) == pytest.approx(per_example.mean(), rel=1e-12)


def test_the_noise_is_an_input() -> None:
    spec = ZOO["mnist_vae"]
    params = init_params(spec, 0)
    images = digits((784,)).x_test[:4]
    quiet = ref.logits(spec, params, vae_inputs(images, np.zeros((4, 10), np.float32)))
    noisy = ref.logits(spec, params, vae_inputs(images, latent_noise(4, 10, 0, 0)))
    assert not np.allclose(quiet, noisy)  # ε moves z, hence the reconstruction
    # with ε = 0 the decoder sees the mean
    _, mean, _ = ref.vae_outputs(spec, params, vae_inputs(images, np.zeros((4, 10), np.float32)))
    decoder = init_params(spec, 0)
    hidden = np.maximum(mean @ decoder["decoder/dense_0/kernel"] + decoder["decoder/dense_0/bias"], 0)
    expected = hidden @ decoder["decoder/dense_1/kernel"] + decoder["decoder/dense_1/bias"]
    np.testing.assert_allclose(quiet, expected, rtol=1e-10, atol=1e-12)


def test_noise_streams_are_deterministic_and_distinct() -> None:
    np.testing.assert_array_equal(latent_noise(8, 3, 1, 5), latent_noise(8, 3, 1, 5))
    assert not np.array_equal(latent_noise(8, 3, 1, 5), latent_noise(8, 3, 1, 6))
    with pytest.raises(SpecError, match="vae inputs"):
        vae_inputs(np.zeros((4, 64)), np.zeros((3, 4)))


def test_bad_vae_spec_and_wrong_loss_name_the_field() -> None:
    with pytest.raises(SpecError, match="reconstruction"):
        VAESpec("bad", reconstruction="hinge")
    with pytest.raises(SpecError, match="latent_size"):
        VAESpec("bad", latent_size=0)
    with pytest.raises(SpecError, match="the losses of a vae model"):
        check_model_loss(ZOO["mnist_vae"], "binary_crossentropy")
    with pytest.raises(SpecError, match="negative_elbo"):
        check_model_loss(ZOO["digits_autoencoder"], LOSS)
    with pytest.raises(SpecError, match="x"):  # images without their ε
        ref.logits(ZOO["mnist_vae"], init_params(ZOO["mnist_vae"], 0), np.zeros((2, 784), np.float32))
    with pytest.raises(SpecError, match="early_stopping"):
        RecipeSpec(
            "bad", ZOO["mnist_vae"], RECIPES["mnist_vae_digits"].optimizer, LOSS, 32, 1,
            data="digits_reconstruction", early_stopping=EarlyStopping(patience=2),
            validation_fraction=0.1,
        )  # fmt: skip


@pytest.mark.parametrize("spec", CASES)
def test_the_encoders_mean_and_log_variance_match_the_judge(backend: Backend, spec: VAESpec) -> None:
    params = init_params(spec, 1)
    x, images = batch(spec)
    model = backend.build(spec, params)
    tol = tolerance("forward", "float32", backend.device())
    _, expected_mean, expected_log_variance = ref.vae_outputs(spec, params, x)
    mean, log_variance = backend.encode(model, images)  # the decoder's outputs: the contract matrix
    assert mean.shape == log_variance.shape == (BATCH, spec.latent_size)
    assert max_scaled_error(mean, expected_mean, tol) <= 1.0
    assert max_scaled_error(log_variance, expected_log_variance, tol) <= 1.0


@pytest.mark.parametrize("spec", CASES)
def test_the_backend_kl_term_is_the_judges(backend: Backend, spec: VAESpec) -> None:
    """The KL term alone: the loss with kl_weight 1 minus the loss with kl_weight 0, on the backend,
    equals the judge's mean KL of the backend's own mean and log-variance."""
    params = init_params(spec, 2)
    x, images = batch(spec)
    losses = []
    for weight in (1.0, 0.0):
        weighted = dataclasses.replace(spec, kl_weight=weight)
        losses.append(backend.loss_and_grads(backend.build(weighted, params), x, images, LOSS)[0])
    mean, log_variance = backend.encode(backend.build(spec, params), images)
    kl = float(ref.kl_divergence(mean, log_variance).mean())
    assert kl > 0
    # the difference of two float32 sums of ~|loss|: rounding relative to the loss, not to the KL
    assert losses[0] - losses[1] == pytest.approx(kl, abs=tolerance("forward").rtol * losses[0])


def test_reconstruction_recipe_trains_on_the_images_themselves() -> None:
    recipe = RECIPES["mnist_vae_digits"]
    split = recipe_split(recipe)
    np.testing.assert_array_equal(split.x_train, split.y_train)
    assert split.x_train.shape[1:] == (784,) and split.x_train.min() >= 0.0 and split.x_train.max() <= 1.0
    # the stated target beats reconstructing every test image as the mean training image, KL aside
    mean_image = split.x_train.mean(axis=0).astype(np.float64).clip(1e-7, 1 - 1e-7)
    t = split.x_test.astype(np.float64)
    mean_image_loss = -(t * np.log(mean_image) + (1 - t) * np.log1p(-mean_image)).sum(axis=1).mean()
    assert recipe.target_loss < 0.8 * mean_image_loss
    autoencoder = RECIPES["digits_autoencoder_mse"]
    split = recipe_split(autoencoder)
    mean_image_mse = ((split.x_test - split.x_train.mean(axis=0)) ** 2).mean()
    assert autoencoder.target_loss < 0.5 * mean_image_mse


# --- GAN ------------------------------------------------------------------------------------------

# A GAN small enough for the judge's coordinate-wise gradient: 57 tensors' scalars.
TINY_GAN = GANSpec("tiny_gan", 3, 2, (5,), (6,), bias_initializer="torch_default")
# And a convolutional one: z of 3 → Dense 2·2·2 → 2×2×2 → a 2×2 stride-2 transposed conv to a
# 4×4 image; a 2×2 stride-2 conv, leaky ReLU, one logit. 60 scalars.
TINY_CONV_GAN = ConvGANSpec(
    "tiny_conv_gan",
    CNNSpec("tiny_generator", (3,), (Dense(8), Act("tanh"), Reshape((2, 2, 2)), ConvTranspose2D(1, 2, 2)), "sigmoid",
            bias_initializer="torch_default"),
    CNNSpec("tiny_discriminator", (4, 4, 1), (Conv2D(2, 2, 2), Act("leaky_relu(0.2)"), Flatten(), Dense(1)), "sigmoid",
            bias_initializer="torch_default"),
)  # fmt: skip
SGD = OptimizerSpec("sgd", 0.1, momentum=0.0, nesterov=False)


def gan_batch(spec: GANSpec | ConvGANSpec, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Latents and a real batch (:meth:`spec.models.ConvGANSpec.example_batch`), or for the 4×4
    tiny_conv_gan digits at half resolution."""
    if spec.data_shape != (4, 4, 1):
        return spec.example_batch(BATCH, seed)
    return latent_noise(BATCH, spec.latent_size, seed, 0), digits((8, 8, 1)).x_test[:BATCH, ::2, ::2]


def test_gan_param_count_follows_from_the_layer_sizes() -> None:
    generator = 8 * 64 + 64 + 64 * 64 + 64 + 64 * 2 + 2
    discriminator = 2 * 64 + 64 + 64 * 64 + 64 + 64 * 1 + 1
    assert count_params(ZOO["ring_gan"]).trainable == generator + discriminator == 9_283


def test_each_gan_loss_trains_its_own_network() -> None:
    spec = ZOO["ring_gan"]
    d, g = trained_names(spec, "gan_discriminator"), trained_names(spec, "gan_generator")
    assert d and g and all(n.startswith("discriminator/") for n in d) and all(n.startswith("generator/") for n in g)
    assert sorted(d + g) == sorted(trainable_names(spec))


def test_judge_gan_losses_are_the_binary_cross_entropies() -> None:
    spec = TINY_GAN
    params = init_params(spec, 0)
    z, real = gan_batch(spec)
    d_real = 1 / (1 + np.exp(-ref.discriminator_logits(spec, params, real)))
    d_fake = 1 / (1 + np.exp(-ref.discriminator_logits(spec, params, ref.forward(spec, params, z))))
    expected_d = -np.log(d_real).mean() - np.log(1 - d_fake).mean()
    assert ref.loss(spec, params, z, real, "gan_discriminator") == pytest.approx(expected_d, rel=1e-12)
    assert ref.loss(spec, params, z, real, "gan_generator") == pytest.approx(-np.log(d_fake).mean(), rel=1e-12)


def test_mode_coverage_counts_the_modes_a_sampler_reaches() -> None:
    points, _ = RING.sample(2048, 3)
    full = mode_coverage(points, RING)
    assert full.modes_covered == RING.modes and full.high_quality > 0.99  # 3σ holds 98.9% in 2-D
    one = mode_coverage(np.repeat(RING.centres[:1], 100, axis=0), RING)
    assert one.modes_covered == 1 and one.per_mode[0] == 100
    assert mode_coverage(np.zeros((50, 2)), RING).modes_covered == 0  # the ring's centre is no mode
    half = np.concatenate([points[:1024], np.full((1024, 2), 10.0)])  # half the samples far off
    assert mode_coverage(half, RING).high_quality == pytest.approx(0.5, abs=0.01)
    with pytest.raises(SpecError, match="samples"):
        mode_coverage(np.full((4, 2), np.nan), RING)


def test_generated_digits_are_drawn_as_a_grid_per_backend(tmp_path) -> None:
    split = digits((64,))
    histories = []
    for backend_name in ("torch", "jax"):  # no framework runs here: histories as fit leaves them
        history = History(backend_name, "digits_gan_adam", compiled=True)
        history.samples = split.x_test[:100]
        history.coverage = class_coverage(history.samples, split)
        histories.append(history)
    png = plot_gan_samples({"digits_gan_adam": histories}, RING, tmp_path / "samples.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5_000


def test_class_coverage_counts_the_digit_classes_a_generator_draws() -> None:
    split = digits((64,))
    real = class_coverage(split.x_test, split)
    assert real.modes_covered == 10 and real.high_quality == pytest.approx(0.95, abs=0.01)
    one_class = split.x_train[split.y_train == 3][:1].repeat(500, axis=0)
    assert class_coverage(one_class, split).modes_covered == 1
    noise = np.random.default_rng(0).uniform(size=(500, 64))
    assert class_coverage(noise, split).modes_covered == 0  # nothing like a real digit
    with pytest.raises(SpecError, match="samples"):
        class_coverage(np.zeros((4, 63)), split)


def test_image_grid_tiles_square_images_in_order() -> None:
    images = np.arange(4 * 9, dtype=np.float64).reshape(4, 9)  # four 3×3 images
    grid = image_grid(images, side=2)
    assert grid.shape == (7, 7)
    np.testing.assert_array_equal(grid[4:7, 0:3], images[2].reshape(3, 3))  # second row, first column
    assert np.isnan(grid[3]).all() and np.isnan(grid[:, 3]).all()  # the gaps


@pytest.mark.parametrize("mode", ["eager", "compiled"])
# the DCGAN's first compiled and eager steps take 4–26 s per backend: the same check on the MLP GAN
# runs in `make test`, on the DCGAN in the exhaustive tier
@pytest.mark.parametrize("name", ["ring_gan", pytest.param("digits_dcgan", marks=pytest.mark.exhaustive)])
def test_each_gan_step_leaves_the_other_network_untouched(backend: Backend, name: str, mode: str) -> None:
    spec = ZOO[name]
    params = init_params(spec, 5)
    model = backend.build(spec, params)
    optimizer = backend.make_optimizer(model, ADAM)
    z, real = gan_batch(spec)
    before = backend.export_params(model)
    for loss, held in (("gan_discriminator", "generator/"), ("gan_generator", "discriminator/")):
        backend.train_step(model, optimizer, z, real, loss, compiled=mode == "compiled")
        after = backend.export_params(model)
        for name in params:
            if name.startswith(held):  # bit-identical: not a tiny update, none
                np.testing.assert_array_equal(after[name], before[name], err_msg=f"{loss} moved {name}")
            elif name in trained_names(spec, loss):
                assert not np.array_equal(after[name], before[name]), f"{loss} did not move {name}"
        before = after


@pytest.mark.parametrize("spec", [TINY_GAN, TINY_CONV_GAN], ids=["mlp", "conv"])
def test_one_gan_iteration_matches_the_judge(backend: Backend, spec: GANSpec | ConvGANSpec) -> None:
    """A discriminator step then a generator step (the second through the updated discriminator),
    from identical weights and noise: the backend lands where the judge's float64 gradients and
    update rule do."""
    params = init_params(spec, 6)
    z, real = gan_batch(spec, seed=1)
    model = backend.build(spec, params)
    optimizer = backend.make_optimizer(model, SGD)
    expected = {n: v.astype(np.float64) for n, v in params.items()}
    for loss in ("gan_discriminator", "gan_generator"):
        backend.train_step(model, optimizer, z, real, loss)
        names = trained_names(spec, loss)
        grads = ref.numerical_gradient(spec, expected, z, real, loss, names)
        trained = {n: expected[n] for n in names}
        expected |= ref.ReferenceOptimizer(SGD, trained).step(trained, grads)
    got = backend.export_params(model)
    tol = tolerance("optimizer_step", "float32", backend.device())
    for name in params:
        assert max_scaled_error(got[name], expected[name], tol) <= 1.0, name
