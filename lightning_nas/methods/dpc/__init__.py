"""DPC (Chen et al., NeurIPS 2018): a dense prediction cell found by random search.

``genotype.py`` (:class:`DPCGenotype`; the 81 operations ``OPS``, ``RATES``, ``GRIDS``),
``ops.py`` (the release's separable atrous conv, 1×1 conv and pyramid pooling), ``network.py``
(:class:`DPCCell`, :class:`DPCHead` on backbone features, :class:`DPCNetwork` with an smp
encoder), ``space.py`` (:class:`DPCSpace`, a discrete space sampled through Optuna trials),
``release.py`` (the release's JSON cell format). Names load lazily (PEP 562): importing the
genotype imports no torch.
"""

from lightning_nas.methods import exporter

EXPORTS: dict[str, str] = {
    "DPCGenotype": "genotype",
    "PyramidPooling": "ops",
    "SeparableAtrousConv": "ops",
    "DPCSpace": "space",
    "DPCCell": "network",
    "DPCHead": "network",
    "DPCNetwork": "network",
    "from_release_json": "release",
    "to_release_json": "release",
}
"""Public name → submodule."""

__all__ = list(EXPORTS)
__getattr__ = exporter(__name__, EXPORTS)
