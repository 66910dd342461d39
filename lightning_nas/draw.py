r"""Architecture drawings: any genotype as a matplotlib figure, and ``lightning-nas draw``.

    lightning-nas draw experiments/genotypes/darts_v2.yaml               # darts_v2.png beside it
    lightning-nas draw runs/search/genotype.yaml -o arch.svg --dpi 150

Each genotype kind names its drawing function in its class attribute ``drawing`` (an import path
of ``draw(genotype) -> matplotlib.figure.Figure``, resolved on demand, so genotypes stay free of
matplotlib). :func:`figure` resolves it, :func:`save` writes a PNG or SVG atomically, and
:func:`draw_cell` is the shared drawing of a cell as a DAG (inputs on the left, the nodes in a
column, the output on the right, each edge labelled with its operation) the method drawings
build on. Figures are built with :class:`matplotlib.figure.Figure` on the Agg canvas: no
pyplot, no global state, no display and no system binary.

Example:
    >>> fig = figure("experiments/genotypes/darts_v2.yaml")
    >>> type(fig).__name__, len(fig.axes)
    ('Figure', 2)
"""

from __future__ import annotations

import argparse
import io
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from lightning_nas import genotypes
from lightning_nas._config import import_object
from lightning_nas.atomic import write_bytes
from lightning_nas.errors import ConfigError
from lightning_nas.genotypes import Genotype, GenotypeError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.text import Text

__all__ = [
    "SUFFIXES",
    "draw_cell",
    "draw_main",
    "figure",
    "label_overlaps",
    "new_figure",
    "op_colors",
    "save",
    "shapes_overlap",
    "text_shape",
]

SUFFIXES: tuple[str, ...] = (".png", ".svg")
"""The file types :func:`save` writes."""

_PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
)


def new_figure(width: float, height: float) -> Figure:
    """A blank :class:`~matplotlib.figure.Figure` on the Agg canvas (no pyplot, no global state).

    Args:
        width: Width in inches.
        height: Height in inches.

    Returns:
        The figure, whose canvas can measure text (what :func:`draw_cell` needs).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _renderer(fig: Figure) -> Any:
    """The renderer of ``fig``'s canvas (an Agg canvas is attached if it has none that measures)."""
    if not hasattr(fig.canvas, "get_renderer"):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
    return fig.canvas.get_renderer()


def op_colors(names: Sequence[str]) -> dict[str, str]:
    """One distinct colour per name, in order (ten colours, then they repeat).

    Example:
        >>> op_colors(["conv", "pool"])
        {'conv': '#1f77b4', 'pool': '#ff7f0e'}
    """
    return {name: _PALETTE[k % len(_PALETTE)] for k, name in enumerate(names)}


def figure(genotype: Genotype | str | Path) -> Figure:
    """The drawing of ``genotype`` (or of the genotype file at that path).

    Args:
        genotype: A genotype, or the path of its YAML file.

    Returns:
        The figure its kind's ``drawing`` function builds.

    Raises:
        FileNotFoundError: If the genotype file does not exist.
        GenotypeError: If the genotype file does not validate.
        ConfigError: If the genotype's kind has no drawing.
    """
    if isinstance(genotype, str | Path):
        genotype = genotypes.load(genotype)
    if not isinstance(genotype, Genotype):
        raise TypeError(f"figure: expected a Genotype or a path, got {type(genotype).__name__}")
    drawing = type(genotype).drawing
    if drawing is None:
        raise ConfigError(
            f"genotype kind {genotype.kind!r} has no drawing: its class "
            f"{type(genotype).__name__} sets no 'drawing' import path"
        )
    return import_object(drawing)(genotype)


