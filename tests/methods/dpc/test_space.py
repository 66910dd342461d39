"""DPC's discrete space: Optuna sampling, its inverse, enqueueing, mutation, size."""

import random
from pathlib import Path

import optuna
import pytest

from lightning_nas.errors import ConfigError
from lightning_nas.genotypes import load
from lightning_nas.methods.dpc.genotype import OPS, DPCGenotype
from lightning_nas.methods.dpc.space import OP_CHOICES, DPCSpace, op_choice, parse_op_choice
from lightning_nas.strategies.protocols import DiscreteSpace, MutableSpace

PUBLISHED = (
    Path(__file__).resolve().parents[3] / "experiments" / "genotypes" / "dpc_cityscapes.yaml"
)
MIXED = DPCGenotype(
    branches=(
        (-1, "conv1x1", (1, 1)),
        (0, "pyramid_pooling", (2, 8)),
        (-1, "sep_conv3x3", (21, 3)),
        (1, "pyramid_pooling", (1, 1)),
        (0, "sep_conv3x3", (9, 12)),
    )
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(seed: int = 0) -> optuna.Study:
    return optuna.create_study(
        storage=optuna.storages.InMemoryStorage(), sampler=optuna.samplers.RandomSampler(seed=seed)
    )


def test_implements_the_discrete_protocols() -> None:
    space = DPCSpace()
    assert isinstance(space, DiscreteSpace) and isinstance(space, MutableSpace)


def test_op_choices_are_81_stable_strings() -> None:
    assert len(OP_CHOICES) == len(set(OP_CHOICES)) == 81
    assert OP_CHOICES[0] == "conv1x1" and OP_CHOICES[1] == "sep3x3_r1x1"
    assert OP_CHOICES[-1] == "pool_g8x8" and "sep3x3_r18x15" in OP_CHOICES
    assert [parse_op_choice(c) for c in OP_CHOICES] == [(op, (a, b)) for op, a, b in OPS]
    assert [op_choice(op, a, b) for op, a, b in OPS] == list(OP_CHOICES)
    with pytest.raises(ValueError, match="'sep3x3_r5x5' is not a DPC op choice"):
        parse_op_choice("sep3x3_r5x5")


def test_space_size() -> None:
    assert DPCSpace().size() == 418_414_128_120 == 120 * 81**5
    assert DPCSpace(num_branches=1).size() == 81
    assert DPCSpace(num_branches=2).size() == 2 * 81**2


def test_sampling_covers_every_op_and_only_valid_inputs() -> None:
    space, study = DPCSpace(), _study()
    ops: set[str] = set()
    inputs: dict[int, set[int]] = {i: set() for i in range(5)}
    for _ in range(300):
        trial = study.ask()
        g = space.sample(trial)
        study.tell(trial, 0.0)
        assert isinstance(g, DPCGenotype) and g.num_branches == 5
        assert set(trial.params) == {f"b{i}_{d}" for i in range(5) for d in ("input", "op")}
        assert space.params(g) == trial.params
        for i, (inp, op, (a, b)) in enumerate(g.branches):
            inputs[i].add(inp)
            ops.add(op_choice(op, a, b))
    assert ops == set(OP_CHOICES)
    assert inputs == {i: set(range(-1, i)) for i in range(5)}


def test_sample_suggests_each_decision_once_with_its_choices() -> None:
    calls = []

    class Recorder:
        def suggest_categorical(self, name, choices):
            calls.append((name, list(choices)))
            return choices[-1]

    g = DPCSpace(num_branches=3).sample(Recorder())
    assert calls == [
        ("b0_input", [-1]),
        ("b0_op", list(OP_CHOICES)),
        ("b1_input", [-1, 0]),
        ("b1_op", list(OP_CHOICES)),
        ("b2_input", [-1, 0, 1]),
        ("b2_op", list(OP_CHOICES)),
    ]
    assert g.branches == ((-1, "pyramid_pooling", (8, 8)), (0, "pyramid_pooling", (8, 8)),
                          (1, "pyramid_pooling", (8, 8)))  # fmt: skip


@pytest.mark.parametrize("genotype", [load(PUBLISHED), MIXED], ids=["published", "mixed"])
def test_enqueued_params_give_back_the_genotype(genotype: DPCGenotype) -> None:
    space, study = DPCSpace(), _study()
    params = space.params(genotype)
    assert params["b0_input"] == -1 and all(isinstance(v, int | str) for v in params.values())
    study.enqueue_trial(params)
    trial = study.ask()
    assert space.sample(trial) == genotype
    assert trial.params == params


def test_params_of_the_published_cell() -> None:
    assert DPCSpace().params(load(PUBLISHED)) == {
        "b0_input": -1, "b0_op": "sep3x3_r1x6",
        "b1_input": 0, "b1_op": "sep3x3_r18x15",
        "b2_input": 1, "b2_op": "sep3x3_r6x3",
        "b3_input": 0, "b3_op": "sep3x3_r1x1",
        "b4_input": 0, "b4_op": "sep3x3_r6x21",
    }  # fmt: skip


def _decisions(space: DPCSpace, g: DPCGenotype) -> dict[str, object]:
    return space.params(g)


def test_mutate_changes_exactly_one_decision() -> None:
    space = DPCSpace()
    kinds = set()
    for seed in range(200):
        base = MIXED if seed % 2 else load(PUBLISHED)
        child = space.mutate(base, random.Random(seed))
        before, after = _decisions(space, base), _decisions(space, child)
        changed = [k for k in before if before[k] != after[k]]
        assert len(changed) == 1, changed
        kinds.add(changed[0].split("_")[1])
        i = int(changed[0][1])
        assert after[f"b{i}_input"] in range(-1, i) and after[f"b{i}_op"] in OP_CHOICES
    assert kinds == {"input", "op"}


def test_mutate_is_reproducible_and_handles_one_branch() -> None:
    space = DPCSpace()
    g = load(PUBLISHED)
    assert space.mutate(g, random.Random(3)) == space.mutate(g, random.Random(3))
    one = DPCSpace(num_branches=1)
    single = DPCGenotype(branches=((-1, "conv1x1", (1, 1)),))
    child = one.mutate(single, random.Random(0))
    assert child.branches[0][0] == -1 and child != single


def test_wrong_genotypes_are_rejected() -> None:
    with pytest.raises(ConfigError, match="the genotype has 5 branches; expected 3"):
        DPCSpace(num_branches=3).params(MIXED)
    with pytest.raises(ConfigError, match="expected a DPCGenotype, got str"):
        DPCSpace().mutate("cell.yaml", random.Random(0))
    with pytest.raises(TypeError, match="random.Random"):
        DPCSpace().mutate(MIXED, 0)
    with pytest.raises(ConfigError, match="num_branches must be an integer >= 1, got 0"):
        DPCSpace(num_branches=0)
