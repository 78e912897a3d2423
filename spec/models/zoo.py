"""The zoo: the named classic models, each as its teaching text prints it."""

from __future__ import annotations

from spec.errors import SpecError
from spec.layers import Act, Conv2D, ConvTranspose2D, Dense, Flatten, Pool2D, Reshape
from spec.models.base import ModelSpec
from spec.models.dense import MLPSpec
from spec.models.generative import ConvGANSpec, GANSpec, VAESpec
from spec.models.sequence import RNNSpec
from spec.models.transformer import TransformerSpec
from spec.models.vision import SAME_3X3, CNNSpec, ResNetSpec


def _relu() -> Act:
    return Act("relu")


def _cnn_64(name: str, outputs: int, output_activation: str) -> CNNSpec:
    layers = (
        Conv2D(32, 3), _relu(), Pool2D("max", 2),
        Conv2D(64, 3), _relu(), Pool2D("max", 2),
        Flatten(), Dense(128), _relu(), Dense(outputs),
    )  # fmt: skip
    return CNNSpec(name, (64, 64, 3), layers, output_activation)


VISION_ZOO: tuple[ModelSpec, ...] = (
    # The Keras MNIST convnet: two valid 3×3 convs with 2×2 max-pooling, then Dense 10; 34,826 parameters.
    CNNSpec(
        "mnist_cnn",
        (28, 28, 1),
        (Conv2D(32, 3), _relu(), Pool2D("max", 2), Conv2D(64, 3), _relu(), Pool2D("max", 2), Flatten(), Dense(10)),
        "softmax",
    ),
    # The PyTorch CIFAR-10 "SimpleCNN": 3×3 convs with padding 1, torch's default init; 1,070,794 parameters.
    CNNSpec(
        "cifar_simple_cnn",
        (32, 32, 3),
        (
            Conv2D(32, 3, padding=SAME_3X3),
            _relu(),
            Pool2D("max", 2),
            Conv2D(64, 3, padding=SAME_3X3),
            _relu(),
            Pool2D("max", 2),
            Flatten(),
            Dense(256),
            _relu(),
            Dense(10),
        ),
        "softmax",
        kernel_initializer="torch_default",
        bias_initializer="torch_default",
    ),
    # The Keras CNN for 64×64 RGB images (Chollet's convnet layout): conv32 3×3 relu → max-pool 2 →
    # conv64 3×3 relu → max-pool 2 → Dense 128 relu → Dense 10 softmax; 1,626,442 parameters.
    _cnn_64("cnn_64", 10, "softmax"),
    # The same convnet as the classic binary classifier (cats vs dogs): one sigmoid unit.
    _cnn_64("cnn_64_binary", 1, "sigmoid"),
    # A small CNN for the embedded 8×8 digits, trained to convergence by the digits_cnn recipe.
    CNNSpec(
        "digits_cnn",
        (8, 8, 1),
        (
            Conv2D(16, 3, padding="same"),
            _relu(),
            Conv2D(32, 3, padding="same"),
            _relu(),
            Pool2D("max", 2),
            Flatten(),
            Dense(64),
            _relu(),
            Dense(10),
        ),
        "softmax",
        kernel_initializer="he_uniform",
    ),
    # ResNet-18 for 32×32 images with the CIFAR stem: 11,173,962 parameters (plus 9,600 running statistics).
    ResNetSpec("resnet18_cifar", (32, 32, 3), 10, "cifar"),
    # torchvision's resnet18 (ImageNet stem) with a 10-class head, as fine-tuned on CIFAR-10.
    ResNetSpec("resnet18_imagenet_stem", (32, 32, 3), 10, "imagenet"),
    # ResNet-18 with 1/8 of the width, for training runs on a CPU (digits upsampled to 32×32).
    ResNetSpec("resnet18_narrow", (32, 32, 1), 10, "cifar", widths=(8, 16, 32, 64)),
    # torchvision's resnet50 (Bottleneck blocks, the stride on their 3×3 conv: 25,557,032 parameters
    # with 1,000 classes) fine-tuned as the texts do: the backbone frozen, its BatchNorms in inference
    # mode, a new 5-class head; on 32×32 images here.
    ResNetSpec(
        "resnet50_finetune",
        (32, 32, 3),
        5,
        "imagenet",
        (3, 4, 6, 3),
        block="bottleneck",
        frozen=("stem", "stage_0", "stage_1", "stage_2", "stage_3"),
    ),
)


def _torch_forecaster(name: str, cell: str) -> RNNSpec:
    """One feature per step, 30 steps, 2 layers of 50 units, one output; torch's default init."""
    torch_init = "torch_default"
    return RNNSpec(
        name, cell, 1, 50, 30, 1, "linear", num_layers=2,
        kernel_initializer=torch_init, recurrent_initializer=torch_init, bias_initializer=torch_init,
    )  # fmt: skip


