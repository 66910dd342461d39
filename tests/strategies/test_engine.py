"""The discrete-search engine on real Optuna studies (SQLite files), with a closed-form space."""

from __future__ import annotations

import random

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from toy_space import OPS, TARGET, ToyEvaluator, ToyGenotype, ToySpace, score

from lightning_nas import genotypes
from lightning_nas.errors import ConfigError
from lightning_nas.strategies import (
    DiscreteSearch,
    DiscreteSpace,
    MutableSpace,
    NSGA2Search,
    RandomSearch,
    RandomThenRefine,
    TPESearch,
)


def make(tmp_path, **kwargs) -> DiscreteSearch:
    defaults = {
        "space": ToySpace(),
        "evaluator": ToyEvaluator(),
        "n_trials": 6,
        "root_dir": str(tmp_path / "run"),
        "progress": False,
        "heartbeat_interval": 1,
    }
    return DiscreteSearch(**{**defaults, **kwargs})


def test_the_toy_space_meets_the_protocols():
    space = ToySpace()
    assert isinstance(space, DiscreteSpace) and isinstance(space, MutableSpace)
    assert not isinstance(object(), DiscreteSpace)


def test_trials_store_their_genotype_and_run_dir_in_a_sqlite_file(tmp_path, capsys):
    search = make(tmp_path, strategy=RandomSearch(seed=3))
    study = search.run()
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 6 and search.storage_url == f"sqlite:///{tmp_path}/run/study.db"
    assert (tmp_path / "run" / "study.db").is_file()
    for t in trials:
        genotype = genotypes.from_dict(t.user_attrs["genotype"])
        # one suggest per decision: the params alone give the genotype
        assert genotype == ToySpace().sample(optuna.trial.FixedTrial(t.params))
        assert t.values == [score(genotype)]
        saved = genotypes.load(f"{t.user_attrs['run_dir']}/genotype.yaml")
        assert saved == genotype
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("trial ")]
    assert len(lines) == 6 and "matches=" in lines[0] and "[6/6]" in lines[-1]
    # a second run of the same command finds the study complete and adds nothing
    again = make(tmp_path, strategy=RandomSearch(seed=3)).run()
    assert len(again.trials) == 6


def test_more_trials_continue_the_same_study(tmp_path):
    make(tmp_path, n_trials=3).run()
    study = make(tmp_path, n_trials=5).run()
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4]


def test_random_then_refine_enqueues_mutations_of_the_top_k(tmp_path):
    search = make(
        tmp_path,
        space=ToySpace(length=6),
        strategy=RandomThenRefine(n_random=4, top_k=2, seed=0),
        n_trials=12,
    )
    study = search.run()
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 12
    refined = [t for t in trials if "refined_from" in t.user_attrs]
    assert len(refined) == 8 and all(t.number >= 4 for t in refined)
    by_number = {t.number: t for t in trials}
    for t in refined:
        parent = by_number[t.user_attrs["refined_from"]]
        # one decision changed
        assert sum(t.params[k] != parent.params[k] for k in t.params) == 1
        # the parent was among the top 2 of the trials finished before the child was enqueued
        earlier = [p for p in trials if p.number < t.number - 0]
        ranked = sorted(earlier, key=lambda p: (-p.values[0], p.number))
        assert parent.values[0] >= ranked[min(1, len(ranked) - 1)].values[0]
    # no genotype evaluated twice
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 12
    # refinement beats the random phase here (one change at a time climbs towards the target)
    assert max(t.values[0] for t in refined) >= max(t.values[0] for t in trials[:4])


def test_refine_needs_a_mutable_space(tmp_path):
    class Frozen(DiscreteSpace):
        sample = ToySpace.sample
        params = ToySpace.params
        length = 4

    with pytest.raises(ConfigError, match="Frozen has no mutate"):
        RandomThenRefine().callbacks(Frozen())


def test_enqueued_genotype_files_are_evaluated_first(tmp_path):
    path = tmp_path / "best.yaml"
    genotypes.save(ToyGenotype(TARGET[:4]), path)
    study = make(tmp_path, enqueue=[str(path)], n_trials=2).run()
    first = study.trials[0]
    assert first.values == [4.0] and first.user_attrs["enqueued_from"] == str(path)


