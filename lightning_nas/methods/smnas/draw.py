"""Drawing of an SM-NAS genotype: input → encoder stages → decoder → logits, as labelled boxes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lightning_nas.draw import new_figure
from lightning_nas.methods.smnas.code import stage_widths
from lightning_nas.methods.smnas.genotype import SMNASGenotype, dilated_stride

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["draw", "stage_strides"]


def stage_strides(genotype: SMNASGenotype) -> list[int]:
    """The output stride of each encoder stage the decoder receives (dilated stages capped).

    Example:
        >>> stage_strides(SMNASGenotype(encoder="resnet18", decoder="DeepLabV3Plus",
        ...                             input_size=(64, 64), output_stride=8))
        [2, 4, 8, 8, 8]
    """
    cap = dilated_stride(genotype.decoder, genotype.output_stride) or 2**genotype.encoder_depth
    return [min(2**k, cap) for k in range(1, genotype.encoder_depth + 1)]


def draw(genotype: SMNASGenotype) -> Figure:
    """The pipeline: the input, one box per encoder stage, the decoder, the logits.

    Encoder stages show their output stride (``/8 atrous`` where the decoder dilates them) and,
    for a coded (stage-2) encoder, the stage's block code and output width; the decoder shows
    its architecture and width. The title gives the candidate's label, input size and output
    stride.

    Args:
        genotype: The genotype.

    Returns:
        The figure.

    Example:
        >>> fig = draw(SMNASGenotype(encoder="coded", decoder="Unet", input_size=(64, 64),
        ...                          base_width=64, code="11-21-21-21", decoder_channels=128))
        >>> fig.axes[0].texts[2].get_text().splitlines()
        ['stage 1', '/4', 'code 11', '64 ch']
    """
    strides = stage_strides(genotype)
    h, w = genotype.input_size
    boxes: list[tuple[str, str]] = [(f"input\n{h}×{w}", "#d9e7f5")]
    if genotype.stage == 2:
        assert genotype.code is not None and genotype.base_width is not None  # validated
        codes = genotype.code.split("-")
        widths = stage_widths(genotype.code, genotype.base_width)
        stages = [f"stem\n/2\n{genotype.base_width} ch"]
        for k, stride in enumerate(strides[1:]):
            stages.append(f"stage {k + 1}\n/{stride}\ncode {codes[k]}\n{widths[k]} ch")
    else:
        stages = [f"stage {k + 1}\n/{s}" for k, s in enumerate(strides)]
    for k, text in enumerate(stages):
        if strides[k] < 2 ** (k + 1):  # a stage the decoder dilates keeps the stride
            text = text.replace(f"/{strides[k]}", f"/{strides[k]} atrous", 1)
        boxes.append((text, "#f5f0d0"))
    channels = genotype.decoder_channels
    boxes.append(
        (f"{genotype.decoder}\ndecoder" + (f"\n{channels} ch" if channels else ""), "#e8dcf0")
    )
    boxes.append((f"logits\n{h}×{w}", "#d9f0d9"))

    step = 1.35
    fig = new_figure(1.0 + 1.2 * len(boxes), 2.6)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.74)
    ax = fig.subplots()
    ax.set_xlim(-0.8, step * (len(boxes) - 1) + 0.8)
    ax.set_ylim(-0.7, 0.7)
    ax.set_axis_off()
    artists = []
    for k, (text, face) in enumerate(boxes):
        artists.append(
            ax.text(
                step * k,
                0.0,
                text,
                ha="center",
                va="center",
                fontsize=8,
                bbox={"boxstyle": "round,pad=0.5", "facecolor": face, "edgecolor": "#444444"},
            )
        )
    for before, after in zip(artists, artists[1:]):  # box edge to box edge
        ax.annotate(
            "",
            xy=(0.0, 0.5),
            xycoords=after,
            xytext=(1.0, 0.5),
            textcoords=before,
            arrowprops={"arrowstyle": "-|>", "color": "#444444", "lw": 1.2, "shrinkA": 9,
                        "shrinkB": 9},
        )  # fmt: skip
    encoder = (
        f"coded encoder (base {genotype.base_width}, code {genotype.code}, norm {genotype.norm})"
        if genotype.stage == 2
        else f"encoder {genotype.encoder}"
    )
    fig.suptitle(
        f"SM-NAS genotype (stage {genotype.stage}): {genotype.label}\n{encoder}, depth "
        f"{genotype.encoder_depth}; decoder {genotype.decoder}; output stride {strides[-1]}",
        fontsize=11,
    )
    return fig
