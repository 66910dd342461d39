"""Retrain a genotype with a ``lightning fit`` config: the evaluator of a baseline study.

:class:`RetrainEvaluator` runs the very command a user would (``lightning fit -c <config>``) in
process, changing only the genotype file, the seed and where the run is written, so the
searched genotype and the random ones get the identical recipe and budget. A job's run lives in
``<root>/jobs/<label>@seed<seed>/``; a job that was killed resumes from its ``last.ckpt``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lightning_nas.errors import ConfigError
from lightning_nas.strategies.protocols import Evaluator

if TYPE_CHECKING:
    import optuna

    from lightning_nas.baseline.jobs import Job
    from lightning_nas.genotypes import Genotype

__all__ = ["RetrainEvaluator"]

GENOTYPE_KEY = "model.init_args.network.init_args.genotype"


class RetrainEvaluator(Evaluator):
    """Retrain a job's genotype with ``lightning fit`` configs; return ``metric`` after the fit.

    Args:
        configs: The retrain config files (``-c`` each, in order).
        jobs: The jobs, by :attr:`~lightning_nas.baseline.jobs.Job.key` (the trial's ``job``).
        root_dir: Where the jobs' run directories go (``<root_dir>/jobs/<key>``).
        overrides: Further ``KEY=VALUE`` arguments of every fit (e.g.
            ``trainer.max_epochs=10``), the same for every job.
        metric: The logged metric returned (after the last validation; higher is better).
        genotype_key: The config key of the genotype file.
    """

    directions = ("maximize",)

    def __init__(
        self,
        configs: Sequence[str],
        jobs: Sequence[Job],
        root_dir: str | Path,
        overrides: Sequence[str] = (),
        metric: str = "val/mIoU",
        genotype_key: str = GENOTYPE_KEY,
    ) -> None:
        if not configs:
            raise ConfigError("baseline: give the retrain config (-c FILE)")
        for path in configs:
            if not Path(path).is_file():
                raise ConfigError(f"baseline: no such retrain config {path}")
        for item in overrides:
            if "=" not in item or item.startswith("-"):
                raise ConfigError(f"baseline --override: expected KEY=VALUE, got {item!r}")
        self.configs = [str(c) for c in configs]
        self.jobs = {job.key: job for job in jobs}
        self.root_dir = Path(root_dir)
        self.overrides = list(overrides)
        self.metric = metric
        self.objectives = (metric,)
        self.genotype_key = genotype_key

    def job_dir(self, job: Job) -> Path:
        """The run directory of ``job``."""
        return self.root_dir / "jobs" / job.key

    def arguments(self, job: Job) -> list[str]:
        """The ``lightning fit`` arguments of ``job`` (only genotype, seed and paths vary)."""
        run = self.job_dir(job)
        args = ["fit"]
        for config in self.configs:
            args += ["-c", config]
        args += [f"--{item}" for item in self.overrides]
        args += [
            f"--seed_everything={job.seed}",
            f"--{self.genotype_key}={job.genotype}",
            f"--trainer.default_root_dir={run}",
            "--trainer.logger=CSVLogger",
            f"--trainer.logger.save_dir={run}",
            "--trainer.logger.name=logs",
            "--trainer.logger.version=0",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
        ]
        last = run / "logs" / "version_0" / "checkpoints" / "last.ckpt"
        if last.is_file():
            args.append(f"--ckpt_path={last}")  # a killed job resumes
        return args

    def __call__(
        self, genotype: Genotype, run_dir: Path, trial: optuna.Trial | None = None
    ) -> list[float]:
        """Retrain the trial's job; return its ``metric``."""
        from lightning_nas.cli import NASCLI
        from lightning_nas.strategies.evaluator import _quiet

        if trial is None or trial.params.get("job") not in self.jobs:
            raise ConfigError("RetrainEvaluator: the trial names no known baseline job")
        job = self.jobs[trial.params["job"]]
        args = self.arguments(job)
        argv, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI warns about args + sys.argv
        try:
            with _quiet():
                cli = NASCLI(args=args)
        finally:
            sys.argv = argv
        with _quiet():
            value = cli.trainer.callback_metrics.get(self.metric)
            if value is None:  # resumed after the last epoch: validate the last checkpoint
                ckpt = next((a.split("=", 1)[1] for a in args if a.startswith("--ckpt_path")), None)
                results = cli.trainer.validate(cli.model, cli.datamodule, ckpt_path=ckpt)
                value = results[0].get(self.metric) if results else None
        if value is None:
            logged = ", ".join(sorted(cli.trainer.callback_metrics)) or "none"
            raise ConfigError(f"baseline --metric: {self.metric!r} was not logged ({logged})")
        params = sum(p.numel() for p in cli.model.parameters()) / 1e6
        trial.set_user_attr("params_m", round(params, 6))
        trial.set_user_attr("run_dir", str(self.job_dir(job)))
        value = float(value)
        return [value if math.isfinite(value) else float("nan")]
