"""The ``lightning`` / ``lightning-nas`` command line (also ``python -m lightning_nas``).

A :class:`~lightning.pytorch.cli.LightningCLI` with the subcommands ``fit``, ``validate``,
``test`` and ``predict``. Any LightningModule (``SearchModule``, ``SegmentationModule``) and any
LightningDataModule can be chosen with ``class_path``; short class names work for everything in
``lightning_nas`` and ``callbacks`` because those packages are imported here.

``num_classes`` flows from the DataModule into the model: before the classes are instantiated,
the DataModule's ``num_classes`` is written into ``model.init_args.num_classes`` and into the
``num_classes`` (or smp's ``classes``) of every class-valued model argument (the search space,
the network), whatever the model class.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from jsonargparse import ArgumentError, Namespace
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar
from lightning.pytorch.cli import LightningCLI

import callbacks as _callbacks  # noqa: F401  (registers callbacks.* for short names)
import lightning_nas.data  # noqa: F401
import lightning_nas.networks  # noqa: F401
import lightning_nas.spaces  # noqa: F401
from lightning_nas._config import import_object
from lightning_nas.data import InvalidSampleError
from lightning_nas.errors import ConfigError
from lightning_nas.finite import NonFiniteLossError
from lightning_nas.genotypes import GenotypeError
from lightning_nas.search import SearchModule  # noqa: F401
from lightning_nas.segmentation import SegmentationModule  # noqa: F401

_DESCRIPTION = (
    "lightning_nas: NAS for semantic segmentation. "
    "Also: `lightning-nas summary <genotype>`, `lightning-nas latency build|show`, "
    "`lightning-nas study`, `lightning-nas draw <genotype>`, `lightning-nas baseline`, "
    "`lightning-nas report <run dir>`."
)


class NASCLI(LightningCLI):
    """LightningCLI with lightning_nas's defaults (see the module docstring)."""

    def __init__(self, args: Any = None, run: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("seed_everything_default", 0)
        kwargs.setdefault(
            "parser_kwargs",
            {"description": _DESCRIPTION},
        )
        super().__init__(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            auto_configure_optimizers=False,
            args=args,
            run=run,
            **kwargs,
        )

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Any]) -> Any:  # noqa: D102
        # a rich progress bar by default, unless the user chose a bar or switched bars off
        cbs = config.get("callbacks") or []
        cbs = list(cbs) if isinstance(cbs, list) else [cbs]
        if config.get("enable_progress_bar") is False:
            cbs = [cb for cb in cbs if not isinstance(cb, ProgressBar)]
        elif not any(isinstance(cb, ProgressBar) for cb in cbs + callbacks):
            cbs.append(RichProgressBar())
        config["callbacks"] = cbs
        return super()._instantiate_trainer(config, callbacks)

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        data = cfg.get("data")
        model = cfg.get("model")
        if data is None or model is None:
            return
        num_classes = _data_num_classes(data)
        if num_classes is not None:
            link_num_classes(model, num_classes)


def _data_num_classes(data: Namespace) -> int | None:
    cls = import_object(data["class_path"])
    init_args = data.get("init_args")
    kwargs = init_args.as_dict() if isinstance(init_args, Namespace) else dict(init_args or {})
    datamodule = cls(**kwargs)
    value = getattr(datamodule, "num_classes", None)
    return int(value) if value is not None else None


def link_num_classes(model: Namespace, num_classes: int) -> None:
    """Write ``num_classes`` into a parsed model config (in place).

    Sets ``init_args.num_classes`` of the model if it has one, and ``num_classes`` (or an integer
    ``classes``, as smp models have) of each class-valued argument of the model.
    """
    init_args = model.get("init_args")
    if init_args is None:
        return
    if "num_classes" in init_args:
        init_args["num_classes"] = num_classes
    for value in vars(init_args).values():
        if isinstance(value, Namespace) and "class_path" in value and value.get("init_args"):
            args = value["init_args"]
            if "num_classes" in args:
                args["num_classes"] = num_classes
            elif isinstance(args.get("classes"), int):  # smp models; not smp losses' class lists
                args["classes"] = num_classes


USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    GenotypeError,
    FileNotFoundError,
    InvalidSampleError,
    NonFiniteLossError,
)
_SUBCOMMANDS = ("fit", "validate", "test", "predict")
# subcommands outside LightningCLI: name -> (module, function taking argv and returning a status)
_TOOLS: dict[str, tuple[str, str]] = {
    "summary": ("lightning_nas.summary", "summary_main"),
    "latency": ("lightning_nas.latency.cli", "latency_main"),
    "export": ("lightning_nas.export", "export_main"),
    "study": ("lightning_nas.strategies.cli", "study_main"),
    "draw": ("lightning_nas.draw", "draw_main"),
    "baseline": ("lightning_nas.baseline.cli", "baseline_main"),
    "report": ("lightning_nas.report", "report_main"),
}
_NOISE = (
    "Does not validate",
    "Subtypes:",
    "Errors:",
    "Given value",
    "Expected a <class 'NoneType'>",
)


def summarise_argument_error(message: str) -> str:
    """One line from a jsonargparse error: the key and the innermost reasons.

    Example:
        >>> lines = ['Parser key "model":', "  Does not validate against any of the Union subtypes",
        ...          "  Errors:", "    - Problem with given class_path 'a.B':",
        ...          "        Option 'foo' is not accepted", "    - Expected a <class 'NoneType'>"]
        >>> print(summarise_argument_error(chr(10).join(lines)))
        Parser key "model": Problem with given class_path 'a.B': Option 'foo' is not accepted
    """
    parts = []
    for line in message.splitlines():
        line = line.strip().removeprefix("- ").strip()
        if line and not line.startswith(_NOISE):
            parts.append(line)
    return " ".join(parts)


def _user_error(exc: BaseException) -> BaseException | None:
    """The user-input error behind ``exc`` (jsonargparse wraps errors raised in ``__init__``)."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, USER_ERRORS):
            return e
        stack += [e.__cause__, e.__context__]
    return None


def main(args: list[str] | None = None) -> None:
    """Entry point of the console scripts.

    Besides LightningCLI's ``fit`` / ``validate`` / ``test`` / ``predict``: ``summary <genotype>``
    prints parameters, Multi-Adds and per-stage shapes of a genotype's network; ``latency build``
    / ``latency show`` build and inspect device latency tables.

    Errors in user input (an unknown or ill-typed config key, an invalid value, a bad genotype
    file, a missing dataset directory or file, an unreadable sample) are printed as one line on
    stderr with exit status 2; set ``LIGHTNING_NAS_TRACEBACK=1`` to see the traceback instead.
    """
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] in _TOOLS:
        module_name, func = _TOOLS[argv[0]]
        tool = getattr(importlib.import_module(module_name), func)
        raise SystemExit(tool(argv[1:]))
    no_exit = {"exit_on_error": False}
    try:
        NASCLI(args=args, parser_kwargs={**no_exit, **{sub: no_exit for sub in _SUBCOMMANDS}})
    except ArgumentError as exc:
        if os.environ.get("LIGHTNING_NAS_TRACEBACK"):
            raise
        print(f"error: {summarise_argument_error(str(exc))}", file=sys.stderr)
        print("(run with --help for the accepted keys)", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as exc:
        err = _user_error(exc)
        if err is None or os.environ.get("LIGHTNING_NAS_TRACEBACK"):
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"error: {type(err).__name__}: {message}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":  # pragma: no cover
    main()
