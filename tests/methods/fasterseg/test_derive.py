"""FasterSeg derivation (the release's ``network_metas``) on synthetic and released tensors."""

import itertools
from pathlib import Path

import pytest
import torch

from lightning_nas.methods.fasterseg.derive import (
    betas_to_path,
    derive_branch,
    prune_skips,
    select_lasts,
)
from lightning_nas.methods.fasterseg.release import load_released_arch, released_genotypes

# the release's train/fasterseg/arch_{0,1}.pt as JSON (a copy of ../shared/data's)
RELEASED = Path(__file__).resolve().parents[3] / "experiments" / "genotypes"
RELEASED = RELEASED / "fasterseg_released_arch_params.json"
WIDTHS = [4, 6, 8, 10, 12]

# reference §3.4, "Student = FasterSeg": (ops, path, widths in twelfths) per branch
PUBLISHED_32 = (
    ("conv_2x", "conv_2x", "conv_2x_downup", "conv_downup", "conv_2x_downup", "conv_2x_downup",
     "conv_2x_downup", "conv_2x_downup", "conv_2x_downup", "conv_2x_downup"),
    (0, 0, 0, 0, 1, 1, 1, 1, 2, 2),
    (4, 4, 4, 8, 4, 4, 4, 4, 4),
)  # fmt: skip
PUBLISHED_16 = (
    ("conv_2x", "conv_2x", "conv_2x_downup", "conv_2x_downup", "conv_2x", "conv_2x",
     "conv_2x_downup", "conv_2x_downup", "conv_2x_downup"),
    (0, 0, 0, 0, 0, 0, 1, 1, 1),
    (4, 4, 4, 4, 4, 4, 4, 12),
)  # fmt: skip


def _alphas(layers: int, rows: dict[tuple[int, int], int] | None = None) -> list[torch.Tensor]:
    """α logits preferring ``conv`` everywhere, or the op given per (layer, scale)."""
    alphas = [torch.zeros(layers - j, 5) for j in range(3)]
    for a in alphas:
        a[:, 1] = 1.0
    for (layer, scale), op in (rows or {}).items():
        alphas[scale][layer - scale] = 0.0
        alphas[scale][layer - scale, op] = 2.0
    return alphas


def test_released_student_is_the_published_fasterseg() -> None:
    g = released_genotypes(RELEASED)["student"]
    assert g.stem_head_width == (8, 8)
    assert (g.ops[0], g.paths[0], g.widths[0]) == PUBLISHED_32
    assert (g.ops[1], g.paths[1], g.widths[1]) == PUBLISHED_16
    # the first three cells agree (op, next scale, width): shared in the network
    for k in range(3):
        assert g.ops[0][k] == g.ops[1][k] and g.paths[0][k + 1] == g.paths[1][k + 1]
        assert g.widths[0][k] == g.widths[1][k]
    assert g.ops[0][3] != g.ops[1][3]


def test_released_teacher_downsampling_layers_and_widths() -> None:
    g = released_genotypes(RELEASED)["teacher"]
    assert g.stem_head_width == (12, 12)
    assert "skip" not in g.ops[0] + g.ops[1]
    downs = [[k for k in range(len(p) - 1) if p[k + 1] > p[k]] for p in g.paths]
    assert downs == [[5, 13], [4]]  # reference §3.4 "Teacher"
    assert all(w == 12 for ws in g.widths for w in ws)
    assert sum(op == "conv_2x_downup" for op in g.ops[0]) > len(g.ops[0]) / 2


def test_released_scores_choose_the_32_16_pair() -> None:
    sets = load_released_arch(RELEASED)
    assert sets["scores"]["latency"][(2, 1)] == pytest.approx(6.4139770511)
    assert released_genotypes(RELEASED, lasts=(2, 0))["student"].paths[1][-1] == 0


def test_path_to_32_maximises_the_product_over_the_release_range() -> None:
    gen = torch.Generator().manual_seed(3)
    layers = 12
    for _ in range(5):
        b1 = torch.rand(layers - 2, 2, generator=gen)
        b2 = torch.rand(layers - 3, 2, generator=gen)
        path = betas_to_path(b1, b2, last=2, layers=layers)
        pairs = [(i, j) for j in range(layers - 4) for i in range(1, j - 1)]
        i, j = max(pairs, key=lambda ij: float(b1[ij[0], 0] * b2[ij[1], 0]))
        downs = [k for k in range(layers - 1) if path[k + 1] > path[k]]
        assert downs == [i + 1, j + 2] and path[-1] == 2 and len(path) == layers


def test_path_to_16_and_8() -> None:
    b1, b2 = torch.full((14, 2), 0.5), torch.full((13, 2), 0.5)
    b1[0, 0] = 0.99  # row 0 is excluded by the release's rule
    b1[9, 0] = 0.6
    path = betas_to_path(b1, b2, last=1, layers=16)
    assert path.index(1) == 10 and path[-1] == 1
    assert betas_to_path(b1, b2, last=0, layers=16) == [0] * 16
    with pytest.raises(ValueError, match="last"):
        betas_to_path(b1, b2, last=3, layers=16)


