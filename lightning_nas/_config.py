"""Turn a ``class_path`` / ``init_args`` spec or a callable into a factory (internal)."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping
from typing import Any


def import_object(path: str) -> Any:
    """Import ``package.module.Name`` and return ``Name``."""
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise ValueError(f"expected a dotted import path such as 'torch.optim.SGD', got {path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"cannot import module {module_name!r} of {path!r}: {err}") from err
    try:
        return getattr(module, attr)
    except AttributeError as err:
        raise ValueError(f"module {module_name!r} has no attribute {attr!r}") from err


def as_factory(spec: Any, key: str) -> Callable[..., Any]:
    """Return a callable for ``spec``.

    ``spec`` is either a callable (used as is) or a mapping ``{"class_path": ..., "init_args":
    {...}}`` as written in YAML; the result then calls the class with the init args plus the
    positional arguments it is given (the parameters for an optimizer, the optimizer for a
    scheduler). ``key`` names the config key in error messages.

    Example:
        >>> import torch
        >>> make = as_factory({"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1}}, "opt")
        >>> make([torch.nn.Parameter(torch.zeros(1))]).defaults["lr"]
        0.1
    """
    if callable(spec):
        return spec
    if isinstance(spec, Mapping) and "class_path" in spec:
        extra = set(spec) - {"class_path", "init_args"}
        if extra:
            raise ValueError(f"{key}: unexpected keys {sorted(extra)}; expected class_path, init_args")
        cls = import_object(spec["class_path"])
        return functools.partial(cls, **dict(spec.get("init_args") or {}))
    raise ValueError(
        f"{key}: expected a callable or a mapping with 'class_path' and 'init_args', got {spec!r}"
    )
