"""Device latency: operation configs, building and timing them, versioned lookup tables.

Method-agnostic: nothing here knows a method.

* :mod:`~lightning_nas.latency.config` — :class:`OpConfig`, an op at a shape (torch-free).
* :mod:`~lightning_nas.latency.blocks` — :func:`build_op`: the shared blocks, plus the op
  builders a method supplies.
* :mod:`~lightning_nas.latency.measure` — :func:`measure_module` (the one timing routine),
  :class:`OpTimer`, :func:`steady_allocator`.
* :mod:`~lightning_nas.latency.table` — :class:`LatencyTable` (build ahead, save, load with
  validation, strict lookups).
* :mod:`~lightning_nas.latency.estimate` — :func:`network_estimate` (a derived network's table
  estimate), the correlation statistics of ``benchmarks/latency_correlation.py``.
* :mod:`~lightning_nas.latency.protocols` — what a latency-aware search space implements
  (:class:`LatencyAware`, :class:`LatencyComponents`, :class:`DerivedLatency`), checked with
  ``isinstance`` by ``callbacks.LatencyRegularization`` and the ``latency`` command.
* :mod:`~lightning_nas.latency.cli` — ``lightning-nas latency build|show``.
"""

from lightning_nas.latency.blocks import BuiltOp, OpBuilder, build_op
from lightning_nas.latency.config import OpConfig
from lightning_nas.latency.estimate import network_call_config, network_estimate
from lightning_nas.latency.measure import OpTimer, device_name, measure_module, steady_allocator
from lightning_nas.latency.protocols import DerivedLatency, LatencyAware, LatencyComponents
from lightning_nas.latency.table import (
    SCHEMA_VERSION,
    LatencyTable,
    LatencyTableError,
    MissingLatencyError,
)

__all__ = [
    "SCHEMA_VERSION",
    "BuiltOp",
    "DerivedLatency",
    "LatencyAware",
    "LatencyComponents",
    "LatencyTable",
    "LatencyTableError",
    "MissingLatencyError",
    "OpBuilder",
    "OpConfig",
    "OpTimer",
    "build_op",
    "device_name",
    "measure_module",
    "network_call_config",
    "network_estimate",
    "steady_allocator",
]
