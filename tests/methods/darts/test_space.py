"""Tests of the DARTS search space (supernet, α, derivation)."""

from pathlib import Path

import pytest
import torch

from lightning_nas.genotypes import DartsGenotype, load
from lightning_nas.methods.darts.genotype import DARTS_PRIMITIVES
from lightning_nas.methods.darts.space import DartsSpace, derive_darts_cell
from lightning_nas.spaces.base import SearchSpace

GENOTYPES = Path(__file__).resolve().parents[3] / "experiments" / "genotypes"
OPS = {name: k for k, name in enumerate(DARTS_PRIMITIVES)}


@pytest.fixture
def space() -> DartsSpace:
    torch.manual_seed(0)
    return DartsSpace(num_classes=5, C=4, layers=3)


def test_forward_shape(space: DartsSpace) -> None:
    assert isinstance(space, SearchSpace)
    assert tuple(space(torch.randn(2, 3, 32, 32)).shape) == (2, 5, 32, 32)
    assert space.output_stride == 4


def test_forward_stem_stride_and_odd_size() -> None:
    space = DartsSpace(num_classes=3, in_channels=1, C=2, layers=3, stem_stride=2, steps=2,
                       multiplier=2)  # fmt: skip
    assert space.output_stride == 8
    assert tuple(space(torch.randn(2, 1, 33, 27)).shape) == (2, 3, 33, 27)
    assert space.alphas_normal.shape == (2 + 3, len(DARTS_PRIMITIVES))


def test_structure(space: DartsSpace) -> None:
    assert [cell.reduction for cell in space.cells] == [False, True, True]
    assert len(space.cells[0].ops) == 14
    five = DartsSpace(C=2, layers=5)
    assert [cell.reduction for cell in five.cells] == [False, True, False, True, False]
    # Output channels: multiplier * C * 2 ** (number of reductions) = 4 * 2 * 4.
    assert five.head[1].in_channels == 32
    assert five.head[1].out_channels == 19
    assert five.output_stride == 4


def test_arch_parameters(space: DartsSpace) -> None:
    arch = space.arch_parameters()
    assert list(arch) == ["alphas_normal", "alphas_reduce"]
    assert arch["alphas_normal"] is space.alphas_normal
    assert all(p.shape == (14, 8) for p in arch.values())
    assert 0 < space.alphas_normal.abs().max() < 1e-2  # 1e-3 * randn

    weight_ids = {id(p) for p in space.weight_parameters()}
    arch_ids = {id(p) for p in arch.values()}
    all_ids = {id(p) for p in space.parameters()}
    assert weight_ids.isdisjoint(arch_ids)
    assert weight_ids | arch_ids == all_ids
    assert len(weight_ids) > 0

    dists = space.arch_distributions()
    torch.testing.assert_close(dists["alphas_reduce"].sum(-1), torch.ones(14))


def test_zero_init() -> None:
    space = DartsSpace(C=2, layers=3, alpha_init_std=0.0)
    assert torch.count_nonzero(space.alphas_normal) == 0


def test_backward_reaches_both_alphas(space: DartsSpace) -> None:
    logits = space(torch.randn(2, 3, 16, 16))
    loss = torch.nn.functional.cross_entropy(logits, torch.randint(0, 5, (2, 16, 16)))
    loss.backward()
    for name, p in space.arch_parameters().items():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name
    # Every weight receives a gradient too (no unused parameters, as DDP needs).
    assert all(p.grad is not None for p in space.weight_parameters())


