"""Load trained weights into a network: a ``state_dict`` file or a SegmentationModule checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lightning_nas.errors import ConfigError

__all__ = ["load_weights"]


def load_weights(network: nn.Module, path: str | Path) -> None:
    """Load a ``state_dict`` file, or the network of a SegmentationModule checkpoint."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"weights file {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle and zip errors of many types
        raise ConfigError(f"cannot read weights file {path}: {err}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
        prefix = "network."
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not isinstance(state, dict):
        raise ConfigError(f"weights file {path} holds a {type(state).__name__}, not a state_dict")
    try:
        network.load_state_dict(state)
    except RuntimeError as err:
        message = " ".join(str(err).split())
        raise ConfigError(
            f"weights {path} do not fit {type(network).__name__}: {message}"
        ) from None
