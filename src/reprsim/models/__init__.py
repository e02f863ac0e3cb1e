"""Small model zoo (MLP, CNN, ResNet, ViT, GPT) and adapters for user models.

Main entry points: :func:`build`, :func:`available`, :func:`layers`, :func:`default_layer`,
:func:`input_normalization`. Adapters for user models live in :mod:`reprsim.models.adapters`.
"""

from reprsim.models.adapters import NamedLayers, load_hf_model
from reprsim.models.cnn import CNN
from reprsim.models.common import Normalize
from reprsim.models.gpt import GPT, GPT_PRESETS, build_gpt
from reprsim.models.mlp import MLP
from reprsim.models.resnet import ResNet
from reprsim.models.vit import VIT_PRESETS, ViT
from reprsim.models.zoo import (
    PENULTIMATE,
    available,
    build,
    default_layer,
    input_normalization,
    layers,
    resolve_layer,
)

__all__ = [
    "CNN",
    "GPT",
    "GPT_PRESETS",
    "MLP",
    "NamedLayers",
    "Normalize",
    "PENULTIMATE",
    "ResNet",
    "VIT_PRESETS",
    "ViT",
    "available",
    "build",
    "build_gpt",
    "default_layer",
    "input_normalization",
    "layers",
    "load_hf_model",
    "resolve_layer",
]
