"""Model registry: a name in the config → a classifier that takes [0, 1] images.

``create_model`` is what ``advlab/conf/model/*.yaml`` instantiate. Builders register themselves with
:func:`register_model`; providers (such as the torchvision one) answer for whole families of
names they know at run time.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from torch import nn

from advlab.errors import AdvlabError
from advlab.models.checkpoint import load_weights

ModelBuilder = Callable[..., nn.Module]

_BUILDERS: dict[str, ModelBuilder] = {}
# A provider answers ``provider(name)`` with a builder, or None when it does not know the name,
# and ``provider.names()`` with every name it knows (for error messages and listings).
_PROVIDERS: list[Any] = []


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator: make ``builder(**kwargs) -> nn.Module`` available as ``model.name=<name>``."""

    def decorate(builder: ModelBuilder) -> ModelBuilder:
        if name in _BUILDERS and _BUILDERS[name] is not builder:
            raise ValueError(f"model name {name!r} is registered twice")
        _BUILDERS[name] = builder
        return builder

    return decorate


def register_provider(provider: Any) -> Any:
    _PROVIDERS.append(provider)
    return provider


def available_models() -> list[str]:
    names = set(_BUILDERS)
    for provider in _PROVIDERS:
        names.update(provider.names())
    return sorted(names)


def _find_builder(name: str) -> ModelBuilder:
    if name in _BUILDERS:
        return _BUILDERS[name]
    for provider in _PROVIDERS:
        builder = provider(name)
        if builder is not None:
            return builder
    known = available_models()
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else f"known models: {_shorten(known)}"
    raise AdvlabError(f"unknown model {name!r}: {hint} (set model.name=<one of them>)")


def _shorten(names: Iterable[str], limit: int = 12) -> str:
    names = list(names)
    head = ", ".join(names[:limit])
    return head + (f", … ({len(names)} in all)" if len(names) > limit else "")


def create_model(name: str, checkpoint: str | Path | None = None, **kwargs: Any) -> nn.Module:
    """Build the classifier ``name`` and, if ``checkpoint`` is given, load its weights.

    ``checkpoint`` is a plain state dict or a Lightning checkpoint written by advlab; it is read
    with ``weights_only=True``. Extra keyword arguments go to the builder.
    """
    model = _find_builder(name)(**kwargs)
    if checkpoint:
        load_weights(model, checkpoint, model_name=name)
    return model


def _register_builtin() -> None:
    from advlab.models.madry_cnn import MadryCNN
    from advlab.models.mnist_cnn import MnistCNN
    from advlab.models.torchvision_models import TorchvisionProvider

    register_model("mnist_cnn")(MnistCNN)
    register_model("madry_cnn")(MadryCNN)
    register_provider(TorchvisionProvider())


_register_builtin()
