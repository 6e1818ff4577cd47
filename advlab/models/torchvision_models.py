"""Every torchvision ImageNet classifier, by name, with its normalization inside.

``model.weights`` takes a torchvision weights enum name (``DEFAULT``, ``IMAGENET1K_V1``, …), a
path to a local state-dict file, or ``None`` for random initialisation. Enum weights go
through torchvision's cache folder (``torch.hub.get_dir()/checkpoints``): a cached file loads
without network; a missing one is downloaded, and with no network the error names the folder
and the file to place there. Every file is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advlab.errors import AdvlabError
from advlab.models.checkpoint import load_weights
from advlab.models.normalize import NormalizedClassifier

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def classification_models() -> list[str]:
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def weights_enum(name: str) -> Any:
    from torchvision.models import get_model_weights

    return get_model_weights(name)


def resolve_weights(name: str, weights: str) -> Any:
    """The enum member ``weights`` of model ``name`` (``DEFAULT`` included)."""
    enum = weights_enum(name)
    key = weights.split(".")[-1]  # accept "ResNet101_Weights.IMAGENET1K_V2" too
    if key not in enum.__members__:
        raise AdvlabError(
            f"unknown weights {weights!r} for {name}: use one of {', '.join(enum.__members__)}, "
            "a path to a state-dict file, or null for random initialisation"
        )
    return enum[key]


def weights_cache_file(weights: Any) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def _cached_state_dict(name: str, weights: Any) -> dict[str, torch.Tensor]:
    path = weights_cache_file(weights)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(weights.url, str(path), progress=True)
        except Exception as exc:
            raise AdvlabError(
                f"cannot fetch {name} weights {weights} ({type(exc).__name__}, no network?): place "
                f"{path.name} (from {weights.url}) in {path.parent}, or set model.weights to a local "
                "state-dict file"
            ) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise AdvlabError(
            f"cannot read cached weights {path} ({type(exc).__name__}): delete the file and retry, "
            "or set model.weights to a local state-dict file"
        ) from None


def _build_kwargs(name: str, weights: Any | None) -> dict[str, Any]:
    """Constructor arguments that torchvision sets itself when it loads these weights."""
    if weights is None:
        return {}
    kwargs: dict[str, Any] = {"num_classes": len(weights.meta["categories"])}
    if name.startswith("vit_"):
        kwargs["image_size"] = weights.meta["min_size"][0]
    if name in ("inception_v3", "googlenet"):
        kwargs.update(transform_input=True, aux_logits=True, init_weights=False)
    return kwargs


def build_torchvision(name: str, weights: str | None = None, **kwargs: Any) -> nn.Module:
    """A :class:`NormalizedClassifier` around torchvision's ``name`` that takes [0, 1] images.

    Attributes set on the result: ``class_names`` (ImageNet categories from the weights'
    metadata, when the head has 1000 outputs), ``weights`` (the enum member or file used) and
    ``transforms`` (the weights' preprocessing, ``None`` for random init and local files:
    the default weights' preprocessing then applies).
    """
    from torchvision.models import get_model

    enum_member = None
    local_file = None
    if weights is not None and str(weights).strip():
        text = str(weights)
        if Path(text).expanduser().suffix in (".pt", ".pth", ".ckpt", ".bin") or "/" in text or Path(text).expanduser().exists():
            local_file = Path(text).expanduser()
        else:
            enum_member = resolve_weights(name, text)
    net = get_model(name, weights=None, **{**_build_kwargs(name, enum_member), **kwargs})
    if enum_member is not None:
        net.load_state_dict(_cached_state_dict(name, enum_member))
        if name in ("inception_v3", "googlenet"):  # torchvision drops the auxiliary heads after loading
            net.aux_logits = False
            for aux in ("AuxLogits", "aux1", "aux2"):
                if hasattr(net, aux):
                    setattr(net, aux, None)
    elif local_file is not None:
        load_weights(net, local_file, model_name=name)

    default = weights_enum(name).DEFAULT
    source = enum_member or default
    mean = getattr(source.transforms(), "mean", IMAGENET_MEAN)
    std = getattr(source.transforms(), "std", IMAGENET_STD)
    model = NormalizedClassifier(net, mean, std)
    categories = source.meta.get("categories") or []
    out_features = _head_size(net)
    model.class_names = list(categories) if out_features in (None, len(categories)) else None
    model.weights = str(enum_member or local_file or "random")
    model.transforms = source.transforms()
    return model


def _head_size(net: nn.Module) -> int | None:
    last = None
    for module in net.modules():
        if isinstance(module, nn.Linear):
            last = module.out_features
    return last


class TorchvisionProvider:
    """Registry provider: answers for every torchvision classification model name."""

    def names(self) -> list[str]:
        return classification_models()

    def __call__(self, name: str):
        if name in classification_models():
            return partial(build_torchvision, name)
        return None
