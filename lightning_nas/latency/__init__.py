"""Device latency: measuring operations, versioned lookup tables, the ``latency`` command.

* :mod:`~lightning_nas.latency.measure` — :class:`OpConfig` (an op at a shape), :func:`build_op`,
  :func:`measure_module` (the one timing routine), :class:`OpTimer`.
* :mod:`~lightning_nas.latency.table` — :class:`LatencyTable` (build ahead, save, load with
  validation, strict lookups).
* :mod:`~lightning_nas.latency.cli` — ``lightning-nas latency build|show``.

A search space that supports latency-aware search exposes ``latency_configs(input_size)`` (what
to measure) and ``expected_latency(table)`` (a differentiable scalar, ms), optionally
``latency_components(table)`` (decoupled terms) and ``derived_latency(table)`` (the table
estimate of the currently derived network); ``callbacks.LatencyRegularization`` uses them.
"""

from lightning_nas.latency.measure import OpConfig, OpTimer, build_op, device_name, measure_module
from lightning_nas.latency.table import (
    SCHEMA_VERSION,
    LatencyTable,
    LatencyTableError,
    MissingLatencyError,
)

__all__ = [
    "SCHEMA_VERSION",
    "LatencyTable",
    "LatencyTableError",
    "MissingLatencyError",
    "OpConfig",
    "OpTimer",
    "build_op",
    "device_name",
    "measure_module",
]
