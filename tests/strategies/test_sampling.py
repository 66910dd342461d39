"""Random genotypes: every method's random space, seeded draws, uniformity, latency matching."""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections import Counter
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import FixedTrial
from scipy.stats import chisquare
from toy_space import ToyGenotype, ToySpace

from lightning_nas import genotypes
from lightning_nas.errors import ConfigError
from lightning_nas.genotypes import AutoDeepLabGenotype, DartsGenotype, GenotypeError
from lightning_nas.latency import LatencyTable, OpConfig
from lightning_nas.methods.autodeeplab.sampling import (
    AutoDeepLabDiscreteSpace,
    count_paths,
    rank_path,
    unrank_path,
)
from lightning_nas.methods.darts.genotype import DARTS_PRIMITIVES
from lightning_nas.methods.darts.sampling import DartsCellSpace
from lightning_nas.methods.darts.space import DartsSpace
from lightning_nas.methods.fasterseg.sampling import FasterSegDiscreteSpace
from lightning_nas.methods.smnas.genotype import SMNASGenotype
from lightning_nas.strategies import (
    ProductSpace,
    TrialSeededRandomSampler,
    latency_function,
    random_space_of,
    sample_genotypes,
)

REPO = Path(__file__).resolve().parents[2]
FILES = sorted((REPO / "experiments" / "genotypes").glob("*.yaml"))
SMNAS = {
    "smnas_structural": SMNASGenotype(encoder="resnet18", decoder="FPN", input_size=(64, 64)),
    "smnas_modular": SMNASGenotype(
        encoder="coded",
        decoder="Unet",
        input_size=(64, 64),
        base_width=64,
        code="11-21-21-21",
        decoder_channels=128,
    ),
}
CASES = {p.stem: p for p in FILES} | SMNAS
SMALL = {
    "darts": {"C": 4, "layers": 3},
    "autodeeplab": {
        "filter_multiplier": 2,
        "aspp_channels": 8,
        "decoder_channels": 8,
        "low_level_channels": 4,
    },
    "fasterseg": {"Fch": 2},
    "dpc": {"channels": 8, "output_stride": 8},
    "smnas": {},
}
"""Tiny network settings per kind (as the methods' own tests build them)."""
CELL_KINDS = ("darts", "autodeeplab")  # their spaces store each node's edges sorted by input


@pytest.fixture(autouse=True)
def _quiet_and_one_thread():
    """One intra-op thread (tiny convs on a shared 2-core machine), no Optuna INFO lines."""
    threads, verbosity = torch.get_num_threads(), optuna.logging.get_verbosity()
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(verbosity)


def _genotype(case: str) -> genotypes.Genotype:
    value = CASES[case]
    return value if isinstance(value, genotypes.Genotype) else genotypes.load(value)


def _sorted_edges(g: genotypes.Genotype) -> genotypes.Genotype:
    """``g`` with every node's two edges sorted by input (the cell spaces' canonical order)."""

    def canon(gene: tuple) -> tuple:
        pairs = [sorted(gene[i : i + 2], key=lambda e: e[1]) for i in range(0, len(gene), 2)]
        return tuple(e for pair in pairs for e in pair)

    if isinstance(g, DartsGenotype):
        return DartsGenotype(canon(g.normal), g.normal_concat, canon(g.reduce), g.reduce_concat)
    if isinstance(g, AutoDeepLabGenotype):
        return AutoDeepLabGenotype(canon(g.cell), g.path, g.strides)
    return g


def _draws(space, count: int, seed: int = 0) -> list:
    """``count`` raw draws (repeats kept) through a study with the trial-seeded sampler."""
    study = optuna.create_study(sampler=TrialSeededRandomSampler(seed))
    out = []
    for _ in range(count):
        trial = study.ask()
        out.append(space.sample(trial))
        study.tell(trial, 0.0)
    return out


