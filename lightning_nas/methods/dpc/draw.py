"""Drawing of a DPC genotype: the dense prediction cell as a DAG of its branches."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from lightning_nas.draw import draw_cell, new_figure, op_colors
from lightning_nas.methods.dpc.genotype import OP_NAMES, DPCGenotype

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["draw"]


def branch_label(op: str, args: tuple[int, int]) -> str:
    """The edge label of a branch: its op, then its rates ``r=6×21`` or its grid ``g=2×4``.

    Example:
        >>> branch_label("sep_conv3x3", (6, 21)).splitlines(), branch_label("conv1x1", (1, 1))
        (['sep_conv3x3', 'r=6×21'], 'conv1x1')
    """
    if op == "conv1x1":
        return op
    prefix = "g" if op == "pyramid_pooling" else "r"
    return f"{op}\n{prefix}={args[0]}×{args[1]}"


def draw(genotype: DPCGenotype) -> Figure:
    """The cell: ``F`` (the backbone feature) left, one node per branch, the concat right.

    Branch ``i`` reads ``F`` or an earlier branch; its edge is labelled with its operation and
    its rates ``r = r_h×r_w`` (atrous rates at output stride 16) or its pooling grid
    ``g = g_h×g_w``. The output concatenates every branch (then a 1×1 projection).

    Args:
        genotype: The genotype.

    Returns:
        The figure.

    Example:
        >>> from lightning_nas.genotypes import load
        >>> fig = draw(load("experiments/genotypes/dpc_cityscapes.yaml"))
        >>> fig.axes[0].get_title()
        'dense prediction cell (5 branches)'
    """
    n = genotype.num_branches
    fig = new_figure(10.0, 1.6 + 1.2 * max(n, 2))
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.86)
    ax = fig.subplots()
    colours = op_colors(OP_NAMES)
    draw_cell(
        ax,
        [[(branch_label(op, args), inp + 1)] for inp, op, args in genotype.branches],
        inputs=("F",),
        output="concat → 1×1",
        color=lambda label: colours[label.split()[0]],
        node_names=[f"Y{i}" for i in range(n)],
        title=f"dense prediction cell ({n} branch{'es' if n > 1 else ''})",
    )
    counts = Counter(op for _, op, _ in genotype.branches)
    ops = ", ".join(f"{counts[op]} {op}" for op in OP_NAMES if counts[op])
    reads_f = sum(inp == -1 for inp, _, _ in genotype.branches)
    fig.suptitle(
        f"DPC genotype: {n} branches ({ops}); {reads_f} read F, {n - reads_f} an earlier branch",
        fontsize=12,
    )
    return fig