def test_derive_hand_built_alphas(space: DartsSpace) -> None:
    a = torch.zeros(14, 8)
    # node 0: edges j=0 (row 0), j=1 (row 1)
    a[0, OPS["sep_conv_3x3"]] = 2.0
    a[1, OPS["max_pool_3x3"]] = 1.0
    # node 1: rows 2..4 (j = 0, 1, 2); j=2 strongest, then j=0, j=1 dropped
    a[2, OPS["skip_connect"]] = 2.5
    a[3, OPS["avg_pool_3x3"]] = 1.0
    a[4, OPS["dil_conv_5x5"]] = 3.0
    # node 2: rows 5..8 (j = 0..3); j=0 only has a huge 'none'; j=1 and j=3 tie -> lower j first
    a[5, OPS["none"]] = 10.0
    a[6, OPS["dil_conv_3x3"]] = 2.0
    a[8, OPS["sep_conv_5x5"]] = 2.0
    # node 3: rows 9..13 all equal -> j=0, j=1 with the first non-none op
    b = torch.zeros(14, 8)
    b[:, OPS["none"]] = 5.0
    b[:, OPS["avg_pool_3x3"]] = 1.0
    b[1, OPS["sep_conv_5x5"]] = 1.5
    b[4, OPS["dil_conv_3x3"]] = 1.5
    with torch.no_grad():
        space.alphas_normal.copy_(a)
        space.alphas_reduce.copy_(b)
    assert space.derive() == DartsGenotype(
        normal=(
            ("sep_conv_3x3", 0), ("max_pool_3x3", 1),
            ("dil_conv_5x5", 2), ("skip_connect", 0),
            ("dil_conv_3x3", 1), ("sep_conv_5x5", 3),
            ("max_pool_3x3", 0), ("max_pool_3x3", 1),
        ),
        normal_concat=(2, 3, 4, 5),
        reduce=(
            ("sep_conv_5x5", 1), ("avg_pool_3x3", 0),
            ("dil_conv_3x3", 2), ("avg_pool_3x3", 0),
            ("avg_pool_3x3", 0), ("avg_pool_3x3", 1),
            ("avg_pool_3x3", 0), ("avg_pool_3x3", 1),
        ),
        reduce_concat=(2, 3, 4, 5),
    )  # fmt: skip
    assert space.derived_statistics() == {
        "skip_connections_normal": 1.0,
        "skip_connections_reduce": 0.0,
    }


def _alphas_for(cell: tuple[tuple[str, int], ...]) -> torch.Tensor:
    """α that is one-hot (large) on each chosen edge; the first edge of a node is the stronger."""
    a = torch.zeros(14, 8)
    start = 0
    for node in range(4):
        for rank, (op, j) in enumerate(cell[2 * node : 2 * node + 2]):
            a[start + j, OPS[op]] = 10.0 - 2.0 * rank
        start += node + 2
    return a


@pytest.mark.parametrize("name", ["darts_v1", "darts_v2"])
def test_derive_reproduces_published_genotypes(name: str, space: DartsSpace) -> None:
    published = load(GENOTYPES / f"{name}.yaml")
    with torch.no_grad():
        space.alphas_normal.copy_(_alphas_for(published.normal))
        space.alphas_reduce.copy_(_alphas_for(published.reduce))
    assert space.derive() == published
    stats = space.derived_statistics()
    assert stats["skip_connections_normal"] == published.num_skip_connections("normal")
    assert stats["skip_connections_reduce"] == published.num_skip_connections("reduce")


def test_derive_never_picks_none(space: DartsSpace) -> None:
    torch.manual_seed(1)
    with torch.no_grad():
        for p in space.arch_parameters().values():
            p.normal_(0.0, 0.1)
            p[:, OPS["none"]] = 100.0
    genotype = space.derive()
    ops = [op for op, _ in genotype.normal + genotype.reduce]
    assert len(ops) == 16 and "none" not in ops


def test_derive_cell_concat_follows_steps_and_multiplier() -> None:
    space = DartsSpace(C=2, layers=3, steps=3, multiplier=2)
    genotype = space.derive()
    assert len(genotype.normal) == 6
    assert genotype.normal_concat == (3, 4) == genotype.reduce_concat
    gene, concat = derive_darts_cell(torch.full((2, 8), 0.125), steps=1, concat=range(2, 3))
    assert gene == (("max_pool_3x3", 0), ("max_pool_3x3", 1)) and concat == (2,)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layers": 2}, "layers must be an integer >= 3, got 2"),
        ({"C": 0}, "C must be an integer >= 1, got 0"),
        ({"num_classes": 1.5}, "num_classes must be an integer >= 1, got 1.5"),
        ({"steps": 2, "multiplier": 3}, r"multiplier \(3\) must be <= steps \(2\)"),
        ({"alpha_init_std": -1.0}, "alpha_init_std must be >= 0, got -1.0"),
        ({"stem_stride": 0}, "stem_stride must be an integer >= 1, got 0"),
    ],
)
def test_invalid_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DartsSpace(**kwargs)


def test_arch_labels_match_the_alpha_layout():
    from lightning_nas.methods.darts.genotype import DARTS_PRIMITIVES
    from lightning_nas.methods.darts.space import DartsSpace

    space = DartsSpace(num_classes=3, C=4, layers=3, steps=3, multiplier=2)
    rows, cols = space.arch_labels()["alphas_normal"]
    assert len(rows) == space.alphas_normal.shape[0] == 2 + 3 + 4
    assert rows[:3] == ["0->2", "1->2", "0->3"] and rows[-1] == "3->4"
    assert cols == list(DARTS_PRIMITIVES)
