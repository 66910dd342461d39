"""The release's JSON cell format (``--dense_prediction_cell_json``) ↔ :class:`DPCGenotype`.

The official TensorFlow release (``tensorflow/models``, ``research/deeplab/core/``) describes a
cell as a JSON list with one object per branch (``dense_prediction_cell.py`` @ ``52e2952``):

* ``{"kernel": 3, "rate": [r_h, r_w], "op": "conv", "input": k}``: a 3×3 separable conv;
* ``{"kernel": 1, "op": "conv", "input": k}``: a 1×1 conv (the release ignores ``rate``);
* ``{"op": "pyramid_pooling", "grid_size": [g_h, g_w], "input": k}``.

``kernel`` may also be written ``[k, k]``; ``input = -1`` is the backbone feature. The
published cell is ``dense_prediction_cell_branch5_top1_cityscapes.json`` @ ``d318246``
(``experiments/genotypes/dpc_cityscapes.yaml`` is :func:`release_yaml` of it). Torch-free.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from lightning_nas.genotypes import field_error, type_name
from lightning_nas.methods.dpc.genotype import DPCGenotype

__all__ = [
    "PUBLISHED_SOURCE",
    "from_release_config",
    "from_release_json",
    "release_yaml",
    "to_release_config",
    "to_release_json",
]

PUBLISHED_SOURCE = (
    "tensorflow/models research/deeplab/core/dense_prediction_cell_branch5_top1_cityscapes.json"
    " @ d318246"
)
"""Where the published Cityscapes cell comes from."""


def _kernel(value: Any) -> int | None:
    if isinstance(value, list | tuple) and len(value) == 2 and value[0] == value[1]:
        value = value[0]
    if isinstance(value, int) and not isinstance(value, bool) and value in (1, 3):
        return value
    return None


def _pair(value: Any) -> tuple[Any, Any] | None:
    if isinstance(value, list | tuple) and len(value) == 2:
        return value[0], value[1]
    return None


def from_release_config(
    config: Sequence[Mapping[str, Any]], source: str = "<release config>"
) -> DPCGenotype:
    """The genotype of a release cell config (the parsed JSON list).

    Args:
        config: One mapping per branch, in the release's format.
        source: Where ``config`` came from, for error messages.

    Returns:
        The genotype.

    Raises:
        GenotypeError: One line naming the source and the entry, if an entry is not in the
            release's format or the cell does not validate.

    Example:
        >>> g = from_release_config([{"kernel": 1, "op": "conv", "input": -1},
        ...                          {"op": "pyramid_pooling", "grid_size": [1, 2], "input": 0}])
        >>> g.branches
        ((-1, 'conv1x1', (1, 1)), (0, 'pyramid_pooling', (1, 2)))
    """
    if not isinstance(config, list | tuple):
        raise field_error(source, "<root>", f"got {type_name(config)}; expected a list of ops")
    branches = []
    for i, entry in enumerate(config):
        key = f"[{i}]"
        if not isinstance(entry, Mapping):
            raise field_error(source, key, f"got {entry!r}; expected an object")
        if "input" not in entry:
            raise field_error(source, f"{key}.input", "missing key")
        op = entry.get("op")
        if op == "conv":
            kernel = _kernel(entry.get("kernel"))
            if kernel is None:
                raise field_error(
                    source,
                    f"{key}.kernel",
                    f"got {entry.get('kernel')!r}; expected 1 or 3 (DPC's 1x1 and 3x3 convs)",
                )
            if kernel == 1:
                branches.append([entry["input"], "conv1x1", [1, 1]])
                continue
            rate = _pair(entry.get("rate"))
            if rate is None:
                raise field_error(
                    source, f"{key}.rate", f"got {entry.get('rate')!r}; expected [r_h, r_w]"
                )
            branches.append([entry["input"], "sep_conv3x3", list(rate)])
        elif op == "pyramid_pooling":
            grid = _pair(entry.get("grid_size"))
            if grid is None:
                raise field_error(
                    source,
                    f"{key}.grid_size",
                    f"got {entry.get('grid_size')!r}; expected [g_h, g_w]",
                )
            branches.append([entry["input"], "pyramid_pooling", list(grid)])
        else:
            raise field_error(
                source, f"{key}.op", f"unknown op {op!r}; expected 'conv' or 'pyramid_pooling'"
            )
    data = {"kind": DPCGenotype.kind, "version": DPCGenotype.version, "branches": branches}
    return cast(DPCGenotype, DPCGenotype.from_dict(data, source=source))


def from_release_json(source: str | Path) -> DPCGenotype:
    """The genotype of a release JSON cell: a file, or the JSON text itself.

    Args:
        source: A :class:`~pathlib.Path`, or a string: JSON text if it starts with ``[``,
            else the path of a file.

    Returns:
        The genotype.

    Raises:
        FileNotFoundError: If the file does not exist.
        GenotypeError: If the JSON is invalid or does not describe a valid cell.
    """
    if isinstance(source, str) and source.lstrip().startswith("["):
        text, where = source, "<release json>"
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"DPC release cell file not found: {path}")
        text, where = path.read_text(), str(path)
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise field_error(where, f"line {err.lineno}", f"invalid JSON ({err.msg})") from err
    return from_release_config(config, source=where)


def to_release_config(genotype: DPCGenotype) -> list[dict[str, Any]]:
    """The release's cell config of ``genotype`` (keys in the published file's order).

    Example:
        >>> g = DPCGenotype(branches=[[-1, "sep_conv3x3", [1, 6]], [0, "conv1x1", [1, 1]]])
        >>> for entry in to_release_config(g):
        ...     print(entry)
        {'kernel': 3, 'rate': [1, 6], 'op': 'conv', 'input': -1}
        {'kernel': 1, 'op': 'conv', 'input': 0}
    """
    out: list[dict[str, Any]] = []
    for inp, op, (a, b) in genotype.branches:
        if op == "conv1x1":
            out.append({"kernel": 1, "op": "conv", "input": inp})
        elif op == "sep_conv3x3":
            out.append({"kernel": 3, "rate": [a, b], "op": "conv", "input": inp})
        else:
            out.append({"op": "pyramid_pooling", "grid_size": [a, b], "input": inp})
    return out


def to_release_json(genotype: DPCGenotype) -> str:
    """The release's JSON text of ``genotype`` (one line, as the published file is written).

    The result is what ``--dense_prediction_cell_json`` of the release reads; for the published
    cell it is the published file's text, byte for byte.
    """
    return json.dumps(to_release_config(genotype))


def _describe(inp: int, op: str, a: int, b: int) -> str:
    source = "F" if inp < 0 else f"Y{inp}"
    if op == "conv1x1":
        return f"{source} -> conv 1x1"
    if op == "sep_conv3x3":
        return f"{source} -> separable 3x3, rate {a}x{b}"
    return f"{source} -> pyramid pooling, grid {a}x{b}"


def release_yaml(genotype: DPCGenotype, source: str = PUBLISHED_SOURCE) -> str:
    """A commented genotype YAML file of ``genotype`` imported from the release.

    One line per branch ``[input, op, [a, b]]`` with a comment; ``genotypes.load`` reads it.

    Args:
        genotype: The genotype.
        source: The release file (and commit) it was imported from, for the header.

    Returns:
        The file's text.
    """
    lines = [
        "# DPC's published Cityscapes cell (Chen et al., NeurIPS 2018), imported from the official",
        f"# release: {source}",
        "# (semantics: dense_prediction_cell.py @ 52e2952) by",
        "# lightning_nas.methods.dpc.release.from_release_json; written by release_yaml.",
        "# branch i = [input, op, [a, b]]: input -1 = backbone feature F, k >= 0 = branch k's",
        "# output Y_k; [a, b] = rates (r_h, r_w) of sep_conv3x3 (at OS 16), grid (g_h, g_w) of",
        "# pyramid_pooling, [1, 1] for conv1x1. Output: concat of every branch -> 1x1 projection.",
        f"kind: {genotype.kind}",
        f"version: {genotype.version}",
        "branches:",
    ]
    entries = [f"- [{inp}, {op}, [{a}, {b}]]" for inp, op, (a, b) in genotype.branches]
    width = max(len(e) for e in entries) + 3
    for i, (entry, (inp, op, (a, b))) in enumerate(zip(entries, genotype.branches, strict=True)):
        lines.append(f"{entry:<{width}}# Y{i}: {_describe(inp, op, a, b)}")
    return "\n".join(lines) + "\n"
