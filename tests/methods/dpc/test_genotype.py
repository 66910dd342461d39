"""DPC's genotype: the 81-op space, validation with one-line errors, YAML round trip, no torch."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lightning_nas.genotypes import GenotypeError, from_dict, load, save
from lightning_nas.methods.dpc.genotype import GRIDS, NUM_BRANCHES, OPS, RATES, DPCGenotype

REPO = Path(__file__).resolve().parents[3]
PUBLISHED = REPO / "experiments" / "genotypes" / "dpc_cityscapes.yaml"

# every op type, a branch reading a non-adjacent earlier branch, asymmetric rates and grids
MIXED = DPCGenotype(
    branches=(
        (-1, "conv1x1", (1, 1)),
        (0, "pyramid_pooling", (2, 8)),
        (-1, "sep_conv3x3", (21, 3)),
        (1, "pyramid_pooling", (1, 1)),
        (0, "sep_conv3x3", (9, 12)),
    )
)


def test_the_op_space_has_81_distinct_ops() -> None:
    assert RATES == (1, 3, 6, 9, 12, 15, 18, 21)
    assert GRIDS == (1, 2, 4, 8)
    assert NUM_BRANCHES == 5
    assert len(OPS) == len(set(OPS)) == 1 + 8 * 8 + 4 * 4 == 81
    assert sum(op == "sep_conv3x3" for op, _, _ in OPS) == 64
    assert sum(op == "pyramid_pooling" for op, _, _ in OPS) == 16
    for op, a, b in OPS:  # every op choice is a valid branch
        DPCGenotype(branches=((-1, op, (a, b)),))


def test_published_cell() -> None:
    g = load(PUBLISHED)
    assert isinstance(g, DPCGenotype)
    assert g.num_branches == 5
    assert g.branches == (
        (-1, "sep_conv3x3", (1, 6)),
        (0, "sep_conv3x3", (18, 15)),
        (1, "sep_conv3x3", (6, 3)),
        (0, "sep_conv3x3", (1, 1)),
        (0, "sep_conv3x3", (6, 21)),
    )


@pytest.mark.parametrize("genotype", [MIXED, load(PUBLISHED)], ids=["mixed", "published"])
def test_yaml_round_trip(genotype: DPCGenotype, tmp_path: Path) -> None:
    save(genotype, tmp_path / "g.yaml")
    assert load(tmp_path / "g.yaml") == genotype
    assert from_dict(genotype.to_dict()) == genotype
    assert hash(genotype) == hash(load(tmp_path / "g.yaml"))


def test_lists_are_converted_to_tuples() -> None:
    g = DPCGenotype(branches=[[-1, "sep_conv3x3", [1, 6]], [0, "conv1x1", [1, 1]]])
    assert g.branches == ((-1, "sep_conv3x3", (1, 6)), (0, "conv1x1", (1, 1)))
    assert g.to_dict() == {
        "kind": "dpc",
        "version": 1,
        "branches": [[-1, "sep_conv3x3", [1, 6]], [0, "conv1x1", [1, 1]]],
    }


BAD = [
    # (branches, key named, value named)
    ([[-1, "conv1x1", [1, 1]], [2, "conv1x1", [1, 1]]], "branches[1][0]", "2"),  # a later branch
    ([[-1, "conv1x1", [1, 1]], [1, "conv1x1", [1, 1]]], "branches[1][0]", "1"),  # itself
    ([[0, "conv1x1", [1, 1]]], "branches[0][0]", "0"),  # branch 0 must read F
    ([[-1, "conv1x1", [1, 1]], [-2, "conv1x1", [1, 1]]], "branches[1][0]", "-2"),
    ([[True, "conv1x1", [1, 1]]], "branches[0][0]", "True"),
    ([[-1, "conv5x5", [1, 1]]], "branches[0][1]", "'conv5x5'"),  # unknown op
    ([[-1, "sep_conv3x3", [1, 5]]], "branches[0][2]", "rate 5"),  # rate not in RATES
    ([[-1, "sep_conv3x3", [24, 1]]], "branches[0][2]", "rate 24"),
    ([[-1, "pyramid_pooling", [3, 1]]], "branches[0][2]", "grid 3"),  # grid not in GRIDS
    ([[-1, "pyramid_pooling", [2, 16]]], "branches[0][2]", "grid 16"),
    ([[-1, "conv1x1", [3, 3]]], "branches[0][2]", "3"),
    ([[-1, "sep_conv3x3", [1.0, 6]]], "branches[0][2]", "1.0"),
    ([[-1, "sep_conv3x3"]], "branches[0]", "[-1, 'sep_conv3x3']"),  # wrong arity
    ([[-1, "sep_conv3x3", [1, 6, 9]]], "branches[0][2]", "[1, 6, 9]"),
    ([[-1, "sep_conv3x3", 6]], "branches[0][2]", "6"),
    ([], "branches", "()"),
    ("conv1x1", "branches", "str"),
]


@pytest.mark.parametrize(("branches", "key", "value"), BAD)
def test_bad_genotypes_give_one_line_errors_naming_the_field(branches, key, value) -> None:
    d = {"kind": "dpc", "version": 1, "branches": branches}
    with pytest.raises(GenotypeError) as err:
        from_dict(d, source="cell.yaml")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"cell.yaml: {key}: "), message
    assert value in message.removeprefix(f"cell.yaml: {key}: "), message


def test_a_bad_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(PUBLISHED.read_text().replace("[18, 15]", "[18, 5]"))
    with pytest.raises(GenotypeError, match=r"bad\.yaml: branches\[1\]\[2\]: rate 5 "):
        load(path)


def test_genotype_space_and_release_import_no_torch() -> None:
    script = textwrap.dedent(
        f"""
        import sys
        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
        sys.meta_path.insert(0, NoTorch())
        from lightning_nas.genotypes import load
        from lightning_nas.methods.dpc.release import from_release_json, to_release_json
        from lightning_nas.methods.dpc.space import DPCSpace
        g = load({str(PUBLISHED)!r})
        assert from_release_json(to_release_json(g)) == g
        assert DPCSpace().params(g)["b0_op"] == "sep3x3_r1x6"
        assert not [m for m in sys.modules if m == "torch" or m.startswith("torch.")]
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
