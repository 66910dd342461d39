r"""``lightning-nas study``: run, create, export and check a discrete architecture search.

    lightning-nas study -c experiments/dpc.yaml         # one worker (run as many as you like)
    lightning-nas study create -c experiments/dpc.yaml  # create the study once, then workers
    lightning-nas study export -c experiments/dpc.yaml --top_k 5 --out runs/dpc/top
    lightning-nas study fidelity -c experiments/dpc.yaml -c experiments/dpc_fidelity.yaml
    lightning-nas study -c experiments/dpc.yaml --print_config  # the full, re-runnable config

The config's top-level keys are :class:`~lightning_nas.strategies.study.DiscreteSearch`'s
arguments (``space``, ``evaluator``, ``strategy``, ``n_trials``, ``storage``, ...), with the
``class_path`` / ``init_args`` conventions of ``lightning fit``; ``seed_everything`` seeds the
process. User errors print one line on stderr and exit with status 2
(``LIGHTNING_NAS_TRACEBACK=1`` raises instead).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from lightning_nas.errors import ConfigError
from lightning_nas.genotypes import GenotypeError
from lightning_nas.strategies.study import DiscreteSearch

__all__ = ["build_search", "study_main"]

SUBCOMMANDS = ("run", "create", "export", "fidelity")


def _parser(command: str) -> ArgumentParser:
    parser = ArgumentParser(
        prog=f"lightning-nas study{'' if command == 'run' else ' ' + command}",
        description=__doc__.splitlines()[0] if __doc__ else None,
        exit_on_error=False,
    )
    parser.add_argument("-c", "--config", action=ActionConfigFile, help="a YAML config file")
    parser.add_argument(
        "--seed_everything", type=int | None, default=0, help="seed of this process (null: none)"
    )
    parser.add_class_arguments(DiscreteSearch, fail_untyped=False)
    if command == "export":
        parser.add_argument("--top_k", type=int | None, default=5, help="null: every feasible")
        parser.add_argument("--out", type=str | None, default=None, help="default <root_dir>/top")
    if command == "fidelity":
        from lightning_nas.strategies.fidelity import add_fidelity_arguments

        add_fidelity_arguments(parser)
    return parser


def build_search(cfg: Namespace, parser: ArgumentParser) -> tuple[DiscreteSearch, Namespace]:
    """Instantiate the search of a parsed config; also return the instantiated namespace."""
    if cfg.get("seed_everything") is not None:
        import lightning.pytorch as pl

        pl.seed_everything(cfg.seed_everything, verbose=False)
    init = parser.instantiate(cfg)
    names = [
        "space",
        "evaluator",
        "strategy",
        "n_trials",
        "study_name",
        "storage",
        "root_dir",
        "enqueue",
        "heartbeat_interval",
        "grace_period",
        "max_retry",
        "progress",
        "next_stage",
        "seeds",
    ]
    return DiscreteSearch(**{name: init[name] for name in names}), init


def _run(command: str, argv: Sequence[str]) -> int:
    parser = _parser(command)
    cfg = parser.parse_args(list(argv))
    search, init = build_search(cfg, parser)
    if command == "create":
        study = search.create()
        print(f"study {study.study_name!r} in {search.storage_url}: {len(study.trials)} trials")
        return 0
    if command == "run":
        study = search.run()
        best = search.best_trials(study, top_k=1)
        if best and len(search.directions) == 1:
            print(f"best: trial {best[0].number} {best[0].values} ({best[0].params})")
        return 0
    if command == "export":
        out = Path(init.out) if init.out else search.root_dir / "top"
        written = search.export(out, top_k=init.top_k)
        print(f"wrote {len(written)} genotypes and leaderboard.csv to {out}")
        for path in written:
            print(f"  {path}")
        return 0
    from lightning_nas.strategies.fidelity import run_fidelity

    return run_fidelity(search, init)


def study_main(argv: Sequence[str] | None = None) -> int:
    """Run ``lightning-nas study`` with ``argv`` (without ``study``); return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = "run"
    if argv and argv[0] in SUBCOMMANDS:
        command, argv = argv[0], argv[1:]
    try:
        return _run(command, argv)
    except SystemExit as exit_:  # --help, --print_config
        return int(exit_.code or 0)
    except Exception as err:  # noqa: BLE001 - user errors become one line
        return one_line_error(err)


def one_line_error(err: Exception) -> int:
    """Print the user error behind ``err`` as one line on stderr and return 2; else re-raise.

    Call it in an ``except`` block. ``LIGHTNING_NAS_TRACEBACK=1`` re-raises every error.
    """
    user = _user_error(err)
    if user is None or os.environ.get("LIGHTNING_NAS_TRACEBACK"):
        raise err
    message = " ".join(str(user).split()) or type(user).__name__
    print(f"error: {type(user).__name__}: {message}", file=sys.stderr)
    return 2


def _user_error(err: BaseException) -> BaseException | None:
    from jsonargparse import ArgumentError

    from lightning_nas.cli import summarise_argument_error

    seen: set[int] = set()
    stack: list[Any] = [err]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ArgumentError):
            return ConfigError(summarise_argument_error(str(e)))
        if isinstance(e, ConfigError | GenotypeError | FileNotFoundError):
            return e
        stack += [e.__cause__, e.__context__]
    return None
