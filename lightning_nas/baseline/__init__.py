"""Random-architecture baselines: does the search beat random genotypes under the same recipe?

* :func:`~lightning_nas.baseline.run.run_baseline` — draw random genotypes of the searched one's
  space, retrain all with one config (the searched one over several seeds), compare;
* :mod:`~lightning_nas.baseline.stats` — percentile, mean ± std, verdict;
* :mod:`~lightning_nas.baseline.jobs` — the retrains as a resumable Optuna study;
* ``lightning-nas baseline`` — the command line (:mod:`~lightning_nas.baseline.cli`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["baseline_main", "run_baseline"]


def __getattr__(name: str) -> Any:
    if name == "run_baseline":
        from lightning_nas.baseline.run import run_baseline

        return run_baseline
    if name == "baseline_main":
        from lightning_nas.baseline.cli import baseline_main

        return baseline_main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
