"""Classifiers that take [0, 1] images, built by name."""

from advlab.models.checkpoint import load_weights, read_state_dict
from advlab.models.madry_cnn import MadryCNN
from advlab.models.mnist_cnn import MnistCNN
from advlab.models.normalize import Normalize, NormalizedClassifier, input_std
from advlab.models.registry import available_models, create_model, register_model, register_provider

__all__ = [
    "MadryCNN",
    "MnistCNN",
    "Normalize",
    "NormalizedClassifier",
    "available_models",
    "create_model",
    "input_std",
    "load_weights",
    "read_state_dict",
    "register_model",
    "register_provider",
]
