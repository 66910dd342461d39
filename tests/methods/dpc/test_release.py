"""The release's JSON cell format ↔ DPCGenotype, and the shipped published cell."""

import json
from pathlib import Path

import pytest

from lightning_nas.genotypes import GenotypeError, load
from lightning_nas.methods.dpc.genotype import DPCGenotype
from lightning_nas.methods.dpc.release import (
    from_release_config,
    from_release_json,
    release_yaml,
    to_release_config,
    to_release_json,
)

PUBLISHED = (
    Path(__file__).resolve().parents[3] / "experiments" / "genotypes" / "dpc_cityscapes.yaml"
)

# tensorflow/models research/deeplab/core/dense_prediction_cell_branch5_top1_cityscapes.json
# @ d318246, verbatim (reference.md §4.3)
RELEASE_JSON = (
    '[{"kernel": 3, "rate": [1, 6], "op": "conv", "input": -1}, '
    '{"kernel": 3, "rate": [18, 15], "op": "conv", "input": 0}, '
    '{"kernel": 3, "rate": [6, 3], "op": "conv", "input": 1}, '
    '{"kernel": 3, "rate": [1, 1], "op": "conv", "input": 0}, '
    '{"kernel": 3, "rate": [6, 21], "op": "conv", "input": 0}]'
)


def test_published_json_round_trip() -> None:
    g = from_release_json(RELEASE_JSON)
    assert g == load(PUBLISHED)
    assert to_release_json(g) == RELEASE_JSON  # byte for byte
    assert json.loads(to_release_json(g)) == json.loads(RELEASE_JSON)


def test_the_shipped_yaml_is_generated_from_the_release() -> None:
    text = PUBLISHED.read_text()
    assert text == release_yaml(from_release_json(RELEASE_JSON))
    assert "dense_prediction_cell_branch5_top1_cityscapes.json @ d318246" in text


def test_a_release_file(tmp_path: Path) -> None:
    path = tmp_path / "cell.json"
    path.write_text(RELEASE_JSON)
    assert from_release_json(path) == from_release_json(str(path)) == load(PUBLISHED)
    with pytest.raises(FileNotFoundError):
        from_release_json(tmp_path / "missing.json")


def test_every_op_type_round_trips() -> None:
    g = DPCGenotype(
        branches=(
            (-1, "conv1x1", (1, 1)),
            (0, "pyramid_pooling", (2, 8)),
            (-1, "sep_conv3x3", (21, 3)),
            (1, "pyramid_pooling", (1, 1)),
        )
    )
    config = to_release_config(g)
    assert config[0] == {"kernel": 1, "op": "conv", "input": -1}
    assert config[1] == {"op": "pyramid_pooling", "grid_size": [2, 8], "input": 0}
    assert config[2] == {"kernel": 3, "rate": [21, 3], "op": "conv", "input": -1}
    assert from_release_config(config) == g
    assert from_release_json(to_release_json(g)) == g


def test_release_variants_of_the_kernel() -> None:
    """The release accepts ``kernel`` as ``k`` or ``[k, k]`` and ignores a 1×1 conv's rate."""
    g = from_release_config([
        {"kernel": [1, 1], "rate": [6, 6], "op": "conv", "input": -1},
        {"kernel": [3, 3], "rate": [9, 6], "op": "conv", "input": 0},
    ])  # fmt: skip
    assert g.branches == ((-1, "conv1x1", (1, 1)), (0, "sep_conv3x3", (9, 6)))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ([{"kernel": 5, "rate": [1, 1], "op": "conv", "input": -1}], r"\[0\]\.kernel: got 5"),
        ([{"kernel": 3, "op": "conv", "input": -1}], r"\[0\]\.rate: got None"),
        ([{"op": "pyramid_pooling", "input": -1}], r"\[0\]\.grid_size: got None"),
        ([{"op": "sep", "input": -1}], r"\[0\]\.op: unknown op 'sep'"),
        ([{"kernel": 1, "op": "conv"}], r"\[0\]\.input: missing key"),
        ([{"op": "pyramid_pooling", "grid_size": [3, 1], "input": -1}],
         r"branches\[0\]\[2\]: grid 3 "),
        ([{"kernel": 1, "op": "conv", "input": -1}, {"kernel": 1, "op": "conv", "input": 1}],
         r"branches\[1\]\[0\]: got input 1"),
    ],
)  # fmt: skip
def test_bad_release_configs(config, message) -> None:
    with pytest.raises(GenotypeError, match=r"^cell\.json: " + message) as err:
        from_release_config(config, source="cell.json")
    assert "\n" not in str(err.value)


def test_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "cell.json"
    path.write_text('[{"kernel": 3,')
    with pytest.raises(GenotypeError, match=r"cell\.json: line 1: invalid JSON"):
        from_release_json(path)
