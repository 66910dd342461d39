"""Random SM-NAS candidates: the stage's own space around a genotype's fixed parts.

A stage-1 genotype (a stock smp encoder) gets a
:class:`~lightning_nas.methods.smnas.space.StructuralSpace` at its input size and encoder depth:
every curated encoder (:data:`~lightning_nas.methods.smnas.structural.ENCODERS`, plus its own)
× every decoder, the output stride of dilating decoders drawn from 16 and 8. A stage-2 genotype
(a coded encoder) gets a :class:`~lightning_nas.methods.smnas.space.ModularSpace` that keeps its
decoder, input size, normalisation and output stride, as SM-NAS's modular stage keeps the
structure it refines; base width, blocks and doublings per stage, and decoder width are drawn
(the defaults, widened to include the genotype's own values).

Not exactly uniform over genotypes (the spaces are the searches' own, kept so a random baseline
samples what the search samples; candidates smp cannot build are infeasible and
:func:`~lightning_nas.strategies.sampling.sample_genotypes` skips them):

* stage 1 is uniform over the feasible (encoder, decoder) pairs; a dilating decoder's pair is
  split between its two output strides (PAN takes 16 either way), so a DeepLabV3/V3+ genotype
  is half as likely as another decoder's;
* stage 2 draws each stage's number of blocks ``b`` uniformly (not in proportion to its
  ``b + 1`` codes), then its doubling block among ``-1 .. max_blocks - 1`` whatever ``b``, a
  value ``>= b`` meaning none: a stage without a doubling has probability
  ``(max_blocks + 1 - b) / (max_blocks + 1)`` given ``b``, rather than ``1 / (b + 1)``.

Example:
    >>> from lightning_nas.methods.smnas.genotype import SMNASGenotype
    >>> g = SMNASGenotype(encoder="coded", decoder="Unet", input_size=(64, 64), base_width=64,
    ...                   code="11-21-21-21", decoder_channels=128)
    >>> space = random_space(g)
    >>> type(space).__name__, space.decoders, space.input_sizes
    ('ModularSpace', ('Unet',), ('64x64',))
"""

from __future__ import annotations

from lightning_nas.errors import ConfigError
from lightning_nas.methods.smnas.code import BASE_WIDTHS, parse_code
from lightning_nas.methods.smnas.genotype import (
    DECODERS,
    DEFAULT_OUTPUT_STRIDE,
    SMNASGenotype,
)
from lightning_nas.methods.smnas.space import ModularSpace, StructuralSpace

__all__ = ["random_space"]

_DECODER_CHANNELS = (128, 256, 512)
_MAX_BLOCKS = 8


def random_space(genotype: SMNASGenotype) -> StructuralSpace | ModularSpace:
    """The SM-NAS space of ``genotype``'s stage around its fixed parts (see the module docstring).

    Args:
        genotype: An SM-NAS genotype.

    Returns:
        A :class:`StructuralSpace` (stage 1) or a :class:`ModularSpace` (stage 2).
    """
    if not isinstance(genotype, SMNASGenotype):
        raise ConfigError(f"random_space: expected an SMNASGenotype, got {type(genotype).__name__}")
    if genotype.stage == 1:
        from lightning_nas.methods.smnas.structural import ENCODERS

        encoders = ENCODERS + (() if genotype.encoder in ENCODERS else (genotype.encoder,))
        return StructuralSpace(
            encoders=encoders,
            decoders=DECODERS,
            input_sizes=(genotype.input_size,),
            output_strides=(16, 8),
            encoder_depth=5 if genotype.decoder == "PSPNet" else genotype.encoder_depth,
        )
    longest = max(len(stage) for stage in parse_code(genotype.code or ""))
    channels = set(_DECODER_CHANNELS)
    if genotype.decoder_channels is not None:
        channels.add(genotype.decoder_channels)
    stride = genotype.output_stride or DEFAULT_OUTPUT_STRIDE.get(genotype.decoder, 16)
    return ModularSpace(
        decoders=(genotype.decoder,),
        input_sizes=(genotype.input_size,),
        base_widths=tuple(sorted(set(BASE_WIDTHS) | {genotype.base_width})),
        decoder_channels=tuple(sorted(channels)),
        max_blocks=max(_MAX_BLOCKS, longest),
        norm=genotype.norm,
        output_stride=stride,
    )
