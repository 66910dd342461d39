"""Pareto fronts of multi-objective studies: dominance, 2-D hypervolume, knee points, reports.

Points are tuples of objective values with a direction per objective (``"maximize"`` /
``"minimize"``); internally every objective is turned into a minimisation.

Example:
    >>> pts = [(0.5, 10.0), (0.6, 20.0), (0.4, 12.0), (0.6, 15.0)]
    >>> pareto_front(pts, ["maximize", "minimize"])
    [0, 3]
    >>> hypervolume([pts[0], pts[3]], ["maximize", "minimize"], reference=(0.0, 30.0))
    11.5
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning_nas.atomic import replacing, save_figure

__all__ = [
    "dominates",
    "front_report",
    "hypervolume",
    "hypervolume_contributions",
    "knee_points",
    "pareto_front",
]


def _minimised(point: Sequence[float], directions: Sequence[str]) -> tuple[float, ...]:
    return tuple(-v if d == "maximize" else v for v, d in zip(point, directions))


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    """Whether ``a`` is at least as good as ``b`` everywhere and better somewhere."""
    ma, mb = _minimised(a, directions), _minimised(b, directions)
    return all(x <= y for x, y in zip(ma, mb)) and any(x < y for x, y in zip(ma, mb))


def pareto_front(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Indices of the non-dominated points (duplicates: the first kept), in input order."""
    front = []
    for i, p in enumerate(points):
        if any(dominates(q, p, directions) for q in points):
            continue
        if any(tuple(points[j]) == tuple(p) for j in front):
            continue
        front.append(i)
    return front


def hypervolume(
    points: Sequence[Sequence[float]], directions: Sequence[str], reference: Sequence[float]
) -> float:
    """The 2-D hypervolume dominated by ``points`` and bounded by ``reference``.

    ``reference`` is a point worse than every point in both objectives (e.g. mIoU 0 and the
    largest latency); points not better than it in both count nothing.

    Raises:
        ValueError: For other than two objectives.
    """
    if len(directions) != 2:
        raise ValueError(f"hypervolume: two objectives supported, got {len(directions)}")
    ref = _minimised(reference, directions)
    pts = sorted(
        p for p in (_minimised(q, directions) for q in points) if p[0] < ref[0] and p[1] < ref[1]
    )
    volume, best_y = 0.0, ref[1]
    for x, y in pts:  # by the first objective ascending: a staircase
        if y < best_y:
            volume += (ref[0] - x) * (best_y - y)
            best_y = y
    return volume


def hypervolume_contributions(
    points: Sequence[Sequence[float]], directions: Sequence[str], reference: Sequence[float]
) -> list[float]:
    """Each point's exclusive hypervolume (the total minus the total without it)."""
    total = hypervolume(points, directions, reference)
    return [
        total - hypervolume(points[:i] + points[i + 1 :], directions, reference)  # type: ignore[operator]
        for i in range(len(points))
    ]


def knee_points(
    points: Sequence[Sequence[float]], directions: Sequence[str], k: int = 1
) -> list[int]:
    """The ``k`` front points farthest from the line through the front's two extremes.

    Objectives are normalised to [0, 1] over the front first. With fewer than three front
    points, the front itself (best first objective first).
    """
    front = pareto_front(points, directions)
    pts = [_minimised(points[i], directions) for i in front]
    if len(front) < 3:
        order = sorted(range(len(front)), key=lambda j: pts[j])
        return [front[j] for j in order][:k]
    lo = [min(p[d] for p in pts) for d in range(2)]
    span = [max(p[d] for p in pts) - lo[d] or 1.0 for d in range(2)]
    norm = [((p[0] - lo[0]) / span[0], (p[1] - lo[1]) / span[1]) for p in pts]
    a, b = min(norm), max(norm)  # the extremes along the first objective
    dx, dy = b[0] - a[0], b[1] - a[1]
    length = math.hypot(dx, dy) or 1.0
    distance = [abs(dy * (p[0] - a[0]) - dx * (p[1] - a[1])) / length for p in norm]
    order = sorted(range(len(front)), key=lambda j: -distance[j])
    return [front[j] for j in order][:k]


def front_report(
    groups: Sequence[tuple[str, Sequence[dict[str, Any]]]],
    names: Sequence[str],
    directions: Sequence[str],
    out: Path,
    generation_size: int = 10,
) -> dict[str, Any]:
    """Write the combined front of several groups of points (e.g. two search stages).

    Each point is a dict with ``values`` (one per objective), ``label`` and optional extra keys
    (copied to the CSV). Writes ``front.csv`` (every point, ``on_front`` marked),
    ``front.png`` (objective 2 vs objective 1, one marker per group, the front highlighted and
    labelled), ``hypervolume.csv`` / ``hypervolume.png`` (the front's hypervolume after each
    generation of ``generation_size`` points, over the groups in order).

    Returns:
        ``front`` (the front points, best first objective first), ``hypervolume`` (per
        generation) and ``reference``.
    """
    from matplotlib.figure import Figure

    out.mkdir(parents=True, exist_ok=True)
    everything = [(group, p) for group, points in groups for p in points]
    values = [tuple(p["values"]) for _, p in everything]
    front_idx = set(pareto_front(values, directions))
    reference = [
        0.0 if d == "maximize" and all(v[i] >= 0 for v in values) else
        (min(v[i] for v in values) if d == "maximize" else max(v[i] for v in values)) * 1.1
        for i, d in enumerate(directions)
    ]  # fmt: skip
    extras = sorted({k for _, p in everything for k in p} - {"values", "label"})
    with replacing(out / "front.csv") as tmp, tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["group", "label", *names, "on_front", *extras])
        for i, (group, p) in enumerate(everything):
            writer.writerow(
                [group, p["label"], *p["values"], i in front_idx, *(p.get(k, "") for k in extras)]
            )
    curve = []
    for end in range(generation_size, len(values) + generation_size, generation_size):
        curve.append(hypervolume(values[:end], directions, reference))
    with replacing(out / "hypervolume.csv") as tmp, tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["generation", "points", "hypervolume"])
        for g, hv in enumerate(curve):
            writer.writerow([g, min((g + 1) * generation_size, len(values)), f"{hv:.6g}"])

    fig = Figure(figsize=(7, 5))
    ax = fig.subplots()
    markers = ["o", "s", "^", "D"]
    for k, (group, points) in enumerate(groups):
        xs = [p["values"][1] for p in points]
        ys = [p["values"][0] for p in points]
        ax.scatter(xs, ys, marker=markers[k % 4], label=group, alpha=0.6, s=28)
    front = sorted((everything[i] for i in front_idx), key=lambda gp: gp[1]["values"][1])
    ax.plot(
        [p["values"][1] for _, p in front],
        [p["values"][0] for _, p in front],
        "-",
        color="crimson",
        lw=1.5,
        label="front",
    )
    for _, p in front:
        ax.annotate(p["label"], (p["values"][1], p["values"][0]), fontsize=6,
                    xytext=(3, 3), textcoords="offset points")  # fmt: skip
    ax.set_xlabel(names[1])
    ax.set_ylabel(names[0])
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out / "front.png", dpi=110)
    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    ax.plot(range(len(curve)), curve, "o-")
    ax.set_xlabel(f"generation ({generation_size} trials)")
    ax.set_ylabel("hypervolume")
    fig.tight_layout()
    save_figure(fig, out / "hypervolume.png", dpi=110)
    return {"front": [p for _, p in front], "hypervolume": curve, "reference": reference}
