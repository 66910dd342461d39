"""Drawing of a FasterSeg genotype: every branch's cells on the layer × scale grid."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lightning_nas.draw import new_figure
from lightning_nas.methods.fasterseg.genotype import FasterSegGenotype

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["draw"]

_SCALES = (8, 16, 32)
_BRANCH_COLOURS = ("#1f77b4", "#d62728", "#2ca02c")
_SHARED = "#555555"


def draw(genotype: FasterSegGenotype) -> Figure:
    """Every branch's cells on a grid: x = cell, y = scale (1/8, 1/16, 1/32).

    Each cell is labelled with its operator and its output width in twelfths of the full width
    (the last cell of a branch outputs the head width); cells several branches share are drawn
    once, in grey, and each branch has its own colour after it leaves them. A cell that
    downsamples is the diagonal to the next scale. The stem feeds the first cell and the head
    fuses the branches' last cells.

    Args:
        genotype: The genotype.

    Returns:
        The figure.

    Example:
        >>> from lightning_nas.genotypes import load
        >>> fig = draw(load("experiments/genotypes/fasterseg_cityscapes.yaml"))
        >>> fig.axes[0].get_yticklabels()[2].get_text()
        '1/32'
    """
    from matplotlib.lines import Line2D
    from matplotlib.transforms import offset_copy

    cells = max(len(path) for path in genotype.paths)
    stem_w, head_w = genotype.stem_head_width
    width = max(8.0, 1.6 + 1.05 * (cells + 2))
    fig = new_figure(width, 4.8)
    fig.subplots_adjust(left=0.6 / width, right=0.99, top=0.8, bottom=0.11)
    ax = fig.subplots()
    n = genotype.num_branches

    def box(colour: str) -> dict[str, object]:
        return {"boxstyle": "round,pad=0.25", "facecolor": "white", "edgecolor": colour}

    label_kw = {"ha": "center", "va": "center", "fontsize": 7, "zorder": 4}
    for layer in range(cells):
        groups = genotype.cell_groups(layer)
        at: dict[int, list[list[int]]] = {}
        for group in groups:
            at.setdefault(genotype.paths[group[0]][layer], []).append(group)
        for scale, here in at.items():
            for k, group in enumerate(here):
                b = group[0]
                colour = _SHARED if len(group) > 1 else _BRANCH_COLOURS[b]
                last = layer == len(genotype.paths[b]) - 1
                width = f"head {head_w}/12" if last else f"{genotype.widths[b][layer]}/12"
                offset = 26 * ((len(here) - 1) / 2 - k)
                ax.annotate(
                    f"{genotype.ops[b][layer]}\n{width}",
                    (layer, scale),
                    xytext=(0, offset),
                    textcoords="offset points",
                    color=colour,
                    bbox=box(colour),
                    **label_kw,
                )
                if not last:  # the cell's edge to the next one, at its output scale
                    shift = 0 if len(group) > 1 else 2.5 * (b - (n - 1) / 2)
                    trans = offset_copy(ax.transData, fig=fig, y=shift, units="points")
                    ax.plot(
                        [layer, layer + 1],
                        [scale, genotype.paths[b][layer + 1]],
                        color=colour,
                        lw=2.0,
                        transform=trans,
                        zorder=2,
                    )
    ax.annotate(f"stem\n{stem_w}/12", (-1, 0), color="black", bbox=box("black"), **label_kw)
    ax.plot([-1, 0], [0, 0], color=_SHARED, lw=2.0, zorder=2)
    head_y = sum(genotype.lasts) / n
    ax.annotate(f"head\n{head_w}/12", (cells, head_y), color="black", bbox=box("black"), **label_kw)
    for b, path in enumerate(genotype.paths):
        ax.plot(
            [len(path) - 1, cells],
            [path[-1], head_y],
            color=_BRANCH_COLOURS[b],
            lw=1.2,
            ls="--",
            zorder=1,
        )
    ax.set_xlim(-1.6, cells + 0.6)
    ax.set_ylim(len(_SCALES) - 0.45, -0.55)
    ax.set_xticks(range(-1, cells + 1), ["stem", *map(str, range(cells)), "head"])
    ax.set_yticks(range(len(_SCALES)), [f"1/{s}" for s in _SCALES])
    ax.set_xlabel("cell")
    ax.set_ylabel("scale")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    handles = [
        Line2D([], [], color=_BRANCH_COLOURS[b], lw=2, label=f"branch {b} → 1/{_SCALES[last]}")
        for b, last in enumerate(genotype.lasts)
    ]
    if n > 1:
        handles.append(Line2D([], [], color=_SHARED, lw=2, label="shared cells"))
    ax.legend(handles=handles, loc="lower left", fontsize=8, frameon=False)
    ends = ", ".join(f"1/{_SCALES[last]}" for last in genotype.lasts)
    fig.suptitle(
        f"FasterSeg genotype: {n} branch{'es' if n > 1 else ''} ending at {ends}; {cells} cells\n"
        f"stem {stem_w}/12, head {head_w}/12 of full width; cell labels: operator, output width",
        fontsize=11,
    )
    return fig