def _conv_autoencoder() -> CNNSpec:
    # A convolutional autoencoder for the 8×8 digits (the layout of Keras's image-denoising example,
    # sized down): conv16 3×3 relu → maxpool 2 → conv8 relu → maxpool 2, a 2×2×8 code; then two 3×3
    # stride-2 transposed convs (8, 16 channels, relu) back to 8×8 and a 3×3 conv to one sigmoid
    # channel. 'same' at stride 2 crops the odd pixel off the bottom/right, which torch must do by
    # hand. Biases start non-zero, as in digits_autoencoder (ReLU kinks).
    layers = (
        Conv2D(16, 3, padding="same"), _relu(), Pool2D("max", 2),
        Conv2D(8, 3, padding="same"), _relu(), Pool2D("max", 2),
        ConvTranspose2D(8, 3, 2, "same"), _relu(),
        ConvTranspose2D(16, 3, 2, "same"), _relu(),
        Conv2D(1, 3, padding="same"),
    )  # fmt: skip
    return CNNSpec("digits_conv_autoencoder", (8, 8, 1), layers, "sigmoid", bias_initializer="torch_default")


def _digits_dcgan() -> ConvGANSpec:
    # A DCGAN-style GAN for the 8×8 digits (Radford et al.'s layout, sized down, without BatchNorm):
    # the generator maps z of 32 through Dense 4·4·64 relu, a reshape to 4×4×64, a 4×4 stride-2
    # transposed conv (32, relu; torch's 4/2/1) to 8×8 and a 3×3 one to a sigmoid channel; the
    # discriminator reads it with two 4×4 stride-2 convs (32, 64 channels, leaky ReLU 0.2) to 2×2×64,
    # flattened into one logit. Biases start non-zero (torch's init): with zeros, a window over the
    # blank corner of a real digit puts its unit exactly on leaky ReLU's kink (as in digits_autoencoder).
    leaky = Act("leaky_relu(0.2)")
    generator = (
        Dense(4 * 4 * 64), _relu(), Reshape((4, 4, 64)),
        ConvTranspose2D(32, 4, 2, "same"), _relu(),
        ConvTranspose2D(1, 3, 1, "same"),
    )  # fmt: skip
    discriminator = (Conv2D(32, 4, 2, "same"), leaky, Conv2D(64, 4, 2, "same"), leaky, Flatten(), Dense(1))
    return ConvGANSpec(
        "digits_dcgan",
        CNNSpec("digits_dcgan_generator", (32,), generator, "sigmoid", bias_initializer="torch_default"),
        CNNSpec("digits_dcgan_discriminator", (8, 8, 1), discriminator, "sigmoid", bias_initializer="torch_default"),
    )


SEQUENCE_ZOO: dict[str, RNNSpec] = {
    spec.name: spec
    for spec in (
        # The classic Keras SimpleRNN example: 100 steps of one feature, SimpleRNN(50, tanh), Dense(1,
        # sigmoid); 2,651 parameters.
        RNNSpec("simple_rnn_classifier", "simple_rnn", 1, 50, 100, 1, "sigmoid"),
        # The classic PyTorch time-series LSTM: 2 stacked layers of 50 units, Linear on the last step;
        # torch's init. And the same forecaster with GRU layers (torch's and Keras's default
        # reset-after formula).
        _torch_forecaster("lstm_forecaster", "lstm"),
        _torch_forecaster("gru_forecaster", "gru"),
        # The texts' time-series case study: an LSTM(50) returning every step of 30, additive attention
        # pooling over the steps (a tanh layer of 32, one score per step), Dense(1).
        RNNSpec("lstm_attention_forecaster", "lstm", 1, 50, 30, 1, "linear", head="attention"),
        # Keras's original GRU formula (reset before the recurrent matmul), on the adding problem.
        RNNSpec("gru_reset_before", "gru", 2, 32, 50, 1, "linear", gru_reset="before"),
        # A bidirectional LSTM tagging every step of the sequence (return-sequences mode).
        RNNSpec("bilstm_tagger", "lstm", 2, 16, 20, 1, "sigmoid", bidirectional=True, head="sequence"),
        # A bidirectional 2-layer GRU reading the last states of both directions.
        RNNSpec("bigru_classifier", "gru", 2, 16, 20, 1, "sigmoid", num_layers=2, bidirectional=True),
    )
}


