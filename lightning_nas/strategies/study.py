"""A discrete architecture search: one Optuna study, any number of workers, resumable.

:class:`DiscreteSearch` ties a :class:`~lightning_nas.strategies.protocols.DiscreteSpace`, an
:class:`~lightning_nas.strategies.protocols.Evaluator` and a
:class:`~lightning_nas.strategies.strategies.Strategy` to an Optuna study in a storage:

* **storage**: a SQLite file in ``root_dir`` by default (nothing to start); any Optuna storage URL
  for many workers on many machines (PostgreSQL: ``postgresql+psycopg://user:pw@host/db``).
* **workers**: :meth:`DiscreteSearch.run` is one worker; start it N times on a shared URL. Each
  runs trials until the study holds ``n_trials`` finished ones (a race between workers can add at
  most one extra trial per other worker). Create the study once first
  (:meth:`DiscreteSearch.create`, ``lightning-nas study create``): concurrent creation is
  handled, but one creator is cleaner.
* **resume / crashes**: trials send a heartbeat; a trial whose worker died (kill -9, preemption)
  is marked failed after ``grace_period`` seconds and re-enqueued with the same parameters
  (``RetryHeartbeatStaleTrialCallback``), so rerunning the same command continues the study to
  ``n_trials`` with no trial lost or duplicated.
* **trials**: each stores its genotype (``trial.user_attrs["genotype"]``, and
  ``<root_dir>/trials/<number>/genotype.yaml``) and its run directory; invalid candidates (a
  space's ``constraints(genotype) > 0``) are recorded with ``trial.set_constraint`` and not
  trained.
"""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import optuna
from optuna.trial import FrozenTrial, TrialState

from lightning_nas import genotypes
from lightning_nas.atomic import write_text
from lightning_nas.errors import ConfigError
from lightning_nas.genotypes import Genotype
from lightning_nas.strategies.protocols import DiscreteSpace, Evaluator
from lightning_nas.strategies.strategies import RandomSearch, Strategy, feasible

__all__ = ["ConstrainedSpace", "DiscreteSearch", "SeedableSpace", "finished_trials"]

log = logging.getLogger("lightning_nas.study")

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@runtime_checkable
class ConstrainedSpace(Protocol):
    """A space some of whose genotypes are invalid (a constraint value > 0 means violated)."""

    def constraints(self, genotype: Genotype) -> Mapping[str, float]:
        """Constraint values by name (the same names for every genotype); feasible: all ≤ 0."""
        ...

    def constraint_reason(self, genotype: Genotype) -> str | None:
        """Why ``genotype`` is infeasible (one line, stored on the trial), or ``None``."""
        ...


@runtime_checkable
class SeedableSpace(Protocol):
    """A later stage's space that starts from an earlier stage's genotypes."""

    def seed_from(self, genotype: Genotype) -> Genotype:
        """This space's starting point for the earlier stage's ``genotype``."""
        ...


def _cost_discordance(
    groups: Sequence[tuple[str, Sequence[dict]]], names: Sequence[str]
) -> str | None:
    """How often FLOPs and a measured latency objective order two candidates differently."""
    if "latency_ms" not in names:
        return None
    k = list(names).index("latency_ms")
    points = [p for _, ps in groups for p in ps if "flops" in p]
    pairs = discordant = 0
    example = None
    for i, a in enumerate(points):
        for b in points[i + 1 :]:
            if a["flops"] == b["flops"] or a["values"][k] == b["values"][k]:
                continue
            pairs += 1
            if (a["flops"] < b["flops"]) != (a["values"][k] < b["values"][k]):
                discordant += 1
                if example is None:
                    lo, hi = (a, b) if a["flops"] < b["flops"] else (b, a)
                    example = (
                        f"e.g. {lo['label']} has fewer FLOPs ({lo['flops']:.3g} G) than "
                        f"{hi['label']} ({hi['flops']:.3g} G) but more latency "
                        f"({lo['values'][k]:.3g} vs {hi['values'][k]:.3g} ms)"
                    )
    if not pairs:
        return None
    line = f"latency and FLOPs order {discordant} of {pairs} candidate pairs differently"
    return line + (f"; {example}" if example else "")