# ------------------------------------------------------------------------ every method's space
@pytest.mark.parametrize("case", sorted(CASES))
def test_random_genotypes_are_valid_build_and_reproduce(case: str) -> None:
    g = _genotype(case)
    space = random_space_of(g)
    draws = sample_genotypes(space, 3, seed=0)
    assert len(set(draws)) == 3 and g not in draws
    for d in draws:
        assert type(d) is type(g)
        assert genotypes.from_dict(d.to_dict()) == d  # a valid genotype, through its YAML form
        assert space.sample(FixedTrial(space.params(d))) == d  # params is sample's inverse
        net = genotypes.build_network(d, num_classes=3, **SMALL[g.kind]).eval()
        with torch.no_grad():
            assert tuple(net(torch.randn(1, 3, 32, 32)).shape) == (1, 3, 32, 32)
    # the genotype itself is in its random space (cells: with each node's edges sorted)
    assert space.sample(FixedTrial(space.params(g))) == _sorted_edges(g)
    # seeded: the same seed, the same list; n draws are the first n of n + 1; another seed differs
    assert sample_genotypes(space, 3, seed=0) == draws
    assert sample_genotypes(space, 4, seed=0)[:3] == draws
    assert sample_genotypes(space, 3, seed=1) != draws
    if isinstance(space, ProductSpace):  # a mutation changes exactly one decision
        child = space.mutate(draws[0], random.Random(0))
        before, after = space.params(draws[0]), space.params(child)
        assert sum(before[k] != after[k] for k in before) == 1


def test_random_space_of_needs_a_declared_space() -> None:
    with pytest.raises(ConfigError, match="toy_chain.*declares no random_space"):
        random_space_of(ToyGenotype(("a", "b")))
    with pytest.raises(ConfigError, match="expected a Genotype"):
        random_space_of("experiments/genotypes/darts_v2.yaml")  # type: ignore[arg-type]


def test_spaces_reject_genotypes_of_another_shape() -> None:
    space = random_space_of(_genotype("darts_v2"))
    two_nodes = (("skip_connect", 0), ("skip_connect", 1)) * 2
    with pytest.raises(ConfigError, match="normal cell has 2 nodes"):
        space.params(DartsGenotype(two_nodes, (2,), two_nodes, (2,)))
    same_input = (("skip_connect", 0), ("sep_conv_3x3", 0))
    with pytest.raises(ConfigError, match="takes input 0 twice"):
        DartsCellSpace(steps=1, multiplier=1).params(
            DartsGenotype(same_input, (2,), same_input, (2,))
        )
    with pytest.raises(ConfigError, match="primitives"):
        DartsCellSpace(primitives=("none",))
    with pytest.raises(ConfigError, match="lasts"):
        FasterSegDiscreteSpace(cells=(4, 4), lasts=(1, 1))
    teacher = _genotype("fasterseg_cityscapes_teacher")
    narrow = dataclasses.replace(teacher, widths=((4,) * 15, (12,) * 15))
    with pytest.raises(ConfigError, match="width 4/12; expected one of \\[12\\]"):
        random_space_of(teacher).params(narrow)


# ------------------------------------------------------------------------------- uniformity
def test_darts_cell_space_is_a_bijection_onto_the_valid_cells_and_draws_uniformly() -> None:
    ops = ("max_pool_3x3", "skip_connect")
    space = DartsCellSpace(steps=2, reduce_steps=1, multiplier=1, primitives=ops)

    def cells(steps: int) -> set[tuple]:  # every derived cell, from the genotype's definition
        nodes = []
        for i in range(steps):
            nodes.append([
                ((a, j), (b, k))
                for j, k in itertools.combinations(range(i + 2), 2)
                for a, b in itertools.product(ops, repeat=2)
            ])  # fmt: skip
        return {sum(choice, ()) for choice in itertools.product(*nodes)}

    normal, reduce = cells(2), cells(1)
    every = list(space.genotypes())
    assert space.size() == len(every) == len(set(every)) == len(normal) * len(reduce) == 192
    assert {g.normal for g in every} == normal and {g.reduce for g in every} == reduce
    # chi-square of the normal cell's 48 values over 720 draws (15 expected per value)
    counts = Counter(g.normal for g in _draws(space, 15 * len(normal)))
    assert set(counts) == normal
    assert chisquare([counts[c] for c in sorted(normal)]).pvalue > 0.01


def test_path_index_is_a_bijection_onto_the_valid_paths_and_draws_uniformly() -> None:
    strides = (4, 8, 16, 32)
    valid = []
    for path in itertools.product(range(len(strides)), repeat=4):
        try:
            AutoDeepLabGenotype(cell=(("skip_connect", 0), ("skip_connect", 1)), path=path)
        except GenotypeError:
            continue
        valid.append(path)
    n = count_paths(4, len(strides))
    assert n == len(valid) == 34
    assert [unrank_path(i, 4, len(strides)) for i in range(n)] == valid  # lexicographic order
    assert [rank_path(p, len(strides)) for p in valid] == list(range(n))
    with pytest.raises(ConfigError, match="level 2 at layer 0"):
        rank_path((2, 2, 2, 2), len(strides))
    space = AutoDeepLabDiscreteSpace(
        blocks=1, layers=4, strides=strides, primitives=("skip_connect",)
    )
    assert space.size() == n
    counts = Counter(g.path for g in _draws(space, 20 * n))
    assert set(counts) == set(valid)
    assert chisquare([counts[p] for p in valid]).pvalue > 0.01