def test_non_down_skips_are_removed_down_skips_replaced() -> None:
    layers = 10
    path = [0] * 4 + [1] * 6  # cell 3 goes down
    skips = {(1, 0): 0, (3, 0): 0, (5, 1): 0}  # skip at 1 and 5 (removable), 3 (down)
    alphas = _alphas(layers, skips)
    alphas[0][3, 3] = 1.5  # next-best of the down cell: conv_2x
    branch = prune_skips(alphas, path, [w / 12 for w in range(1, layers)])
    assert branch.path == (0, 0, 0, 1, 1, 1, 1, 1)
    assert branch.ops[2] == "conv_2x" and "skip" not in branch.ops
    # the removed cells' output widths go: cells 0, 2, 3, 4, 6, 7, 8 keep theirs
    assert branch.widths == tuple(w / 12 for w in (1, 3, 4, 5, 7, 8, 9))


def test_skip_cap_keeps_round_n_over_3_plus_2_last_cells() -> None:
    layers = 12
    alphas = _alphas(layers, {(k, 0): 0 for k in range(layers)})
    for k in range(layers):  # skip probability grows with k
        alphas[0][k, 0] = 2.0 + 0.1 * k
    branch = prune_skips(alphas, [0] * layers, [1.0] * (layers - 1))
    assert len(branch.path) == round(layers / 3)  # + 2 · last, last = 0
    assert "skip" not in branch.ops
    # removed are the most skip-like: the last cells; the kept ones are the first four
    assert len(branch.widths) == len(branch.path) - 1


def test_not_every_cell_between_two_downs_may_be_a_skip() -> None:
    layers = 12
    path = [0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2]  # downs at cells 1 and 6
    rows = {(k, 1): 0 for k in range(2, 6)}  # cells 2..5 at 1/16 all skips
    alphas = _alphas(layers, rows)
    alphas[1][4 - 1, 0] = 1.2  # cell 4: the least likely skip, next-best conv
    branch = prune_skips(alphas, path, [1.0] * (layers - 1))
    assert branch.path.count(1) == 2  # cell 4 kept (with conv) plus the down cell 6
    assert branch.ops[branch.path.index(1)] == "conv"


def test_teacher_ignores_skips() -> None:
    layers = 10
    alphas = _alphas(layers, {(k, 0): 0 for k in range(layers)})
    branch = prune_skips(alphas, [0] * layers, [1.0] * (layers - 1), ignore_skip=True)
    assert len(branch.ops) == layers and set(branch.ops) == {"conv"}


def test_widths_follow_the_node_rows_of_the_ratio_tensors() -> None:
    layers = 9
    alphas = _alphas(layers)
    b1, b2 = torch.zeros(layers - 2, 2), torch.zeros(layers - 3, 2)
    b1[:, 0] = -5.0
    b1[2, 0] = 5.0  # 1/32 branch: first down at cell 3
    b2[:, 0] = -5.0
    b2[4, 0] = 5.0  # second down at cell 6 (j = 4 allows i = 2 < j - 1)
    ratios = [torch.zeros(layers - 1, 5), torch.zeros(layers - 1, 5), torch.zeros(layers - 2, 5)]
    for rows in ratios:
        rows[:, 0] = 1.0
    ratios[1][3, 2] = 5.0  # node (layer 3, 1/16): the down output of cell 3 → 8/12
    ratios[2][6 - 1, 4] = 5.0  # node (layer 6, 1/32): the down output of cell 6 → 12/12
    branch = derive_branch(alphas, [b1, b2], ratios, WIDTHS, last=2)
    assert branch.path == (0, 0, 0, 0, 1, 1, 1, 2, 2)
    assert branch.widths == (4, 4, 4, 8, 4, 4, 12, 4)


def test_select_lasts_objective() -> None:
    assert select_lasts(0.5, 0.5, 5.0, 9.0) == (2, 0)  # same mIoU, (2, 0) faster
    assert select_lasts(0.5, 0.6, 5.0, 9.0) == (2, 1)
    for m02, m12 in itertools.product((0.3, 0.6), repeat=2):
        assert select_lasts(m02, m12, 8.3, 8.3) == ((2, 0) if m02 > m12 else (2, 1))


def test_released_teacher_is_the_shipped_teacher_with_the_release_counts() -> None:
    from lightning_nas.genotypes import build_network, load
    from lightning_nas.summary import summarize

    shipped = RELEASED.parent / "fasterseg_cityscapes_teacher.yaml"
    teacher = released_genotypes(RELEASED)["teacher"]
    assert teacher == load(shipped)
    with torch.device("meta"):
        net = build_network(teacher, num_classes=19)
    s = summarize(net, input_size=(1024, 2048))
    assert s.multi_adds / 1e9 == pytest.approx(107.8, rel=0.01)  # reference §3.6
    # the release's 23.52M also counts the unused FFM attention: 2 · 192 · 192 weights
    assert round((s.params + 2 * 192 * 192) / 1e6, 2) == 23.52
