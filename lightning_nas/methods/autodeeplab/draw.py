"""Drawing of an Auto-DeepLab genotype: its network path on the lattice and its cell."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lightning_nas.draw import draw_cell, new_figure, op_colors
from lightning_nas.methods.autodeeplab.genotype import AUTODEEPLAB_PRIMITIVES, AutoDeepLabGenotype

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["draw"]


def draw(genotype: AutoDeepLabGenotype) -> Figure:
    """The network-level path on the stride lattice (top) and the cell every layer uses (bottom).

    The lattice has one column per layer (plus the stem, at the first stride) and one row per
    output stride; every point a path can reach is grey and the genotype's path is red. The cell
    reads ``h[l-2]`` and ``h[l-1]``; each block sums its two labelled edges and ``h[l]``
    concatenates every block.

    Args:
        genotype: The genotype.

    Returns:
        The figure.

    Example:
        >>> from lightning_nas.genotypes import load
        >>> fig = draw(load("experiments/genotypes/autodeeplab_cityscapes.yaml"))
        >>> [ax.get_title() for ax in fig.axes]
        ['network path (12 layers)', 'cell (5 blocks)']
    """
    layers, blocks = len(genotype.path), genotype.num_blocks
    # heights in inches, top to bottom: title, lattice, its x label + the cell's title, cell
    top, lattice_h, gap, bottom = 0.8, 0.5 * len(genotype.strides) + 0.4, 1.0, 0.1
    cell_h = 1.2 * max(blocks, 2) + 0.6
    total = top + lattice_h + gap + cell_h + bottom
    fig = new_figure(max(10.0, 2.0 + 0.6 * layers), total)
    lattice = fig.add_axes((0.08, (bottom + cell_h + gap) / total, 0.89, lattice_h / total))
    cell = fig.add_axes((0.12, bottom / total, 0.76, cell_h / total))
    _draw_path(lattice, genotype)
    draw_cell(
        cell,
        [genotype.cell[2 * b : 2 * b + 2] for b in range(blocks)],
        inputs=("h[l-2]", "h[l-1]"),
        output="h[l]",
        color=op_colors(AUTODEEPLAB_PRIMITIVES[1:]),
        title=f"cell ({blocks} blocks)",
    )
    strides = genotype.output_strides()
    fig.suptitle(
        f"Auto-DeepLab genotype: {layers} layers, {blocks}-block cell, strides "
        f"{min(strides)}-{max(strides)}, final output stride {strides[-1]}",
        fontsize=12,
    )
    return fig


def _draw_path(ax: Axes, genotype: AutoDeepLabGenotype) -> None:
    """Every reachable lattice point in grey, the stem and the path in red."""
    layers, n = len(genotype.path), len(genotype.strides)
    xs = [layer for layer in range(layers) for level in range(min(layer + 2, n))]
    ys = [level for layer in range(layers) for level in range(min(layer + 2, n))]
    ax.scatter(xs, ys, s=30, color="#bbbbbb", zorder=2)
    path = [0, *genotype.path]
    ax.plot(range(-1, layers), path, color="tab:red", lw=2.5, marker="o", zorder=3)
    ax.set_xticks(range(-1, layers), ["stem", *map(str, range(layers))])
    ax.set_yticks(range(n), [str(s) for s in genotype.strides])
    ax.set_xlim(-1.5, layers - 0.5)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xlabel("layer")
    ax.set_ylabel("output stride")
    ax.grid(axis="y", color="#eeeeee", zorder=1)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_title(f"network path ({layers} layers)", fontsize=10)