def save(genotype: Genotype | str | Path, path: str | Path, dpi: int = 100) -> Path:
    """Draw ``genotype`` and write the figure to ``path`` (PNG or SVG by suffix), atomically.

    The file is rendered to a temporary file in the same folder (created if missing) and moved
    into place, so a reader never sees a half-written drawing.

    Args:
        genotype: A genotype, or the path of its YAML file.
        path: The output file, ending in ``.png`` or ``.svg``.
        dpi: Resolution of a PNG (dots per inch).

    Returns:
        The path written.

    Raises:
        ConfigError: If ``path`` has another suffix, ``dpi`` is not a positive integer, or the
            genotype's kind has no drawing.
        FileNotFoundError: If the genotype file does not exist.
        GenotypeError: If the genotype file does not validate.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ConfigError(
            f"output {str(path)!r}: unsupported suffix {path.suffix!r}; expected one of "
            + ", ".join(SUFFIXES)
        )
    if isinstance(dpi, bool) or not isinstance(dpi, int) or dpi < 1:
        raise ConfigError(f"dpi: expected a positive integer, got {dpi!r}")
    fig = figure(genotype)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=suffix[1:], dpi=dpi)
    write_bytes(path, buffer.getvalue())
    return path


# ----------------------------------------------------------------------------- cell DAG
def draw_cell(
    ax: Axes,
    nodes: Sequence[Sequence[tuple[str, int]]],
    inputs: Sequence[str],
    output: str,
    concat: Sequence[int] | None = None,
    color: Mapping[str, str] | Callable[[str], str] | None = None,
    node_names: Sequence[str] | None = None,
    title: str | None = None,
    fontsize: float = 8.0,
) -> None:
    """Draw a cell as a DAG on ``ax``: inputs left, nodes in a column, the output right.

    Each edge is an arrow labelled with its operation; labels are moved along their edge until
    they overlap no node and no other label. Edges between nodes bow out to the right of the
    column; the nodes the output concatenates feed it through dashed grey lines.

    Args:
        ax: The axes to draw on (a figure without a canvas that measures text gets an Agg one).
        nodes: For each node, its incoming edges ``(label, source)``: a source below
            ``len(inputs)`` is that input, ``len(inputs) + k`` is node ``k`` (``k`` earlier).
        inputs: Names of the cell's inputs, top to bottom.
        output: Name of the cell's output.
        concat: The nodes (0-based) the output concatenates (default: every node).
        color: Edge colour per label (mapping or function; default: one colour per label).
        node_names: Names of the nodes (default ``0``, ``1``, ...).
        title: Title of the axes.
        fontsize: Font size of the edge labels (names are one point larger).

    Raises:
        ValueError: If an edge reads a node that is not earlier.
    """
    n_in, n = len(inputs), len(nodes)
    for i, edges in enumerate(nodes):
        for _, src in edges:
            if not 0 <= src < n_in + i:
                raise ValueError(f"node {i}: source {src} is not an input or an earlier node")
    names = list(node_names) if node_names is not None else [str(i) for i in range(n)]
    labels = [label for edges in nodes for label, _ in edges]
    if color is None:
        color = op_colors(list(dict.fromkeys(labels)))
    colour_of = color if callable(color) else (lambda label: color.get(label, "black"))
    concat = list(range(n)) if concat is None else list(concat)

    gap = 1.5  # vertical distance between nodes
    col_x = 4.8  # x of the node column
    span_bulge = [_bulge(b - a) for i, edges in enumerate(nodes) for a, b in _inner(edges, n_in, i)]
    out_x = col_x + max([0.0, *span_bulge]) + 2.2
    node_y = [-gap * i for i in range(n)]
    mid = (node_y[0] + node_y[-1]) / 2 if n else 0.0
    in_gap = max(gap, (n - 1) * gap / max(n_in, 1)) if n_in > 1 else 0.0
    in_y = [mid + in_gap * ((n_in - 1) / 2 - k) for k in range(n_in)]
    pos = [(0.0, y) for y in in_y] + [(col_x, y) for y in node_y]
    top = max([*in_y, *node_y, 0.0]) + 0.7
    bottom = min([*in_y, *node_y, 0.0]) - 0.7
    ax.set_xlim(-0.8, out_x + 0.8)
    ax.set_ylim(bottom, top)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=fontsize + 2)
    ax.apply_aspect()

    placer = _LabelPlacer(ax)
    name_kw = {"ha": "center", "va": "center", "fontsize": fontsize + 1, "zorder": 4}
    for k, name in enumerate(inputs):
        text = ax.text(*pos[k], name, **name_kw, bbox=_box("#d9e7f5", "round,pad=0.35"))
        placer.occupy(text)
    for i, name in enumerate(names):
        text = ax.text(*pos[n_in + i], name, **name_kw, bbox=_box("#f5f0d0", "circle,pad=0.3"))
        placer.occupy(text)
    out_text = ax.text(out_x, mid, output, **name_kw, bbox=_box("#d9f0d9", "round,pad=0.35"))
    placer.occupy(out_text)

    concat_arrow = _arrow("#999999", 0.0, 1.0, "--")
    for i in concat:
        ax.annotate("", xy=(out_x, mid), xytext=pos[n_in + i], arrowprops=concat_arrow)
    for i, edges in enumerate(nodes):
        for label, src in edges:
            start, end = pos[src], pos[n_in + i]
            rad = 0.0
            if src >= n_in:  # node to node: bow out to the right of the column
                rad = -_bulge(i - (src - n_in)) * 2 / math.dist(start, end)
            edge_colour = colour_of(label)
            ax.annotate("", xy=end, xytext=start, arrowprops=_arrow(edge_colour, rad, 1.4, "-"))
            placer.place(label, start, end, rad, fontsize=fontsize, colour=edge_colour)


def _inner(edges: Sequence[tuple[str, int]], n_in: int, i: int) -> list[tuple[int, int]]:
    """The node-to-node edges ``(source node, node)`` among ``edges`` of node ``i``."""
    return [(src - n_in, i) for _, src in edges if src >= n_in]


def _bulge(span: int) -> float:
    """How far an edge between nodes ``span`` apart bows out of the column (data units)."""
    return 0.55 + 0.45 * (span - 1)


def _box(face: str, style: str) -> dict[str, Any]:
    return {"boxstyle": style, "facecolor": face, "edgecolor": "#444444", "linewidth": 0.8}


def _arrow(colour: str, rad: float, width: float, style: str) -> dict[str, Any]:
    return {
        "arrowstyle": "-|>",
        "color": colour,
        "lw": width,
        "linestyle": style,
        "connectionstyle": f"arc3,rad={rad:.4f}",
        "shrinkA": 11,
        "shrinkB": 11,
        "mutation_scale": 10,
    }


Quad = list[tuple[float, float]]
"""A convex quadrilateral in display coordinates (the corners of a possibly rotated box)."""


def text_shape(text: Text, renderer: Any) -> Quad:
    """The corners of ``text``'s box (its bbox patch included) as drawn, rotation included.

    Args:
        text: A text artist.
        renderer: The canvas's renderer (``fig.canvas.get_renderer()``).

    Returns:
        Four display-space corners.
    """
    from matplotlib.transforms import Bbox

    angle = text.get_rotation()
    if angle:
        text.set_rotation(0)
    box = text.get_window_extent(renderer)
    patch = text.get_bbox_patch()
    if patch is not None:  # measured from the text: a patch is only placed when drawn
        style = patch.get_boxstyle()
        pad = renderer.points_to_pixels(getattr(style, "pad", 0.0) * text.get_fontsize())
        box = box.padded(pad)
        if type(style).__name__ == "Circle":
            half = max(box.width, box.height) / 2
            x, y = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2
            box = Bbox.from_extents(x - half, y - half, x + half, y + half)
    if not angle:
        return [(box.x0, box.y0), (box.x1, box.y0), (box.x1, box.y1), (box.x0, box.y1)]
    text.set_rotation(angle)
    # rotation_mode="anchor" turns the box about the text's anchor; "default" about its centre
    if text.get_rotation_mode() == "anchor":
        ox, oy = text.get_transform().transform(text.get_position())
    else:
        ox, oy = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    corners = [(box.x0, box.y0), (box.x1, box.y0), (box.x1, box.y1), (box.x0, box.y1)]
    return [
        (ox + c * (x - ox) - s * (y - oy), oy + s * (x - ox) + c * (y - oy)) for x, y in corners
    ]


def shapes_overlap(a: Quad, b: Quad) -> bool:
    """Whether two convex polygons overlap (separating-axis test; touching is no overlap).

    Example:
        >>> square = [(0, 0), (2, 0), (2, 2), (0, 2)]
        >>> shapes_overlap(square, [(1, 1), (3, 1), (3, 3), (1, 3)])
        True
        >>> shapes_overlap(square, [(3, 0), (4, 1), (3, 2), (2.5, 1)])
        False
    """
    for poly in (a, b):
        for (x1, y1), (x2, y2) in zip(poly, poly[1:] + poly[:1]):
            nx, ny = y1 - y2, x2 - x1
            pa = [nx * x + ny * y for x, y in a]
            pb = [nx * x + ny * y for x, y in b]
            if max(pa) <= min(pb) or max(pb) <= min(pa):
                return False
    return True


def label_overlaps(fig: Figure) -> list[tuple[str, str]]:
    """The pairs of non-empty texts drawn in the same axes of ``fig`` whose boxes overlap.

    The readability check of a drawing: a good one returns ``[]``.

    Args:
        fig: The figure (one without a canvas that measures text gets an Agg one).

    Returns:
        The overlapping pairs, by their strings.
    """
    renderer = _renderer(fig)
    pairs = []
    for ax in fig.axes:
        texts = [t for t in ax.texts if t.get_visible() and t.get_text()]
        shapes = [text_shape(t, renderer) for t in texts]
        for i in range(len(texts)):
            for j in range(i):
                if shapes_overlap(shapes[i], shapes[j]):
                    pairs.append((texts[j].get_text(), texts[i].get_text()))
    return pairs


class _LabelPlacer:
    """Puts edge labels where they overlap nothing already placed (measured on the canvas)."""

    STEPS = tuple(sorted((k / 40 for k in range(8, 33)), key=lambda t: (abs(t - 0.5), t)))

    def __init__(self, ax: Axes) -> None:
        self.ax = ax
        self.renderer = _renderer(ax.get_figure(root=True))
        self.taken: list[Quad] = []

    def occupy(self, text: Text) -> None:
        self.taken.append(text_shape(text, self.renderer))

    def _collisions(self, shape: Quad) -> int:
        return sum(shapes_overlap(shape, other) for other in self.taken)

    def place(
        self,
        label: str,
        start: tuple[float, float],
        end: tuple[float, float],
        rad: float,
        fontsize: float,
        colour: str,
    ) -> None:
        to_display = self.ax.transData.transform
        to_data = self.ax.transData.inverted().transform
        (x1, y1), (x2, y2) = to_display(start), to_display(end)
        cx = (x1 + x2) / 2 + rad * (y2 - y1)  # the control point of matplotlib's arc3
        cy = (y1 + y2) / 2 - rad * (x2 - x1)
        text = self.ax.text(
            0.0,
            0.0,
            label,
            ha="center",
            va="center",
            fontsize=fontsize,
            color=colour,
            zorder=5,
            rotation_mode="anchor",
            bbox={"boxstyle": "round,pad=0.3", "facecolor": "white", "edgecolor": "none"},
        )
        tried: list[tuple[int, tuple[float, float], float, Quad]] = []
        for t in self.STEPS:
            u = 1 - t
            x = u * u * x1 + 2 * u * t * cx + t * t * x2
            y = u * u * y1 + 2 * u * t * cy + t * t * y2
            dx = 2 * u * (cx - x1) + 2 * t * (x2 - cx)  # the tangent: labels run along edges
            dy = 2 * u * (cy - y1) + 2 * t * (y2 - cy)
            rotation = (math.degrees(math.atan2(dy, dx)) + 90) % 180 - 90
            position = tuple(to_data((x, y)))
            text.set_rotation(rotation)
            text.set_position(position)
            shape = text_shape(text, self.renderer)
            tried.append((self._collisions(shape), position, rotation, shape))
            if tried[-1][0] == 0:
                break
        _, position, rotation, shape = min(tried, key=lambda candidate: candidate[0])
        text.set_position(position)
        text.set_rotation(rotation)
        self.taken.append(shape)


# ----------------------------------------------------------------------------- command line
class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors raise :class:`ConfigError` (one line)."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{self.prog}: {message}")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lightning-nas draw",
        description="Draw a genotype's architecture as a PNG or SVG file.",
    )
    parser.add_argument("genotype", help="a genotype YAML file")
    parser.add_argument(
        "-o",
        "--output",
        default=None,
        help="the drawing, .png or .svg (default: the genotype's path with .png)",
    )
    parser.add_argument("--dpi", type=int, default=100, help="resolution of a PNG (default 100)")
    return parser


def draw_main(argv: list[str] | None = None) -> int:
    """Run ``lightning-nas draw GENOTYPE.yaml [-o OUT.png|svg] [--dpi N]``; return the status.

    Prints the path written. User errors (a missing or invalid genotype file, a kind without a
    drawing, an unsupported suffix) print one line on stderr and return 2
    (``LIGHTNING_NAS_TRACEBACK=1`` raises instead).

    Args:
        argv: The arguments after ``draw`` (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(argv)
        output = Path(args.output) if args.output else Path(args.genotype).with_suffix(".png")
        written = save(args.genotype, output, dpi=args.dpi)
    except SystemExit as exit_:  # --help
        return int(exit_.code or 0)
    except (ConfigError, GenotypeError, OSError) as err:
        if os.environ.get("LIGHTNING_NAS_TRACEBACK"):
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"error: {type(err).__name__}: {message}", file=sys.stderr)
        return 2
    print(written)
    return 0