def test_infeasible_candidates_are_constrained_not_trained(tmp_path):
    evaluator = ToyEvaluator()
    calls = []
    original = evaluator.__call__

    class Counting(ToyEvaluator):
        def __call__(self, genotype, run_dir, trial=None):
            calls.append(genotype)
            return original(genotype, run_dir, trial)

    search = make(tmp_path, space=ToySpace(forbid="a"), evaluator=Counting(), n_trials=10)
    study = search.run()
    infeasible = [t for t in study.trials if t.user_attrs.get("infeasible")]
    assert infeasible and all(t.params["op0"] == "a" for t in infeasible)
    assert all(t.constraints == {"forbidden_first_op": 1.0} for t in infeasible)
    assert all(t.user_attrs["infeasible_reason"] == "op 'a' may not come first" for t in infeasible)
    assert all(g.ops[0] != "a" for g in calls) and len(calls) == 10 - len(infeasible)
    # exported genotypes are feasible only
    written = search.export(tmp_path / "top", top_k=None)
    assert len(written) == 10 - len(infeasible)
    assert all(genotypes.load(p).ops[0] != "a" for p in written)


def test_export_writes_the_top_k_with_a_leaderboard(tmp_path):
    search = make(tmp_path, n_trials=8, strategy=RandomSearch(seed=1))
    study = search.run()
    written = search.export(tmp_path / "top", top_k=3)
    values = sorted((t.values[0] for t in study.trials), reverse=True)
    assert [score(genotypes.load(p)) for p in written] == values[:3]
    board = (tmp_path / "top" / "leaderboard.csv").read_text().splitlines()
    assert board[0] == "rank,study,trial,matches,file" and len(board) == 4


def test_multi_objective_with_nsga2_exports_the_pareto_front(tmp_path):
    search = make(
        tmp_path,
        evaluator=ToyEvaluator(objectives=("matches", "cost")),
        strategy=NSGA2Search(population_size=4, seed=0),
        n_trials=10,
    )
    study = search.run()
    assert isinstance(study.sampler, optuna.samplers.NSGAIISampler)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    front = search.best_trials(study)
    points = [tuple(t.values) for t in study.trials]
    for t in front:  # nothing dominates a front member
        m, c = t.values
        assert not any(m2 >= m and c2 <= c and (m2, c2) != (m, c) for m2, c2 in points)
    written = search.export(tmp_path / "front", top_k=None)
    assert len(written) == len(front)


def test_tpe_and_random_samplers_are_seeded(tmp_path):
    a = make(tmp_path / "a", strategy=TPESearch(seed=5, n_startup_trials=2)).run()
    b = make(tmp_path / "b", strategy=TPESearch(seed=5, n_startup_trials=2)).run()
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert isinstance(a.sampler, optuna.samplers.TPESampler)


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="n_trials: expected >= 1"):
        make(tmp_path, n_trials=0)
    with pytest.raises(ConfigError, match="space: object is not a lightning_nas.strategies"):
        make(tmp_path, space=object())
    make(tmp_path, n_trials=1).run()
    clash = make(tmp_path, evaluator=ToyEvaluator(objectives=("matches", "cost")))
    with pytest.raises(ConfigError, match=r"optimises \['maximize'\].*\['maximize', 'minimize'\]"):
        clash.load()


def test_study_cli_runs_exports_and_prints_a_rerunnable_config(tmp_path, capsys, monkeypatch):
    from lightning_nas.strategies.cli import study_main

    monkeypatch.syspath_prepend(str(tmp_path))
    config = tmp_path / "toy.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "space": {"class_path": "toy_space.ToySpace", "init_args": {"length": 3}},
                "evaluator": {"class_path": "toy_space.ToyEvaluator"},
                "strategy": {
                    "class_path": "lightning_nas.strategies.RandomThenRefine",
                    "init_args": {"n_random": 3, "top_k": 1},
                },
                "n_trials": 5,
                "root_dir": str(tmp_path / "cli"),
                "progress": False,
            }
        )
    )
    assert study_main(["-c", str(config), "--print_config"]) == 0
    printed = capsys.readouterr().out
    assert "class_path: lightning_nas.strategies.RandomThenRefine" in printed
    rerun = tmp_path / "printed.yaml"
    rerun.write_text(printed)
    assert study_main(["create", "-c", str(rerun)]) == 0
    assert study_main(["-c", str(rerun)]) == 0
    assert study_main(["export", "-c", str(rerun), "--top_k", "2"]) == 0
    out = capsys.readouterr().out
    assert "wrote 2 genotypes" in out
    assert len(list((tmp_path / "cli" / "top").glob("rank*.yaml"))) == 2
    # a bad value is one line naming the key
    assert study_main(["-c", str(rerun), "--n_trials", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "n_trials" in err[0], err


def test_mutation_changes_one_decision():
    space, rng = ToySpace(length=6), random.Random(0)
    g = ToyGenotype(("a",) * 6)
    for _ in range(50):
        child = space.mutate(g, rng)
        assert sum(x != y for x, y in zip(child.ops, g.ops)) == 1 and set(child.ops) <= set(OPS)
