"""Load trained weights into a network: a ``state_dict`` file or a SegmentationModule checkpoint.

Every ``torch`` file a user names is read by :func:`load_torch_file`: ``torch.load`` with
``weights_only=True`` (tensors, containers and plain numbers only; a pickled object that would
run code is refused, see ``docs/security.md``), with a one-line
:class:`~lightning_nas.errors.ConfigError` naming the file when it cannot be read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lightning_nas.errors import ConfigError

__all__ = ["load_torch_file", "load_weights"]


def _reason(err: BaseException) -> str:
    """One line saying why ``torch.load`` failed (its weights-only errors span many lines)."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1]
        detail = next((line for line in detail.splitlines() if line.strip()), "")
        detail = detail.split(" Please use `torch.serialization", 1)[0].strip()
        return (
            "refused by torch.load(weights_only=True): it holds more than tensors and plain data"
            + (f" ({detail})" if detail else "")
        )
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def load_torch_file(
    path: str | Path, what: str, safe_globals: Sequence[Any] = (), map_location: str = "cpu"
) -> Any:
    """``torch.load(path, weights_only=True)``, raising one line naming the file on failure.

    Only tensors, ``nn.Parameter``, containers and plain Python values are unpickled (plus the
    ``safe_globals``, allowlisted for this call only): a file whose pickle would import or call
    anything else is refused before it runs.

    Args:
        path: The file.
        what: What the file is, for the message (``"weights file"``).
        safe_globals: Extra classes or functions the file may use (as for
            ``torch.serialization.safe_globals``); keep it to plain-data types.
        map_location: ``torch.load``'s ``map_location``.

    Returns:
        The loaded object.

    Raises:
        ConfigError: If the file cannot be read or is refused.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     torch.save({"w": torch.ones(2)}, f"{tmp}/w.pt")
        ...     load_torch_file(f"{tmp}/w.pt", "weights file")
        {'w': tensor([1., 1.])}
    """
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # unpickling, zip and I/O errors of many types
        raise ConfigError(f"cannot read {what} {path}: {_reason(err)}") from None


def load_weights(network: nn.Module, path: str | Path) -> None:
    """Load a ``state_dict`` file, or the network of a SegmentationModule checkpoint."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"weights file {path} not found")
    state = load_torch_file(path, "weights file")
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
