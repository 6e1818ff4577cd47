"""Every torchvision ImageNet classifier, by name, with its normalization inside.

``model.weights`` takes

* a torchvision weights enum name (``DEFAULT``, ``IMAGENET1K_V1``, ``ResNet101_Weights.IMAGENET1K_V2``);
* a path to a local state-dict file: a bare torchvision network (``net.state_dict()``) or an advlab
  classifier (``model.state_dict()``, keys ``net.*`` and ``normalize.*``). A file that keeps the
  name torchvision gave it (``resnet101-63fe2227.pth``) stands for those weights: the model is
  built exactly as torchvision builds it for them (some architectures change shape with their
  weights: Inception's input transform, ViT's image size, …);
* ``None`` (``null``) for random initialisation.

torchvision's own loader unpickles downloads with ``weights_only=False``; advlab fetches them with
``torch.hub.load_state_dict_from_url(check_hash=True, weights_only=True)`` into torchvision's cache
folder (``torch.hub.get_dir()/checkpoints``), builds the network those weights fit (the few
constructor arguments torchvision derives from the weights: :func:`_architecture_for`) and loads
them. With no network, one line names the folder and the file to place there.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advlab.errors import AdvlabError
from advlab.models.checkpoint import load_weights, read_state_dict
from advlab.models.normalize import NormalizedClassifier

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHT_FILE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
# Spellings of "no weights" that reach us from YAML or the command line (null, quoted or not).
RANDOM_INIT = ("", "null")


def classification_models() -> list[str]:
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def weights_enum(name: str) -> Any:
    from torchvision.models import get_model_weights

    try:
        return get_model_weights(name)
    except (ValueError, KeyError):
        raise AdvlabError(
            f"model {name!r} has no torchvision weights: use a torchvision classification model "
            "(torchvision.models.list_models()) or data.preprocess=to_tensor"
        ) from None


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


@dataclass(frozen=True)
class WeightsSource:
    """What ``model.weights`` means for model ``name``.

    ``member``: the torchvision weights the network is built for (``None``: the plain
    architecture); ``file``: a local state-dict file that replaces the download.
    """

    name: str
    member: Any | None = None
    file: Path | None = None

    @property
    def preset(self) -> Any:
        """The weights whose preprocessing, normalization and class names apply: ``member``,
        else the architecture's ``DEFAULT`` (random init and foreign files are ImageNet models too)."""
        return self.member if self.member is not None else weights_enum(self.name).DEFAULT

    def describe(self) -> str:
        if self.file is not None:
            return str(self.file)
        return str(self.member) if self.member is not None else "random"


def _looks_like_path(text: str) -> bool:
    path = Path(text).expanduser()
    return path.suffix in WEIGHT_FILE_SUFFIXES or "/" in text or "\\" in text or path.exists()


def weights_source(name: str, weights: str | None) -> WeightsSource:
    """Parse ``model.weights`` for model ``name`` (no file is read here)."""
    text = "" if weights is None else str(weights).strip()
    if text.lower() in RANDOM_INIT:
        return WeightsSource(name)
    if not _looks_like_path(text):
        return WeightsSource(name, member=resolve_weights(name, text))
    path = Path(text).expanduser()
    if not path.is_file():
        raise AdvlabError(
            f"weights file {str(path)!r} does not exist: give a state-dict file, a weights name such "
            f"as DEFAULT, or null for random initialisation"
        )
    # A file named as torchvision names its download is those weights, placed by hand.
    same_name = [m for m in weights_enum(name) if Path(m.url).name == path.name]
    return WeightsSource(name, member=same_name[0] if same_name else None, file=path)


def weights_cache_file(member: Any) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(member.url).name


def fetch_state_dict(name: str, member: Any) -> tuple[dict[str, torch.Tensor], Path]:
    """``member``'s state dict from torchvision's cache folder, downloaded when missing; both
    hash-checked (the ``<name>-<sha256 prefix>.pth`` convention) and read with
    ``weights_only=True`` by ``torch.hub.load_state_dict_from_url``."""
    path = weights_cache_file(member)
    cached = path.is_file()
    try:
        state = torch.hub.load_state_dict_from_url(
            member.url, map_location="cpu", progress=True, check_hash=True, weights_only=True
        )
    except Exception as exc:  # no network, proxy, full disk, hash mismatch, unsafe pickle …
        if cached:
            raise AdvlabError(
                f"cannot read cached weights {path} ({type(exc).__name__}): delete the file and retry, "
                "or set model.weights to a local state-dict file"
            ) from None
        raise AdvlabError(
            f"cannot fetch {name} weights {member} ({type(exc).__name__}, no network?): place "
            f"{path.name} (from {member.url}) in {path.parent}, or set model.weights to a local "
            "state-dict file"
        ) from None
    return state, path


