"""FasterSeg (Chen et al., ICLR 2020): multi-resolution branches, zoomed convs, searched widths.

``genotype.py`` (:class:`FasterSegGenotype`, :data:`FASTERSEG_PRIMITIVES`), ``ops.py`` (its
operators and head), ``space.py`` (:class:`FasterSegSpace`), ``derive.py`` (the release's
``network_metas``), ``latency.py`` (the decoupled expected latency), ``release.py`` (importing the
released architecture parameters), ``network.py`` (:class:`FasterSegNetwork`), ``callbacks.py``
(:class:`BranchSelection`). Names load lazily (PEP 562): importing the genotype imports no torch.
"""

from lightning_nas.methods import exporter

EXPORTS: dict[str, str] = {
    "FASTERSEG_PRIMITIVES": "genotype",
    "FasterSegGenotype": "genotype",
    "make_fasterseg_op": "ops",
    "FasterSegSpace": "space",
    "FasterSegNetwork": "network",
    "BranchSelection": "callbacks",
}
"""Public name → submodule."""

__all__ = list(EXPORTS)
__getattr__ = exporter(__name__, EXPORTS)
