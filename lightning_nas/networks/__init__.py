"""Discrete networks built from genotypes: what is retrained, evaluated and exported."""

from lightning_nas.networks.darts import DartsCell, DartsNetwork

__all__ = ["DartsCell", "DartsNetwork"]
