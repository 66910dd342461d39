r"""``lightning-nas baseline``: does the search beat random genotypes, under the same recipe?

    lightning-nas baseline --search_dir runs/darts -c experiments/retrain_darts.yaml \
        --seeds 0 1 2 --num_random 8 --override trainer.max_epochs=20

Retrains the searched genotype (``--genotype``, or the final ``genotype.yaml`` of
``--search_dir``) once per seed, and ``--num_random`` uniformly random genotypes of the same
space, each with the same config and overrides; prints the searched mean ± std, the random
distribution, the searched genotype's percentile among the random ones, the search cost and a
one-line verdict; writes ``baseline.json``, ``baseline.csv`` and ``baseline.png`` to ``--out``.
Rerun the same command to resume; start it on several machines with one ``--storage`` to split
the retrains.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from lightning_nas.baseline.retrain import GENOTYPE_KEY
from lightning_nas.baseline.run import find_genotype, run_baseline, search_minutes
from lightning_nas.errors import ConfigError

__all__ = ["baseline_main"]


def _parser() -> argparse.ArgumentParser:
    doc = __doc__ or ""
    p = argparse.ArgumentParser(
        prog="lightning-nas baseline",
        description=doc.splitlines()[0].split(": ", 1)[-1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=doc.split("\n", 1)[-1],
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--genotype", help="the searched genotype file")
    src.add_argument("--search_dir", help="a search run: its final genotype.yaml and its cost")
    p.add_argument("-c", "--config", action="append", required=True,
                   help="retrain config (lightning fit -c), repeatable")  # fmt: skip
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="seeds of the searched genotype's retrains (default 0 1 2)")  # fmt: skip
    p.add_argument("--num_random", type=int, default=8, help="random genotypes (default 8)")
    p.add_argument("--random_seed", type=int, default=0, help="seed of the random draw")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="argument of every retrain, e.g. trainer.max_epochs=10")  # fmt: skip
    p.add_argument("--metric", default="val/mIoU", help="logged metric (higher is better)")
    p.add_argument("--genotype_key", default=GENOTYPE_KEY, help="config key of the genotype")
    p.add_argument("--out", help="output directory (default <search_dir>/baseline)")
    p.add_argument("--storage", help="Optuna storage URL (default SQLite in --out)")
    p.add_argument("--search_minutes", type=float, help="search cost (default: from the run)")
    p.add_argument("--latency_table", help="latency-match random genotypes with this table")
    p.add_argument("--latency_space_config",
                   help="search config (model.init_args.space) pricing genotypes")  # fmt: skip
    p.add_argument("--tolerance", type=float, default=0.1, help="latency band (default 0.1)")
    p.add_argument("--heartbeat_interval", type=int, default=60)
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def _latency(args: argparse.Namespace):  # noqa: ANN202
    if args.latency_table is None:
        return None
    if args.latency_space_config is None:
        raise ConfigError("baseline --latency_table: give --latency_space_config too")
    from lightning_nas._config import import_object
    from lightning_nas.latency.cli import _space_spec
    from lightning_nas.strategies.sampling import latency_function

    class_path, init_args = _space_spec(args.latency_space_config, None, [])
    cls = import_object(class_path if "." in class_path else f"lightning_nas.spaces.{class_path}")
    return latency_function(cls(**init_args), args.latency_table)


def baseline_main(argv: Sequence[str] | None = None) -> int:
    """Run ``lightning-nas baseline`` with ``argv``; return the exit status."""
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        genotype = args.genotype or find_genotype(args.search_dir)
        cost = args.search_minutes
        if cost is None and args.search_dir:
            cost = search_minutes(args.search_dir)
        out = args.out or (Path(args.search_dir) / "baseline" if args.search_dir else None)
        run_baseline(
            genotype,
            args.config,
            seeds=args.seeds,
            num_random=args.num_random,
            random_seed=args.random_seed,
            overrides=args.override,
            metric=args.metric,
            out=out or "runs/baseline",
            storage=args.storage,
            search_cost=cost,
            latency=_latency(args),
            tolerance=args.tolerance,
            genotype_key=args.genotype_key,
            progress=not args.no_progress,
            heartbeat_interval=args.heartbeat_interval,
        )
    except Exception as err:  # noqa: BLE001 - user errors become one line
        from lightning_nas.strategies.cli import one_line_error

        return one_line_error(err)
    return 0
