"""A baseline's retrain jobs as an Optuna study: resumable, and any number of workers.

Each job (the searched genotype at one seed, or one random genotype) is one trial, enqueued when
the study is created; :class:`BaselineStudy` is a
:class:`~lightning_nas.strategies.study.DiscreteSearch`, so workers on a shared storage split the
jobs, a killed worker's job is retried (heartbeats), and rerunning the command continues.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lightning_nas import genotypes
from lightning_nas.errors import ConfigError
from lightning_nas.strategies.protocols import DiscreteSpace, Evaluator
from lightning_nas.strategies.strategies import RandomSearch
from lightning_nas.strategies.study import DiscreteSearch, finished_trials

if TYPE_CHECKING:
    import optuna

    from lightning_nas.genotypes import Genotype

__all__ = ["BaselineSpace", "BaselineStudy", "Job"]

SEARCHED, RANDOM = "searched", "random"


@dataclass(frozen=True)
class Job:
    """One retrain: a genotype file at one seed.

    Attributes:
        group: ``"searched"`` or ``"random"``.
        label: Name of the genotype (``searched``, ``random03``).
        genotype: Path of its genotype file.
        seed: ``seed_everything`` of the retrain.
    """

    group: str
    label: str
    genotype: str
    seed: int

    @property
    def key(self) -> str:
        """Unique name of the job: ``<label>@seed<seed>``."""
        return f"{self.label}@seed{self.seed}"


class BaselineSpace(DiscreteSpace):
    """The jobs as one categorical decision ``job`` (each enqueued once by the study)."""

    def __init__(self, jobs: Sequence[Job]) -> None:
        if not jobs:
            raise ConfigError("baseline: no jobs")
        self.jobs = {job.key: job for job in jobs}
        if len(self.jobs) != len(jobs):
            raise ConfigError("baseline: two jobs with the same genotype label and seed")

    def sample(self, trial: optuna.Trial) -> Genotype:
        """The genotype of the trial's job (its group, label and seed become user attributes)."""
        job = self.jobs[trial.suggest_categorical("job", list(self.jobs))]
        trial.set_user_attr("group", job.group)
        trial.set_user_attr("label", job.label)
        trial.set_user_attr("seed", job.seed)
        return genotypes.load(job.genotype)

    def params(self, genotype: Genotype) -> dict[str, object]:
        """The first job retraining ``genotype``."""
        for key, job in self.jobs.items():
            if genotypes.load(job.genotype) == genotype:
                return {"job": key}
        raise ConfigError(f"baseline: no job retrains {genotype}")


class BaselineStudy(DiscreteSearch):
    """A study with one trial per :class:`Job`, evaluated by a retrain evaluator.

    Args:
        jobs: The retrain jobs.
        evaluator: Retrains one job (e.g.
            :class:`~lightning_nas.baseline.retrain.RetrainEvaluator`).
        root_dir: Where the study (SQLite by default) and the jobs' runs go.
        storage: Optuna storage URL (``None``: ``sqlite:///<root_dir>/study.db``).
        study_name: Name of the study.
        **kwargs: Further :class:`~lightning_nas.strategies.study.DiscreteSearch` arguments
            (``heartbeat_interval``, ``grace_period``, ``progress``, ...).
    """

    def __init__(
        self,
        jobs: Sequence[Job],
        evaluator: Evaluator,
        root_dir: str,
        storage: str | None = None,
        study_name: str = "baseline",
        **kwargs: Any,
    ) -> None:
        self.jobs = list(jobs)
        super().__init__(
            space=BaselineSpace(self.jobs),
            evaluator=evaluator,
            strategy=RandomSearch(seed=0),
            n_trials=len(self.jobs),
            study_name=study_name,
            storage=storage,
            root_dir=root_dir,
            **kwargs,
        )

    def create(self) -> optuna.Study:
        """Create or load the study; a loaded one must hold these very jobs."""
        study = super().create()
        jobs = [[job.key, genotypes.load(job.genotype).to_dict()] for job in self.jobs]
        stored = study.user_attrs.get("jobs")
        if stored is None:
            study.set_user_attr("jobs", jobs)
        elif stored != jobs:
            raise ConfigError(
                f"baseline: the study {self.study_name!r} in {self.storage_url} holds other "
                "jobs (another searched genotype, seeds or random draw); use another --out or "
                "--storage"
            )
        return study

    def initial_trials(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Every job, in order."""
        return [({"job": job.key}, {"job": job.key}) for job in self.jobs]

    def scores(self, study: optuna.Study | None = None) -> dict[str, dict[str, Any]]:
        """The finished jobs: key → ``value``, ``params``, ``seconds``, ``trial`` (first run)."""
        study = study or self.load()
        out: dict[str, dict[str, Any]] = {}
        for trial in sorted(finished_trials(study), key=lambda t: t.number):
            key = trial.params.get("job")
            if key in out or trial.values is None:
                continue
            out[key] = {
                "value": float(trial.values[0]),
                "params": trial.user_attrs.get("params_m"),
                "seconds": trial.user_attrs.get("seconds"),
                "trial": trial.number,
            }
        return out
