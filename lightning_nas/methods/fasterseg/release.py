"""Importers of FasterSeg's published artefacts: the release's architecture parameters.

The release (``VITA-Group/FasterSeg``) ships the searched α, β and γ tensors of its teacher and
student (``arch_0`` / ``arch_1``) with the student's per-pair mIoU and latency;
:func:`released_genotypes` decodes them with the release's derivation
(:mod:`~lightning_nas.methods.fasterseg.derive`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from lightning_nas.errors import ConfigError
from lightning_nas.methods.fasterseg.derive import derive_genotype, select_lasts
from lightning_nas.methods.fasterseg.genotype import FasterSegGenotype
from lightning_nas.weights import load_torch_file

__all__ = ["load_released_arch", "released_genotypes"]


def _release_globals() -> list[Any]:
    """What an ``arch_*.pt`` of the release may hold besides tensors: numpy float scalars.

    The release's ``train_search.py`` saves its α/β/γ as ``nn.Parameter`` (allowed by
    ``weights_only=True``) next to the mIoU and latency of each branch pair, Python or numpy
    floats; numpy pickles a float scalar as ``numpy.core.multiarray.scalar(dtype, bytes)``
    (``numpy._core`` since numpy 2). Only these plain-data constructors are allowed, for this
    load only.
    """
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    scalar = core.multiarray.scalar
    return [
        scalar,
        (scalar, "numpy.core.multiarray.scalar"),  # files written under numpy 1
        np.dtype,
        np.dtypes.Float64DType,
        np.dtypes.Float32DType,
    ]


def load_released_arch(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """Read the release's architecture tensors into ``{"teacher"|"student": {name: tensor}}``.

    Names are ``alpha_<scale>``, ``beta_<scale>``, ``ratio_<scale>``; ``"scores"`` holds the
    stored per-pair mIoU and latency of the student, when present.

    Raises:
        ConfigError: If the file is missing or holds no architecture tensors.
    """
    where = str(source) if not isinstance(source, Mapping) else "<mapping>"
    if isinstance(source, Mapping):
        data: Any = source
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"FasterSeg release architecture file {path} not found")
        if path.suffix == ".json":
            try:
                data = json.loads(path.read_text())
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise ConfigError(f"{path}: not a readable JSON file: {err}") from None
        else:
            data = load_torch_file(
                path, "FasterSeg release architecture file", safe_globals=_release_globals()
            )
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"{where}: holds a {type(data).__name__}; expected the release's mapping of "
                "architecture tensors"
            )
    groups = (
        {k: v for k, v in data.items() if k.startswith("arch_")}
        if any(str(k).startswith("arch_") for k in data)
        else {"arch_single": data}
    )
    out: dict[str, Any] = {}
    for group in groups.values():
        idx = None
        tensors = {}
        for key, value in group.items():
            parts = key.split("_")
            if parts[0] in ("alpha", "beta", "ratio") and len(parts) == 3:
                idx = int(parts[1])
                tensors[f"{parts[0]}_{parts[2]}"] = torch.as_tensor(value, dtype=torch.float64)
        if idx is None:
            continue
        arch_set = "teacher" if idx == 0 else "student"
        out[arch_set] = tensors
        if arch_set == "student" and all(
            k in group for k in ("mIoU02", "mIoU12", "latency02", "latency12")
        ):
            out["scores"] = {
                "miou": {(2, 0): float(group["mIoU02"]), (2, 1): float(group["mIoU12"])},
                "latency": {(2, 0): float(group["latency02"]), (2, 1): float(group["latency12"])},
            }
    if "student" not in out and "teacher" not in out:
        raise ConfigError(
            f"{where}: no FasterSeg architecture tensors (keys alpha_<i>_<s>, beta_<i>_<s>, "
            "ratio_<i>_<s>) found"
        )
    return out


def released_genotypes(
    source: str | Path | Mapping[str, Any],
    widths: Sequence[int] = (4, 6, 8, 10, 12),
    lasts: Sequence[int] | None = None,
) -> dict[str, FasterSegGenotype]:
    """Decode the release's tensors into ``{"student": ..., "teacher": ...}`` genotypes.

    The student's branch pair is chosen by the release's objective from its stored mIoU and
    latency (``lasts`` overrides); the teacher takes the same pair, no skips, full width.

    Example:
        >>> g = released_genotypes("experiments/genotypes/fasterseg_released_arch_params.json")
        >>> g["student"].paths[0]
        (0, 0, 0, 0, 1, 1, 1, 1, 2, 2)
    """
    sets = load_released_arch(source)
    scores = sets.get("scores")
    if lasts is None:
        if scores:
            m, t = scores["miou"], scores["latency"]
            lasts = select_lasts(m[(2, 0)], m[(2, 1)], t[(2, 0)], t[(2, 1)])
        else:
            lasts = (2, 1)
    out = {}
    for arch_set, stem_head in (("student", (8, 8)), ("teacher", (12, 12))):
        if arch_set not in sets:
            continue
        t = sets[arch_set]
        alphas = [t[f"alpha_{j}"] for j in range(3)]
        betas = [t[f"beta_{j}"] for j in (1, 2)]
        ratios = [t[f"ratio_{j}"] for j in range(3)]
        choices = list(widths) if ratios[0].shape[1] == len(widths) else [12]
        if ratios[0].shape[1] != len(choices):
            raise ConfigError(
                f"release ratio tensors have {ratios[0].shape[1]} columns; widths has "
                f"{len(widths)} choices"
            )
        out[arch_set] = derive_genotype(
            alphas, betas, ratios, choices, lasts, arch_set == "teacher", stem_head
        )
    return out