def _architecture_for(name: str, member: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The constructor arguments torchvision's builder sets from ``member`` before loading it
    (torchvision/models/*.py: the class count everywhere; Inception/GoogLeNet's input transform
    and auxiliary heads, ViT's and MaxViT's image size): the network the weights fit."""
    settings = dict(kwargs)
    fixed: dict[str, Any] = {"num_classes": len(member.meta["categories"])}
    if name in ("googlenet", "inception_v3"):
        settings.setdefault("transform_input", True)
        fixed.update(aux_logits=True, init_weights=False)
    elif name.startswith("vit_"):
        fixed["image_size"] = member.meta["min_size"][0]
    elif name.startswith("maxvit"):
        fixed["input_size"] = member.meta["min_size"]
    for key, value in fixed.items():
        if key in kwargs and kwargs[key] != value:
            raise AdvlabError(
                f"cannot build {name} with weights {member}: {key}={kwargs[key]} but the weights need {value}"
            )
        settings[key] = value
    return settings


def _build_for_weights(name: str, source: WeightsSource, **kwargs: Any) -> nn.Module:
    from torchvision.models import get_model

    if source.file is not None:
        state = read_state_dict(source.file)
        origin = str(source.file)
    else:
        state, path = fetch_state_dict(name, source.member)
        origin = str(path)
    net = get_model(name, weights=None, **_architecture_for(name, source.member, kwargs))
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:  # load_state_dict's multi-line key report
        first = " ".join(str(exc).split())[:240]
        raise AdvlabError(f"weights {origin!r} do not fit {name} ({first}): pass weights made for {name}") from None
    # the auxiliary heads were built only to take the weights; drop them unless asked for
    if name == "googlenet" and not kwargs.get("aux_logits", False):
        net.aux_logits, net.aux1, net.aux2 = False, None, None
    if name == "inception_v3" and not kwargs.get("aux_logits", True):
        net.aux_logits, net.AuxLogits = False, None
    return net


def _is_advlab_classifier_state(path: Path) -> bool:
    keys = read_state_dict(path).keys()
    return any(k.startswith("net.") for k in keys) and all(k.startswith(("net.", "normalize.")) for k in keys)


def preprocessing(name: str, weights: str | None) -> Any:
    """The preprocessing preset of these weights (resize, centre crop, mean, std), without
    building the model: the data module needs it before the model exists."""
    return weights_source(name, weights).preset.transforms()


def build_torchvision(name: str, weights: str | None = None, **kwargs: Any) -> nn.Module:
    """A :class:`NormalizedClassifier` around torchvision's ``name`` that takes [0, 1] images.

    Attributes set on the result: ``class_names`` (ImageNet categories from the weights'
    metadata when the head has as many outputs, else ``None``), ``weights`` (what was loaded,
    as text) and ``transforms`` (the weights' preprocessing; the architecture's ``DEFAULT``
    preprocessing for random init and foreign files).
    """
    from torchvision.models import get_model

    source = weights_source(name, weights)
    whole_model_file = None
    if source.member is not None:
        net = _build_for_weights(name, source, **kwargs)
    else:
        net = get_model(name, weights=None, **kwargs)
        if source.file is not None:
            if _is_advlab_classifier_state(source.file):
                whole_model_file = source.file
            else:
                load_weights(net, source.file, model_name=name)

    preset = source.preset
    transforms = preset.transforms()
    model = NormalizedClassifier(
        net, getattr(transforms, "mean", IMAGENET_MEAN), getattr(transforms, "std", IMAGENET_STD)
    )
    if whole_model_file is not None:
        load_weights(model, whole_model_file, model_name=name)
    categories = list(preset.meta.get("categories") or [])
    outputs = len(categories) if source.member is not None else int(kwargs.get("num_classes", len(categories)))
    # plain attributes the pipeline reads (class names for reports, what was loaded)
    model.class_names = categories if categories and outputs == len(categories) else None  # type: ignore[assignment]
    model.weights = source.describe()  # type: ignore[assignment]
    model.transforms = transforms
    return model


class TorchvisionProvider:
    """Registry provider: answers for every torchvision classification model name."""

    def names(self) -> list[str]:
        return classification_models()

    def __call__(self, name: str):
        if name in classification_models():
            return partial(build_torchvision, name)
        return None
