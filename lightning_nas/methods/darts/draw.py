"""Drawing of a DARTS genotype: its normal and reduction cells as DAGs (``lightning-nas draw``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lightning_nas.draw import draw_cell, new_figure, op_colors
from lightning_nas.methods.darts.genotype import DARTS_PRIMITIVES, DartsGenotype

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["draw"]


def draw(genotype: DartsGenotype) -> Figure:
    """The normal and the reduction cell of ``genotype``, side by side.

    Each cell reads ``c_{k-2}`` and ``c_{k-1}`` (the two previous cells), each intermediate node
    sums its two labelled edges, and ``c_{k}`` concatenates the nodes of ``*_concat``. An
    operation has the same colour in both cells.

    Args:
        genotype: The genotype.

    Returns:
        The figure.

    Example:
        >>> from lightning_nas.genotypes import load
        >>> fig = draw(load("experiments/genotypes/darts_v1.yaml"))
        >>> [ax.get_title() for ax in fig.axes]
        ['normal cell (concat 0, 1, 2, 3)', 'reduction cell (concat 0, 1, 2, 3)']
    """
    steps = max(genotype.steps.values())
    fig = new_figure(14.0, 1.2 + 1.3 * max(steps, 2))
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.03, top=0.82, wspace=0.08)
    axes = fig.subplots(1, 2)
    colours = op_colors(DARTS_PRIMITIVES[1:])
    for ax, cell, title in zip(axes, ("normal", "reduce"), ("normal cell", "reduction cell")):
        pairs = getattr(genotype, cell)
        concat = [c - 2 for c in getattr(genotype, f"{cell}_concat")]
        draw_cell(
            ax,
            [pairs[2 * i : 2 * i + 2] for i in range(len(pairs) // 2)],
            inputs=("$c_{k-2}$", "$c_{k-1}$"),
            output="$c_{k}$",
            concat=concat,
            color=colours,
            title=f"{title} (concat {', '.join(map(str, concat))})",
        )
    skips = ", ".join(
        f"{cell} {genotype.num_skip_connections(cell)}" for cell in ("normal", "reduce")
    )
    fig.suptitle(
        f"DARTS genotype: {genotype.steps['normal']} + {genotype.steps['reduce']} "
        f"intermediate nodes; skip connections: {skips}",
        fontsize=12,
    )
    return fig
