"""DARTS (Liu et al., ICLR 2019): a normal and a reduction cell searched by continuous relaxation.

``genotype.py`` (:class:`DartsGenotype`, :data:`DARTS_PRIMITIVES`), ``ops.py`` (:func:`make_op`),
``space.py`` (:class:`DartsSpace`, the supernet), ``latency.py`` (its expected latency),
``network.py`` (:class:`DartsNetwork`, the derived network). Names load lazily (PEP 562):
importing the genotype imports no torch.
"""

from lightning_nas.methods import exporter

EXPORTS: dict[str, str] = {
    "DARTS_PRIMITIVES": "genotype",
    "DartsGenotype": "genotype",
    "make_op": "ops",
    "DartsSpace": "space",
    "DartsCell": "network",
    "DartsNetwork": "network",
}
"""Public name → submodule."""

__all__ = list(EXPORTS)
__getattr__ = exporter(__name__, EXPORTS)
