"""Load weights safely (``weights_only=True``) with one-line errors for every way it can fail."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from advlab.errors import AdvlabError


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``path``: a plain ``{name: tensor}`` file or a Lightning checkpoint.

    Lightning checkpoints of advlab modules prefix the classifier's keys with ``model.``; the
    prefix is removed so both kinds load into the bare classifier.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise AdvlabError(f"checkpoint {str(path)!r} does not exist: give the path of a .ckpt or .pt file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for corrupt or unsafe files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AdvlabError(
            f"cannot read checkpoint {str(path)!r} ({reason[:160]}): it must be a state dict or "
            "Lightning checkpoint loadable with torch.load(weights_only=True)"
        ) from None
    if isinstance(data, Mapping) and "state_dict" in data and isinstance(data["state_dict"], Mapping):
        data = data["state_dict"]
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise AdvlabError(
            f"checkpoint {str(path)!r} holds no state dict of tensors: save one with "
            "torch.save(model.state_dict(), path)"
        )
    prefixed = [k for k in data if k.startswith("model.")]
    if prefixed and len(prefixed) == len(data):
        data = {k[len("model.") :]: v for k, v in data.items()}
    return dict(data)


def load_weights(model: nn.Module, path: str | Path, model_name: str | None = None) -> nn.Module:
    """Load ``path`` into ``model`` strictly; a mismatch names the keys and the model."""
    state = read_state_dict(path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong_shape:
        parts = []
        if missing:
            parts.append(f"missing {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected {_few(unexpected)}")
        if wrong_shape:
            k = wrong_shape[0]
            parts.append(f"shape of {k} is {tuple(state[k].shape)}, model wants {tuple(expected[k].shape)}")
        what = f"model {model_name!r}" if model_name else type(model).__name__
        raise AdvlabError(
            f"checkpoint {str(path)!r} does not match {what} ({'; '.join(parts)}): "
            "pass a checkpoint trained for this architecture"
        )
    model.load_state_dict(state)
    return model


def _few(keys: list[str], limit: int = 3) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")
