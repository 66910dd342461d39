"""The search methods, one package each: ``lightning_nas/methods/<name>/``.

A method's package holds what only it uses, from these files (each optional but the genotype):

* ``genotype.py`` — its genotype kind(s) and candidate-operation names (torch-free);
* ``ops.py`` — its own operations (the shared blocks are in :mod:`lightning_nas.ops`);
* ``space.py`` — the supernet (a :class:`~lightning_nas.spaces.base.SearchSpace`);
* ``network.py`` — the derived network a genotype builds;
* ``derive.py`` — decoding architecture parameters into a genotype;
* ``latency.py`` — its latency configurations and op builders (:mod:`lightning_nas.latency`);
* ``release.py`` — importers of the published artefacts of its paper's release;
* ``callbacks.py`` — callbacks only it uses;
* ``draw.py`` — ``draw(genotype) -> Figure`` (``lightning-nas draw``; the genotype's ``drawing``);
* ``sampling.py`` — ``random_space(genotype) -> DiscreteSpace``, uniformly random genotypes of
  its space (random baselines; the genotype's ``random_space``).

Its ``__init__.py`` lists its public names in ``EXPORTS`` (name → submodule) and loads them
lazily, so importing a method's genotype never imports torch. :data:`BUILTIN` is the index: one
line per method; :func:`lookup` finds a public name in any of them (what the short YAML class
paths ``lightning_nas.spaces.<Space>``, ``lightning_nas.networks.<Network>`` and
``callbacks.<Callback>`` resolve through). ``docs/contributing.md`` walks through adding one.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["BUILTIN", "lookup"]

BUILTIN: dict[str, str] = {
    "darts": "lightning_nas.methods.darts",
    "autodeeplab": "lightning_nas.methods.autodeeplab",
    "fasterseg": "lightning_nas.methods.fasterseg",
    "dpc": "lightning_nas.methods.dpc",
    "smnas": "lightning_nas.methods.smnas",
}
"""The built-in methods: name → package (one index line per method)."""


def lookup(name: str) -> Any | None:
    """The public object ``name`` of the first built-in method that exports it, or ``None``.

    Args:
        name: A name listed in a method package's ``EXPORTS`` (e.g. ``"FasterSegSpace"``).

    Returns:
        The object (imported on demand), or ``None`` if no method exports ``name``.
    """
    for package in BUILTIN.values():
        module = importlib.import_module(package)
        if name in getattr(module, "EXPORTS", {}):
            return getattr(module, name)
    return None


def exporter(package: str, exports: dict[str, str]) -> Any:
    """A PEP 562 ``__getattr__`` for a method package: ``name`` from ``package.<exports[name]>``.

    Args:
        package: The package's ``__name__``.
        exports: Public name → submodule name.

    Returns:
        The module-level ``__getattr__``.
    """

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
