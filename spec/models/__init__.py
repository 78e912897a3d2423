"""Framework-neutral model specs, one module per family, and the zoo of named classic models.

A spec holds every choice that the frameworks default differently, so that no backend ever relies on
a framework default. Every kind derives from :class:`ModelSpec` (:mod:`spec.models.base`).
"""

from spec.models.base import FROZEN_BATCHNORM, ModelSpec, is_frozen, is_within
from spec.models.dense import MLPSpec
from spec.models.generative import GAN_SPECS, GENERATOR_OUTPUTS, RECONSTRUCTIONS, ConvGANSpec, GANSpec, VAESpec
from spec.models.sequence import ATTENTION_SCORES, GATES, GRU_RESET, RNN_CELLS, SEQUENCE_HEADS, RNNSpec
from spec.models.transformer import (
    FFN_ACTIVATIONS,
    NORM_PLACEMENTS,
    POOLINGS,
    POSITIONAL_ENCODINGS,
    TransformerSpec,
)
from spec.models.vision import RESNET_STEMS, SAME_3X3, CNNSpec, ResidualBlock, ResNetSpec
from spec.models.zoo import SEQUENCE_ZOO, TRANSFORMER_ZOO, VISION_ZOO, ZOO, get_model

__all__ = [
    "ATTENTION_SCORES",
    "FFN_ACTIVATIONS",
    "FROZEN_BATCHNORM",
    "GAN_SPECS",
    "GATES",
    "GENERATOR_OUTPUTS",
    "GRU_RESET",
    "NORM_PLACEMENTS",
    "POOLINGS",
    "POSITIONAL_ENCODINGS",
    "RECONSTRUCTIONS",
    "RESNET_STEMS",
    "RNN_CELLS",
    "SAME_3X3",
    "SEQUENCE_HEADS",
    "SEQUENCE_ZOO",
    "TRANSFORMER_ZOO",
    "VISION_ZOO",
    "ZOO",
    "CNNSpec",
    "ConvGANSpec",
    "GANSpec",
    "MLPSpec",
    "ModelSpec",
    "RNNSpec",
    "ResNetSpec",
    "ResidualBlock",
    "TransformerSpec",
    "VAESpec",
    "get_model",
    "is_frozen",
    "is_within",
]
