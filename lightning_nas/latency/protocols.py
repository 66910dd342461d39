"""What a latency-aware search space implements, as ``@runtime_checkable`` protocols.

``callbacks.LatencyRegularization``, ``lightning-nas latency build`` and the contract tests check
a space with ``isinstance(space, LatencyAware)`` (and the optional protocols below) instead of
probing attribute names, so a method's space states its capabilities by its methods alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch

    from lightning_nas.genotypes import Genotype
    from lightning_nas.latency.blocks import BuiltOp
    from lightning_nas.latency.config import OpConfig
    from lightning_nas.latency.table import LatencyTable

__all__ = ["DerivedCandidates", "DerivedLatency", "LatencyAware", "LatencyComponents"]


@runtime_checkable
class LatencyAware(Protocol):
    """A space whose expected latency can be regularised from a latency table."""

    def latency_configs(self, input_size: tuple[int, int]) -> list[OpConfig]:
        """Every configuration a table must hold for this space at ``input_size``."""
        ...

    def latency_op(self, config: OpConfig) -> BuiltOp | None:
        """Build one of this method's own operations for timing (``None``: a shared block).

        Passed to :func:`~lightning_nas.latency.blocks.build_op` as an op builder when a table
        is built for the space.
        """
        ...

    def expected_latency(
        self, table: LatencyTable, input_size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """The differentiable expected latency (table ms) under the architecture parameters."""
        ...


@runtime_checkable
class LatencyComponents(Protocol):
    """A space that reports decoupled latency terms (FasterSeg's fine-grained latency loss)."""

    def latency_components(
        self, table: LatencyTable, input_size: tuple[int, int] | None = None
    ) -> Mapping[str, torch.Tensor]:
        """The latency terms by name (table ms), each with gradient to one kind of decision."""
        ...

    def latency_component_weights(self) -> dict[str, float]:
        """The default weight of each term (the callback's ``component_weights: null``)."""
        ...


@runtime_checkable
class DerivedLatency(Protocol):
    """A space that prices a derived network from the table (for targets and FPS windows)."""

    def derived_latency(
        self,
        table: LatencyTable,
        genotype: Genotype | None = None,
        input_size: tuple[int, int] | None = None,
    ) -> Any:
        """Table latency (ms) of ``genotype`` (default: the currently derived one)."""
        ...


@runtime_checkable
class DerivedCandidates(Protocol):
    """A space whose search may end with one of several derived networks.

    FasterSeg's student ends with one of two branch pairs; the release adapts λ when *either*
    leaves the FPS window, so ``LatencyRegularization`` prices each candidate.
    """

    def derive_candidates(self) -> dict[str, Genotype]:
        """The candidate derived networks, by name."""
        ...
