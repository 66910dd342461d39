"""Turn a ``class_path`` / ``init_args`` spec or a callable into a factory (internal)."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping
from typing import Any

from lightning_nas.errors import ConfigError


def import_object(path: str) -> Any:
    """Import ``package.module.Name`` and return ``Name``."""
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise ConfigError(f"expected a dotted import path such as 'torch.optim.SGD', got {path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"cannot import module {module_name!r} of {path!r}: {err}") from err
    try:
        return getattr(module, attr)
    except AttributeError as err:
        raise ConfigError(f"module {module_name!r} has no attribute {attr!r}") from err


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
            raise ConfigError(
                f"{key}: unexpected keys {sorted(extra)}; expected class_path, init_args"
            )
        cls = import_object(spec["class_path"])
        init_args = dict(spec.get("init_args") or {})
        first = _first_parameter(cls)
        if first is not None and init_args.get(first, 0) is None:
            # a parsed config fills every argument, the one the factory provides with None
            del init_args[first]
        return functools.partial(cls, **init_args)
    raise ConfigError(
        f"{key}: expected a callable or a mapping with 'class_path' and 'init_args', got {spec!r}"
    )


def _first_parameter(cls: Any) -> str | None:
    """The name of the first parameter of ``cls`` (after ``self``), if it can be read."""
    import inspect

    try:
        params = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):
        return None
    return params[0].name if params else None


def drop_module_hparams(module: Any) -> None:
    """Remove ``nn.Module`` values from a LightningModule's saved hyperparameters.

    Under LightningCLI the hyperparameters hold each injected module's *config*
    (``class_path`` / ``init_args``), which ``load_from_checkpoint`` re-instantiates; built in
    Python they hold the module object itself, which would be pickled into every checkpoint and
    break ``torch.load(weights_only=True)``. Those are dropped: pass them again to
    ``load_from_checkpoint(path, space=...)``.
    """
    from torch import nn

    for store in (module.hparams, getattr(module, "_hparams_initial", {})):
        for key in [k for k, v in store.items() if isinstance(v, nn.Module)]:
            del store[key]


def missing_callbacks(module: Any, *defaults: type) -> list[Any]:
    """A new instance of each callback class in ``defaults`` the module's trainer lacks.

    For a LightningModule's ``configure_callbacks``: a configured callback of the class, or of
    a subclass, is kept instead. A module without a Trainer (called by hand) gets them all.
    """
    try:  # the Trainer attaches itself before it calls configure_callbacks
        have = {type(cb) for cb in module.trainer.callbacks}
    except RuntimeError:
        have = set()
    return [cls() for cls in defaults if not any(issubclass(t, cls) for t in have)]
