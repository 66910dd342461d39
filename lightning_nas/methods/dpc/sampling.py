"""Random dense prediction cells: DPC's own discrete space (torch-free).

:class:`~lightning_nas.methods.dpc.space.DPCSpace` is already uniform over the valid cells of
``B`` branches: branch ``i`` draws its input among the ``i + 1`` valid ones (the backbone
feature or an earlier branch) and its operation among the 81, each decision uniform and
independent, and every combination is a distinct valid genotype (``B! · 81^B`` of them), so
every genotype has probability ``1 / (B! · 81^B)``.

Example:
    >>> from lightning_nas.genotypes import load
    >>> random_space(load("experiments/genotypes/dpc_cityscapes.yaml")).size()
    418414128120
"""

from __future__ import annotations

from lightning_nas.errors import ConfigError
from lightning_nas.methods.dpc.genotype import DPCGenotype
from lightning_nas.methods.dpc.space import DPCSpace

__all__ = ["random_space"]


def random_space(genotype: DPCGenotype) -> DPCSpace:
    """The cells with as many branches as ``genotype``.

    Args:
        genotype: A DPC genotype.

    Returns:
        ``DPCSpace(num_branches=len(genotype.branches))``.
    """
    if not isinstance(genotype, DPCGenotype):
        raise ConfigError(f"random_space: expected a DPCGenotype, got {type(genotype).__name__}")
    return DPCSpace(num_branches=genotype.num_branches)