def test_fasterseg_paths_are_every_valid_path_once() -> None:
    space = FasterSegDiscreteSpace(cells=(5, 4), lasts=(2, 0), widths=(12,), ops=("conv",))
    valid = {
        p
        for p in itertools.product(range(3), repeat=5)
        if p[0] == 0 and all(b - a in (0, 1) for a, b in zip(p, p[1:])) and p[-1] == 2
    }
    every = list(space.genotypes())
    assert space.size() == len(every) == len(valid) == 6
    assert {g.paths[0] for g in every} == valid and {g.paths[1] for g in every} == {(0,) * 4}


# ------------------------------------------------------------------ draws: skips and latency
def test_draws_skip_infeasible_excluded_and_repeated_genotypes() -> None:
    space = ToySpace(length=2, forbid="a")
    draws = sample_genotypes(space, 5, seed=0)
    assert all(g.ops[0] != "a" for g in draws) and len(set(draws)) == 5
    assert sample_genotypes(space, 5, seed=0, exclude=draws[:1]) == sample_genotypes(space, 6)[1:]
    assert len(sample_genotypes(space, 12, seed=0)) == 12  # all 3 · 4 feasible ones
    with pytest.raises(ConfigError, match=r"only 12 of 13 genotypes matched after 200 draws"):
        sample_genotypes(space, 13, seed=0, max_draws=200)
    assert sample_genotypes(space, 0) == []
    with pytest.raises(ConfigError, match="latency and reference go together"):
        sample_genotypes(space, 1, latency=len)
    with pytest.raises(ConfigError, match="n must be"):
        sample_genotypes(space, -1)


def _conv_edges(g: DartsGenotype) -> float:
    """A fake latency: the number of convolution edges of both cells."""
    return float(
        sum(op.endswith(("3x3", "5x5")) and "pool" not in op for op, _ in g.normal + g.reduce)
    )


def test_latency_matched_draws_lie_in_the_band_and_are_the_matching_uniform_draws() -> None:
    space = random_space_of(_genotype("darts_v2"))

    def inside(g: DartsGenotype) -> bool:
        return abs(_conv_edges(g) - 9.0) <= 0.12 * 9.0  # 8, 9 or 10 convolution edges

    matched = sample_genotypes(space, 4, seed=0, latency=_conv_edges, reference=9.0, tolerance=0.12)
    assert len(matched) == 4 and all(inside(g) for g in matched)
    # rejection sampling: the matching genotypes among the plain draws, in order
    plain = sample_genotypes(space, 16, seed=0)
    assert not all(inside(g) for g in plain)
    assert matched == [g for g in plain if inside(g)][:4]
    # a band with no integer in it: nothing matches
    with pytest.raises(ConfigError, match=r"only 0 of 2 genotypes within 0\.01·9\.5 .* 20 draws"):
        sample_genotypes(space, 2, latency=_conv_edges, reference=9.5, tolerance=0.01, max_draws=20)


def test_latency_function_prices_draws_from_a_real_table(tmp_path: Path) -> None:
    def fake_ms(config: OpConfig) -> float:
        base = DARTS_PRIMITIVES.index(config.op) if config.op in DARTS_PRIMITIVES else 10
        return float(base * (config.C_in + config.H) + 3)

    torch.manual_seed(0)
    supernet = DartsSpace(num_classes=3, C=4, layers=3)
    size = (16, 16)
    table = LatencyTable.build(
        supernet.latency_configs(size), input_size=size, measure=fake_ms, progress=False
    )
    table.save(tmp_path / "table.json")
    latency = latency_function(supernet, tmp_path / "table.json")
    published = _genotype("darts_v2")
    reference = latency(published)
    assert reference == supernet.derived_latency(table, published)
    draws = sample_genotypes(
        random_space_of(published), 2, latency=latency, reference=reference, tolerance=0.05
    )
    assert all(abs(latency(g) - reference) <= 0.05 * reference for g in draws)
    with pytest.raises(ConfigError, match="has no derived_latency"):
        latency_function(object(), tmp_path / "table.json")
