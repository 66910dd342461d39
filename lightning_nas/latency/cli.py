r"""``lightning-nas latency build|show``: build a latency table ahead of a search, or inspect one.

    lightning-nas latency build --space-config experiments/darts.yaml --input-size 64 64 \
        --out tables/cpu.json
    lightning-nas latency build --space DartsSpace --space-arg C=8 --space-arg layers=5 \
        --input-size 64 64 --device cuda --out tables/h100.json
    lightning-nas latency show tables/cpu.json

``--space-config`` takes an experiment config (its ``model.init_args.space``) or a file holding
just ``class_path`` / ``init_args``; ``--space`` names the space class instead (a class path, or a
short name under ``lightning_nas.spaces``). ``--space-arg KEY=VALUE`` overrides an init argument
(the value is read as YAML). The space must be
:class:`~lightning_nas.latency.protocols.LatencyAware`: its ``latency_configs(input_size)`` say
what to measure and its ``latency_op`` builds its own operations.

A build is resumable: the values measured so far are kept in ``<out>.partial`` (written
atomically); run the same command again after a crash or a kill and only the rest is measured.
The file is removed once the table is written.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from lightning_nas._config import import_object
from lightning_nas.errors import ConfigError
from lightning_nas.latency.measure import steady_allocator
from lightning_nas.latency.protocols import LatencyAware
from lightning_nas.latency.table import LatencyTable, MissingLatencyError

__all__ = ["latency_main"]


def _space_spec(
    path: str | None, space: str | None, overrides: Sequence[str]
) -> tuple[str, dict[str, Any]]:
    if (path is None) == (space is None):
        raise ConfigError("latency build: give exactly one of --space-config FILE, --space CLASS")
    class_path, init_args = space or "", {}
    if path is not None:
        try:
            cfg = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"--space-config: no such file {path}") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"--space-config {path}: not valid YAML: {err}") from None
        node = cfg
        model = cfg.get("model") if isinstance(cfg, dict) else None
        if isinstance(model, dict):
            node = (model.get("init_args") or {}).get("space")
        if not isinstance(node, dict) or "class_path" not in node:
            raise ConfigError(
                f"--space-config {path}: expected model.init_args.space (an experiment config) "
                "or class_path / init_args of a search space"
            )
        class_path, init_args = node["class_path"], dict(node.get("init_args") or {})
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--space-arg: expected KEY=VALUE, got {item!r}")
        init_args[key] = yaml.safe_load(value)
    return class_path, init_args


def _build(args: argparse.Namespace) -> int:
    class_path, init_args = _space_spec(args.space_config, args.space, args.space_arg)
    cls = import_object(class_path if "." in class_path else f"lightning_nas.spaces.{class_path}")
    try:
        space = cls(**init_args)
    except TypeError as err:
        raise ConfigError(f"{class_path}: {err}") from None
    if not isinstance(space, LatencyAware):
        raise ConfigError(
            f"{type(space).__name__} is not latency aware (lightning_nas.latency.LatencyAware: "
            "latency_configs, latency_op, expected_latency)"
        )
    size = tuple(args.input_size)
    configs = space.latency_configs(size)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if torch.device(args.device).type == "cpu" and not args.default_malloc:
        steady_allocator()
    out = Path(args.out)
    partial = out.with_name(out.name + ".partial")
    clock = args.clock
    if clock == "auto":
        one_cpu_thread = torch.device(args.device).type == "cpu" and torch.get_num_threads() == 1
        clock = "cpu" if one_cpu_thread else "wall"
    print(
        f"{type(space).__name__}({', '.join(f'{k}={v}' for k, v in init_args.items())}) at "
        f"{size[0]}x{size[1]}: {len(configs)} configurations",
        file=sys.stderr,
    )
    table = LatencyTable.build(
        configs,
        device=args.device,
        dtype=args.dtype,
        input_size=size,  # type: ignore[arg-type]
        batch_size=args.batch_size,
        warmup=args.warmup,
        repeats=args.repeats,
        builders=(space.latency_op,),
        rounds=args.rounds,
        stat=args.stat,
        min_run_time=args.min_run_time or None,
        partial=partial,
        clock=clock,
        progress=not args.no_progress,
    )
    path = table.save(out)
    partial.unlink(missing_ok=True)
    print(f"wrote {path}: {table}")
    return 0


def _show(args: argparse.Namespace) -> int:
    table = LatencyTable.load(args.table)
    for key, value in table.metadata().items():
        if key != "kind":
            print(f"{key}: {list(value) if isinstance(value, tuple) else value}")
    print(f"entries: {len(table)}")
    print(f"total of all entries: {sum(table.entries.values()):.4f} ms")
    if args.entries:
        for key, ms in sorted(table.entries.items(), key=lambda kv: -kv[1]):
            print(f"  {ms:10.4f}  {key}")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lightning-nas latency", description="Build or inspect latency lookup tables."
    )
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="measure every op configuration of a search space")
    b.add_argument("--space-config", help="experiment YAML (model.init_args.space) or space YAML")
    b.add_argument("--space", help="search space class path or short name (instead of a config)")
    b.add_argument(
        "--space-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a space init argument (repeatable), e.g. C=8",
    )
    b.add_argument("--input-size", type=int, nargs=2, required=True, metavar=("H", "W"))
    b.add_argument("--out", required=True, help="the table file to write (JSON)")
    b.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    b.add_argument("--dtype", default="float32")
    b.add_argument("--batch-size", type=int, default=1)
    b.add_argument("--warmup", type=int, default=10)
    b.add_argument(
        "--min-run-time",
        type=float,
        default=0.02,
        metavar="SECONDS",
        help="per entry and round: seconds of Timer.blocked_autorange blocks (0: --repeats "
        "single samples instead)",
    )
    b.add_argument("--repeats", type=int, default=30, help="samples with --min-run-time 0")
    b.add_argument("--rounds", type=int, default=3, help="interleaved measurement rounds")
    b.add_argument(
        "--stat",
        choices=("min", "median"),
        default="min",
        help="how an entry's rounds are combined (min: robust to other processes' load)",
    )
    b.add_argument(
        "--clock",
        choices=("auto", "wall", "cpu"),
        default="auto",
        help="cpu: the measuring thread's CPU time (steady on a shared machine; one CPU thread "
        "only); auto: cpu for a CPU table with one thread, else wall",
    )
    b.add_argument(
        "--default-malloc",
        action="store_true",
        help="CPU: keep glibc's default thresholds (see lightning_nas.latency.steady_allocator)",
    )
    b.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.set_defaults(func=_build)
    s = sub.add_parser("show", help="print a table's metadata and entry count")
    s.add_argument("table")
    s.add_argument("--entries", action="store_true", help="also list the entries, slowest first")
    s.set_defaults(func=_show)
    return p


def latency_main(argv: Sequence[str] | None = None) -> int:
    """Run ``lightning-nas latency`` with ``argv`` (without ``latency``); return the exit status.

    User errors (a bad config, a missing or invalid table) print one line on stderr and return 2;
    ``LIGHTNING_NAS_TRACEBACK=1`` raises them instead.
    """
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error (already printed)
        return int(exit_.code or 0)
    try:
        return args.func(args)
    except (ConfigError, MissingLatencyError, ValueError, OSError) as err:
        if os.environ.get("LIGHTNING_NAS_TRACEBACK"):
            raise
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(latency_main())
