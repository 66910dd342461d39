"""The global random generators' state, saved in checkpoints for exact resume.

:class:`callbacks.ExactResume` saves :func:`capture_rng` in every checkpoint and calls
:func:`restore_rng` when training starts again; docs/resume.md says what that makes exact.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["CHECKPOINT_KEY", "MID_EPOCH_KEY", "capture_rng", "restore_rng"]

#: Checkpoint key of what ``callbacks.ExactResume`` saves (``{"rng": ..., "mid_epoch": bool}``).
CHECKPOINT_KEY = "lightning_nas/resume"
#: Checkpoint key: ``True`` when the checkpoint was saved between two training batches.
MID_EPOCH_KEY = "lightning_nas/mid_epoch"


def capture_rng() -> dict[str, Any]:
    """The state of every global random generator, as tensors, numbers and strings."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss, gauss],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Set the global random generators to ``state`` (from :func:`capture_rng`)."""
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
