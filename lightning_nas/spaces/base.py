"""The search-space protocol every supernet implements.

A search space is an :class:`torch.nn.Module` that :class:`lightning_nas.search.SearchModule`
drives through a small, uniform surface. The search module never asks which space it holds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lightning_nas.genotypes import Genotype


class SearchSpace(nn.Module, ABC):
    """Base class of every supernet.

    Subclasses register their architecture parameters as ``nn.Parameter`` attributes (so that
    they are checkpointed, moved to the device and broadcast by DDP like any other parameter)
    and list them in :meth:`arch_parameters`. Every other parameter is a weight.

    Capabilities are class attributes:

    * ``num_classes`` — number of output classes of the segmentation head.
    """

    num_classes: int

    @abstractmethod
    def forward(self, x: torch.Tensor) -> Any:
        """Per-pixel logits ``(N, num_classes, H, W)`` at the input size.

        In training mode a space may return any structure instead (e.g. several predictions
        of several sampled sub-networks) if it overrides :meth:`search_loss` and
        :meth:`output_logits`; in eval mode it must return the logits tensor.
        """

    @abstractmethod
    def arch_parameters(self) -> dict[str, nn.Parameter]:
        """The architecture parameters, by name (names are used as log keys)."""

    @abstractmethod
    def derive(self) -> Genotype:
        """The discrete architecture the current architecture parameters encode."""

    # ----------------------------------------------------------------- training protocol
    def set_phase(self, phase: str) -> None:
        """Called by the search before each loss: ``"weight"`` (trainA) or ``"arch"`` (trainB).

        Default: ignored. A space whose training forward differs between the two steps (e.g.
        FasterSeg trains several widths per weight step, one sampled width per architecture
        step) records it here.
        """

    def search_loss(self, output: Any, mask: torch.Tensor, ignore_index: int) -> torch.Tensor:
        """The task loss of a training-mode ``forward`` output (default: pixel-wise CE)."""
        return F.cross_entropy(output, mask.long(), ignore_index=ignore_index)

    def output_logits(self, output: Any) -> torch.Tensor:
        """The logits loss-term callbacks see for a training-mode output (default: itself)."""
        return output

    def extra_genotypes(self) -> dict[str, Genotype]:
        """Further derived architectures to write beside :meth:`derive`'s, by name.

        Default: none. FasterSeg's co-search also derives its teacher (``"teacher"``), which
        ``callbacks.GenotypeWriter`` writes as ``genotype_teacher.yaml``.
        """
        return {}

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        """Every parameter that is not an architecture parameter."""
        arch_ids = {id(p) for p in self.arch_parameters().values()}
        return (p for p in self.parameters() if id(p) not in arch_ids)

    def arch_distributions(self) -> dict[str, torch.Tensor]:
        """Normalised architecture weights by name, for logging and plots.

        The default applies a softmax over the last dimension of each architecture parameter.
        """
        return {k: torch.softmax(v.detach(), dim=-1) for k, v in self.arch_parameters().items()}