TRANSFORMER_ZOO: dict[str, TransformerSpec] = {
    spec.name: spec
    for spec in (
        # The classic encoder classifier (torch's defaults: post-norm, ReLU, LayerNorm ε 1e-5,
        # sinusoidal positions, embeddings scaled by √d_model), mean-pooled over the non-padding
        # tokens, on the majority-token task. Embeddings start small, U(±0.05) (Keras's init): with
        # torch's N(0, 1) times √d_model, first-layer attention scores start near 30, the softmax
        # near one-hot, and the loss so sensitive that float32 rounding differences between
        # frameworks grow tenfold per step (measured: 1e-7 → 2e-3 in six steps).
        TransformerSpec("transformer_classifier", 9, 24, 32, 4, 64, 2, 8, "softmax", embedding_initializer="uniform"),
        # The modern variant (pre-norm, GELU with the tanh approximation, learned positions, Flax's
        # LayerNorm ε 1e-6) tagging every position: does its token occur elsewhere in the sequence?
        TransformerSpec(
            "transformer_tagger", 33, 24, 32, 4, 64, 2, 1, "sigmoid",
            activation="gelu(tanh)", positional="learned", norm="pre", layer_norm_epsilon=1e-6, pooling="none",
        ),
        # Keras's MultiHeadAttention(num_heads=8, key_dim=64) on 64 features — heads as wide as the
        # features, not d_model / heads (132,672 attention parameters) — in one post-norm encoder
        # layer on the majority-token task. torch's nn.MultiheadAttention cannot build it.
        TransformerSpec(
            "transformer_keras_heads", 9, 24, 64, 8, 128, 1, 8, "softmax",
            key_dim=64, embedding_initializer="uniform",
        ),
    )
}  # fmt: skip


ZOO: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        # The classic MNIST net (Chollet, "Deep Learning with Python", ch. 2): Dense 512 relu → Dense 10
        # softmax on flattened 28×28 images; 407,050 parameters.
        MLPSpec(
            name="mnist_mlp",
            input_size=784,
            hidden_sizes=(512,),
            output_size=10,
            activations=("relu",),
            output_activation="softmax",
        ),
        # The Keras MLP trained with plain SGD and binary cross-entropy on multi-label targets: Dense
        # 128 relu → Dense 10 sigmoid on flattened 28×28 images (one independent unit per label);
        # 101,770 parameters.
        MLPSpec(
            name="mnist_mlp_multilabel",
            input_size=784,
            hidden_sizes=(128,),
            output_size=10,
            activations=("relu",),
            output_activation="sigmoid",
        ),
        # A deeper net for the embedded 8×8 digits: 64 → 64 → 32 → 10.
        MLPSpec(
            name="digits_mlp",
            input_size=64,
            hidden_sizes=(64, 32),
            output_size=10,
            activations=("relu", "relu"),
            output_activation="softmax",
        ),
        # The same depth with the activations whose defaults differ most between frameworks.
        MLPSpec(
            name="digits_mlp_smooth",
            input_size=64,
            hidden_sizes=(64, 32),
            output_size=10,
            activations=("gelu(exact)", "elu(1.0)"),
            output_activation="softmax",
            kernel_initializer="he_normal",
        ),
        # A dense autoencoder for the 8×8 digits: 64 → 32 → 8 (the code) → 32 → 64 sigmoid pixels,
        # trained to reconstruct its input (the digits_autoencoder recipe). Biases start non-zero
        # (torch's init): with zeros, an image whose 8 code units are all negative puts the next
        # layer's inputs exactly on ReLU's kink, where finite differences see half the slope that
        # every framework's ReLU'(0) = 0 gives (seen at init on 1 image in 64).
        MLPSpec(
            name="digits_autoencoder",
            input_size=64,
            hidden_sizes=(32, 8, 32),
            output_size=64,
            activations="relu",
            output_activation="sigmoid",
            bias_initializer="torch_default",
        ),
        _conv_autoencoder(),
        # The classic VAE on flattened 28×28 images: 784 → 256 relu → mean and log-variance of a
        # 10-dimensional latent; 10 → 256 relu → 784 sigmoid; binary cross-entropy summed over the
        # pixels plus the KL term.
        VAESpec("mnist_vae"),
        # An MLP GAN for the 2-D ring of Gaussians (spec.data.mixture): z of 8 → 64 → 64 relu → a point;
        # the discriminator 2 → 64 → 64 leaky ReLU(0.2) → one logit.
        GANSpec("ring_gan", 8, 2, (64, 64), (64, 64)),
        # An MLP GAN for the 8×8 digits: z of 32 → 256 relu → 64 sigmoid pixels; 64 → 256 leaky ReLU → 1.
        GANSpec("digits_gan", 32, 64, (256,), (256,), generator_output="sigmoid"),
        _digits_dcgan(),
        *VISION_ZOO,
        *SEQUENCE_ZOO.values(),
        *TRANSFORMER_ZOO.values(),
    )
}


def get_model(name: str) -> ModelSpec:
    """The zoo model called ``name``."""
    try:
        return ZOO[name]
    except KeyError:
        raise SpecError("model", name, sorted(ZOO)) from None
