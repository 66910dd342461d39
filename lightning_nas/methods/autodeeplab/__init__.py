"""Auto-DeepLab (Liu et al., CVPR 2019): a cell and a network-level path over four strides.

``genotype.py`` (:class:`AutoDeepLabGenotype`, :data:`AUTODEEPLAB_PRIMITIVES`), ``ops.py``,
``space.py`` (:class:`AutoDeepLabSpace`), ``viterbi.py`` (decoding the network-level path),
``latency.py`` (table configs, expected latency), ``network.py`` (:class:`AutoDeepLabNetwork`).
Names load lazily (PEP 562): importing the genotype imports no torch.
"""

from lightning_nas.methods import exporter

EXPORTS: dict[str, str] = {
    "AUTODEEPLAB_PRIMITIVES": "genotype",
    "AutoDeepLabGenotype": "genotype",
    "make_autodeeplab_op": "ops",
    "AutoDeepLabSpace": "space",
    "AutoDeepLabCell": "network",
    "AutoDeepLabNetwork": "network",
}
"""Public name → submodule."""

__all__ = list(EXPORTS)
__getattr__ = exporter(__name__, EXPORTS)
