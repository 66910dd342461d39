"""lightning_nas: neural architecture search for semantic segmentation on PyTorch Lightning.

Four stages: search (:class:`~lightning_nas.search.SearchModule` + a search space) → derive (a
versioned genotype YAML) → retrain (:class:`~lightning_nas.segmentation.SegmentationModule` +
:func:`build_network`) → evaluate / predict / export.
"""

from lightning_nas.genotypes import build_network

__all__ = ["build_network"]
__version__ = "0.1.0"