def _fail_stale_trials(study: optuna.Study) -> None:
    """Mark trials whose heartbeat is ``grace_period`` old as failed (their retries follow)."""
    with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def finished_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The study's complete and pruned trials."""
    return study.get_trials(deepcopy=False, states=FINISHED)


class DiscreteSearch:
    """A discrete search over ``space``, scored by ``evaluator``, steered by ``strategy``.

    Args:
        space: What to sample (``sample(trial)``, ``params(genotype)``; ``mutate`` for refining).
        evaluator: Scores a genotype (e.g.
            :class:`~lightning_nas.strategies.evaluator.LightningEvaluator`); its
            ``directions`` are the study's.
        strategy: Sampler and enqueueing policy (default: random search).
        n_trials: Finished trials the study should hold, over all workers.
        study_name: Name of the study in the storage.
        storage: Optuna storage URL; ``None``: ``sqlite:///<root_dir>/study.db``.
        root_dir: Where trial run directories (and the default SQLite file) go.
        enqueue: Genotype files evaluated first (e.g. a published cell), when the study is new.
        heartbeat_interval: Seconds between a running trial's heartbeats.
        grace_period: Seconds without a heartbeat after which a running trial is stale
            (default: ``2 · heartbeat_interval``).
        max_retry: Retries of a stale trial.
        progress: Show a progress bar over trials.
        next_stage: A search run after this one (a later, finer stage: SM-NAS's modular
            search after its structural one), seeded with ``seeds`` of this stage's best
            genotypes (the knee points of a multi-objective front, else the top ones), mapped
            by its space's ``seed_from``.
        seeds: How many genotypes seed ``next_stage``.

    """

    def __init__(
        self,
        space: DiscreteSpace,
        evaluator: Evaluator,
        strategy: Strategy | None = None,
        n_trials: int = 20,
        study_name: str = "search",
        storage: str | None = None,
        root_dir: str = "runs/study",
        enqueue: Sequence[str] = (),
        heartbeat_interval: int = 60,
        grace_period: int | None = None,
        max_retry: int = 3,
        progress: bool = True,
        next_stage: DiscreteSearch | None = None,
        seeds: int = 3,
    ) -> None:
        if not isinstance(space, DiscreteSpace):
            raise ConfigError(
                f"space: {type(space).__name__} is not a lightning_nas.strategies.DiscreteSpace "
                "(sample(trial), params(genotype))"
            )
        if not isinstance(evaluator, Evaluator):
            raise ConfigError(
                f"evaluator: {type(evaluator).__name__} is not a "
                "lightning_nas.strategies.Evaluator (directions, __call__(genotype, run_dir))"
            )
        if n_trials < 1:
            raise ConfigError(f"n_trials: expected >= 1, got {n_trials}")
        if heartbeat_interval < 1:
            raise ConfigError(f"heartbeat_interval: expected >= 1 s, got {heartbeat_interval}")
        self.space = space
        self.evaluator = evaluator
        self.strategy = strategy or RandomSearch()
        self.n_trials = n_trials
        self.study_name = study_name
        self.root_dir = Path(root_dir)
        self.storage_url = storage or f"sqlite:///{self.root_dir / 'study.db'}"
        self.enqueue = [str(p) for p in enqueue]
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period or 2 * heartbeat_interval
        self.max_retry = max_retry
        self.progress = progress
        self.next_stage = next_stage
        self.seeds = seeds
        if next_stage is not None and not isinstance(next_stage.space, SeedableSpace):
            raise ConfigError(
                f"next_stage.space: {type(next_stage.space).__name__} has no "
                "seed_from(genotype); a later stage must start from this stage's results"
            )
        for path in self.enqueue:
            genotypes.load(path)  # fail now on a bad file, naming it

    # ----------------------------------------------------------------- study
    @property
    def directions(self) -> list[str]:
        """The study's objective directions (the evaluator's)."""
        return list(self.evaluator.directions)

    def storage(self) -> optuna.storages.BaseStorage:
        """The storage, with heartbeats and stale-trial retries for SQL databases."""
        url = self.storage_url
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        if url.split(":", 1)[0].split("+", 1)[0] not in ("sqlite", "postgresql", "mysql"):
            return optuna.storages.get_storage(url)
        engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
        with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.8
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=self.heartbeat_interval,
                grace_period=self.grace_period,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=self.max_retry
                ),
            )

    def create(self) -> optuna.Study:
        """Create the study (or load it); enqueue the ``enqueue`` genotypes when it is new."""
        storage = self.storage()
        sampler = self.strategy.sampler(self.directions)
        try:
            study = optuna.create_study(
                storage=storage,
                sampler=sampler,
                study_name=self.study_name,
                directions=self.directions,
            )
        except optuna.exceptions.DuplicatedStudyError:
            return self.load(storage)
        study.set_user_attr("space", f"{type(self.space).__module__}.{type(self.space).__name__}")
        study.set_user_attr("strategy", repr(self.strategy))
        study.set_user_attr("n_trials", self.n_trials)
        for path in self.enqueue:
            genotype = genotypes.load(path)
            try:
                params = self.space.params(genotype)
            except ConfigError:
                if not isinstance(self.space, SeedableSpace):
                    raise
                # an earlier stage's genotype: this stage's starting point for it
                params = self.space.params(self.space.seed_from(genotype))
            study.enqueue_trial(params, user_attrs={"enqueued_from": path})
        for params, user_attrs in self.initial_trials():
            study.enqueue_trial(params, user_attrs=user_attrs)
        return study

    def initial_trials(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Trials (parameters, user attributes) enqueued after ``enqueue`` in a new study.

        None here; subclasses with a fixed list of candidates (a baseline's retrain jobs)
        override it.
        """
        return []

    def load(self, storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
        """Load the existing study, checking its directions."""
        try:
            study = optuna.load_study(
                study_name=self.study_name,
                storage=storage or self.storage(),
                sampler=self.strategy.sampler(self.directions),
            )
            study.sampler = self.strategy.sampler(self.directions, offset=len(study.trials))
        except KeyError:
            raise ConfigError(
                f"study_name: no study {self.study_name!r} in {self.storage_url}"
            ) from None
        have = [d.name.lower() for d in study.directions]
        if have != self.directions:
            raise ConfigError(
                f"study {self.study_name!r} in {self.storage_url} optimises {have}; the "
                f"evaluator's objectives give {self.directions}"
            )
        return study

    # ----------------------------------------------------------------- worker
    def objective(self, trial: optuna.Trial) -> float | list[float]:
        """Sample, record and evaluate one candidate."""
        genotype = self.space.sample(trial)
        run_dir = self.root_dir / "trials" / f"{trial.number:05d}"
        run_dir.mkdir(parents=True, exist_ok=True)
        genotypes.save(genotype, run_dir / "genotype.yaml")
        trial.set_user_attr("genotype", genotype.to_dict())
        trial.set_user_attr("run_dir", str(run_dir))
        worst = [-math.inf if d == "maximize" else math.inf for d in self.directions]
        if isinstance(self.space, ConstrainedSpace):
            constraints = dict(self.space.constraints(genotype))
            for name, value in constraints.items():
                trial.set_constraint(name, float(value))
            violated = sorted(k for k, v in constraints.items() if v > 0)
            if violated:
                trial.set_user_attr("infeasible", violated)
                reason = self.space.constraint_reason(genotype)
                if reason:
                    trial.set_user_attr("infeasible_reason", reason)
                return worst[0] if len(worst) == 1 else worst
        start = time.perf_counter()
        values = list(self.evaluator(genotype, run_dir, trial))
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))
        if len(values) != len(self.directions):
            raise ConfigError(
                f"evaluator returned {len(values)} values for {len(self.directions)} objectives"
            )
        return values[0] if len(values) == 1 else values

    def run(self, report: bool = True) -> optuna.Study:
        """One worker: run trials until the study holds ``n_trials`` finished ones.

        Then the next stage, if any; a multi-objective search then writes and prints its front
        over every stage (``report``; a later stage leaves that to the first).

        Returns:
            The study.
        """
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial: ours
        study = self.create()
        _fail_stale_trials(study)  # a previous run's dead trials, if stale now
        callbacks = [*self.strategy.callbacks(self.space), self._report]
        with self._progress(study) as advance:
            self._advance = advance
            while len(finished_trials(study)) < self.n_trials:
                study.optimize(self.objective, n_trials=1, callbacks=callbacks)
            self._retry_dead_trials(study, callbacks)
        if self.next_stage is not None:
            self.seed_next_stage(study)
            self.next_stage.run(report=False)
        if report and len(self.directions) > 1:
            self.front_report(print_table=True)
        return study

    def _retry_dead_trials(self, study: optuna.Study, callbacks: list) -> None:
        """After the count: run the retries of trials whose worker died.

        A trial of a killed worker stays RUNNING until its heartbeat is ``grace_period`` old;
        whoever ends the study must not leave it unevaluated. So wait up to ``grace_period +
        heartbeat_interval`` seconds while other trials run: the dead ones become stale and
        their retries (WAITING, ``failed_trial`` set) are run here; live ones keep beating and
        are left to their workers.
        """
        deadline = time.monotonic() + self.grace_period + self.heartbeat_interval
        while True:
            _fail_stale_trials(study)
            trials = study.get_trials(deepcopy=False)
            if any(t.state == TrialState.WAITING and "failed_trial" in t.system_attrs
                   for t in trials):  # fmt: skip
                study.optimize(self.objective, n_trials=1, callbacks=callbacks)
                continue
            if time.monotonic() > deadline or not any(
                t.state == TrialState.RUNNING for t in trials
            ):
                return
            time.sleep(min(1.0, self.heartbeat_interval))

    def seed_trials(self, study: optuna.Study) -> list[FrozenTrial]:
        """The trials that seed the next stage: front knee points, or the top ones."""
        from lightning_nas.strategies.pareto import knee_points

        best = self.best_trials(study, top_k=None)
        if len(self.directions) == 1:
            return best[: self.seeds]
        knees = knee_points([t.values for t in best], self.directions, k=self.seeds)
        return [best[i] for i in knees]

    def seed_next_stage(self, study: optuna.Study) -> None:
        """Enqueue this stage's seeds into the next stage's study (once)."""
        assert self.next_stage is not None
        nxt = self.next_stage.create()
        if any("seeded_from" in t.user_attrs for t in nxt.trials):
            return  # seeded by an earlier run
        seen = set()
        for trial in self.seed_trials(study):
            genotype = genotypes.from_dict(trial.user_attrs["genotype"], f"trial {trial.number}")
            child = self.next_stage.space.seed_from(genotype)  # type: ignore[attr-defined]
            params = self.next_stage.space.params(child)
            key = tuple(sorted(params.items()))
            if key in seen:
                continue
            seen.add(key)
            origin = f"{self.study_name}:{trial.number}"
            nxt.enqueue_trial(params, user_attrs={"seeded_from": origin})
        print(f"seeded {len(seen)} trials of {self.next_stage.study_name}", file=sys.stderr)

    def stages(self) -> list[DiscreteSearch]:
        """This search and its later stages, in order."""
        return [self] + (self.next_stage.stages() if self.next_stage else [])

    def front_report(self, out: str | Path | None = None, print_table: bool = False) -> dict:
        """Write the Pareto front over every stage; print it as a table on request.

        Files (in ``out``, default ``<root_dir>/front``): ``front.csv``, ``front.png``,
        ``hypervolume.csv``, ``hypervolume.png``.
        """
        from lightning_nas.strategies.pareto import front_report

        groups = []
        for k, stage in enumerate(self.stages(), start=1):
            study = stage.load()
            points = []
            for t in stage.best_trials(study, top_k=None, front_only=False):
                genotype = genotypes.from_dict(t.user_attrs["genotype"], f"trial {t.number}")
                label = getattr(genotype, "label", f"trial {t.number}")
                extra = {k2: v for k2, v in t.user_attrs.items() if k2 in ("params", "flops")}
                points.append(
                    {"values": list(t.values), "label": label, "stage": k,
                     "trial": f"{stage.study_name}:{t.number}", **extra}
                )  # fmt: skip
            groups.append((f"stage {k} ({stage.study_name})", points))
        folder = Path(out) if out is not None else self.root_dir / "front"
        generation = getattr(self.strategy, "population_size", 10)
        report = front_report(groups, self._names(), self.directions, folder, generation)
        if print_table:
            names = self._names()
            print(f"Pareto front ({len(report['front'])} of "
                  f"{sum(len(p) for _, p in groups)} candidates), {folder}:")  # fmt: skip
            print("  " + "  ".join(f"{n:>12}" for n in names) + "  candidate")
            for p in report["front"]:
                print("  " + "  ".join(f"{v:12.4g}" for v in p["values"]) + f"  {p['label']}")
            discordant = _cost_discordance(groups, names)
            if discordant is not None:
                print(discordant)
        return report

    def _report(self, study: optuna.Study, trial: FrozenTrial) -> None:
        done = len(finished_trials(study))
        values = (
            ", ".join(f"{name}={v:.4g}" for name, v in zip(self._names(), trial.values))
            if trial.values
            else trial.state.name.lower()
        )
        seconds = trial.user_attrs.get("seconds")
        took = f" in {seconds:.1f} s" if seconds is not None else ""
        flag = "" if feasible(trial) else " (infeasible)"
        print(
            f"trial {trial.number}: {values}{flag}{took} [{min(done, self.n_trials)}/"
            f"{self.n_trials}] {trial.params}",
            file=sys.stderr,
            flush=True,
        )
        self._advance(done)

    def _names(self) -> list[str]:
        names = getattr(self.evaluator, "objectives", None)
        return list(names) if names else [f"value{i}" for i in range(len(self.directions))]

    def _progress(self, study: optuna.Study) -> Any:
        import contextlib

        @contextlib.contextmanager
        def bar() -> Any:
            if not self.progress:
                yield lambda done: None
                return
            from rich.progress import Progress

            with Progress(transient=False) as progress:
                task = progress.add_task(
                    f"study {self.study_name}",
                    total=self.n_trials,
                    completed=min(len(finished_trials(study)), self.n_trials),
                )
                yield lambda done: progress.update(task, completed=min(done, self.n_trials))

        return bar()

    # ----------------------------------------------------------------- results
    def best_trials(
        self, study: optuna.Study, top_k: int | None = None, front_only: bool = True
    ) -> list[FrozenTrial]:
        """The top ``top_k`` feasible trials (single objective), or the Pareto front.

        ``front_only: false`` gives every feasible trial (multi-objective).
        """
        done = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if feasible(t) and t.values is not None and all(map(math.isfinite, t.values))
        ]
        if len(self.directions) == 1:
            sign = -1.0 if self.directions[0] == "maximize" else 1.0
            ranked = sorted(done, key=lambda t: (sign * t.values[0], t.number))
            return ranked if top_k is None else ranked[:top_k]
        if not front_only:
            return done
        from lightning_nas.strategies.pareto import pareto_front

        front = [done[i] for i in pareto_front([t.values for t in done], self.directions)]
        return sorted(front, key=lambda t: t.values[0])

    def export(self, out: str | Path, top_k: int | None = 5) -> list[Path]:
        """Write the best genotypes as YAML, with a leaderboard.

        Single objective: the top ``top_k``. Several: the Pareto front over every stage (the
        front report is written beside them).

        Returns:
            The written genotype files, best first.
        """
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        rows = ["rank,study,trial," + ",".join(self._names()) + ",file"]
        written = []
        stages = self.stages()
        if len(self.directions) > 1:
            chosen = [
                (stage.study_name, t)
                for stage in stages
                for t in stage.best_trials(stage.load(), top_k=None, front_only=False)
            ]
            from lightning_nas.strategies.pareto import pareto_front

            front = pareto_front([t.values for _, t in chosen], self.directions)
            ranked = sorted((chosen[i] for i in front), key=lambda st: -st[1].values[0])
            self.front_report(out / "front")
        else:
            ranked = [(self.study_name, t) for t in self.best_trials(self.load(), top_k)]
        for rank, (name, trial) in enumerate(ranked, start=1):
            genotype = genotypes.from_dict(trial.user_attrs["genotype"], f"trial {trial.number}")
            prefix = f"{name}_" if len(stages) > 1 else ""
            path = out / f"rank{rank:02d}_{prefix}trial{trial.number:05d}.yaml"
            genotypes.save(genotype, path)
            written.append(path)
            values = ",".join(f"{v:.6g}" for v in trial.values)
            rows.append(f"{rank},{name},{trial.number},{values},{path.name}")
        write_text(out / "leaderboard.csv", "\n".join(rows) + "\n")
        return written
