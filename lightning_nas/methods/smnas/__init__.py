"""SM-NAS (Yao et al., AAAI 2020) carried to segmentation: structural then modular search.

``genotype.py`` (:class:`SMNASGenotype`: encoder × decoder × input size, or a coded encoder),
``code.py`` (stage-2 encoder codes: parse, validate, mutate), ``encoder.py`` (the coded
ResNet-style smp encoder, BatchNorm or GroupNorm + Weight Standardisation), ``structural.py``
(the curated encoder and decoder lists, build-time checks with reasons), ``network.py``
(:class:`SMNASNetwork`), ``space.py`` (:class:`StructuralSpace`, :class:`ModularSpace`),
``search.py`` (the two stages chained, the Pareto front, plots). Names load lazily (PEP 562).
"""

from lightning_nas.methods import exporter

EXPORTS: dict[str, str] = {
    "SMNASGenotype": "genotype",
    "SMNASNetwork": "network",
    "StructuralSpace": "space",
    "ModularSpace": "space",
}
"""Public name → submodule."""

__all__ = list(EXPORTS)
__getattr__ = exporter(__name__, EXPORTS)
