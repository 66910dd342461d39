"""Contract test suites: base classes each plug-in's tests subclass (smp ``tests/models/base.py``).

Not collected themselves (no ``Test`` prefix); ``tests/methods/<name>/test_contract.py`` subclasses
them in a few lines. See ``docs/contributing.md``.
"""

from pathlib import Path

import pytest

# plain asserts in these helper modules get pytest's introspection, as in a test module
pytest.register_assert_rewrite(
    "contracts.latency", "contracts.loss_term", "contracts.network", "contracts.space"
)

from contracts.latency import LatencyAwareContract, fake_ms, fake_table, set_one_hot  # noqa: E402
from contracts.loss_term import LossTermContract  # noqa: E402
from contracts.network import NetworkContract  # noqa: E402
from contracts.space import SearchSpaceContract  # noqa: E402

GENOTYPES = Path(__file__).resolve().parents[2] / "experiments" / "genotypes"
"""The published genotypes shipped with the project (the network contracts build them)."""

__all__ = [
    "GENOTYPES",
    "LatencyAwareContract",
    "LossTermContract",
    "NetworkContract",
    "SearchSpaceContract",
    "fake_ms",
    "fake_table",
    "set_one_hot",
]
