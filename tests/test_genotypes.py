"""Tests of genotype dataclasses, their YAML round trip and validation errors."""

from dataclasses import FrozenInstanceError, dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from torch import nn

from lightning_nas import genotypes
from lightning_nas.genotypes import (
    DartsGenotype,
    Genotype,
    GenotypeError,
    build_network,
    from_dict,
    load,
    save,
)

GENOTYPES = Path(__file__).resolve().parents[1] / "experiments" / "genotypes"

# quark0/darts cnn/genotypes.py, verbatim (reference.md §2.4).
DARTS_V1 = DartsGenotype(
    normal=[("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
            ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)],
    reduce_concat=[2, 3, 4, 5],
)  # fmt: skip
DARTS_V2 = DartsGenotype(
    normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
    reduce_concat=[2, 3, 4, 5],
)  # fmt: skip


def test_published_files_match_reference() -> None:
    assert load(GENOTYPES / "darts_v1.yaml") == DARTS_V1
    assert load(GENOTYPES / "darts_v2.yaml") == DARTS_V2
    assert load(str(GENOTYPES / "darts_v2.yaml")) == DARTS_V2


def test_lists_become_tuples_and_instances_are_frozen() -> None:
    assert DARTS_V2.normal[0] == ("sep_conv_3x3", 0)
    assert isinstance(DARTS_V2.normal, tuple) and isinstance(DARTS_V2.reduce_concat, tuple)
    assert len({DARTS_V1, DARTS_V2, load(GENOTYPES / "darts_v2.yaml")}) == 2
    with pytest.raises(FrozenInstanceError):
        DARTS_V2.normal = ()  # type: ignore[misc]


def test_to_dict_is_plain() -> None:
    d = DARTS_V2.to_dict()
    assert list(d) == ["kind", "version", "normal", "normal_concat", "reduce", "reduce_concat"]
    assert d["kind"] == "darts" and d["version"] == 1
    assert d["normal"][7] == ["dil_conv_3x3", 2]
    assert d["reduce_concat"] == [2, 3, 4, 5]
    assert yaml.safe_load(yaml.safe_dump(d)) == d
    assert from_dict(d) == DARTS_V2
    assert DartsGenotype.from_dict(d) == DARTS_V2


@pytest.mark.parametrize("genotype", [DARTS_V1, DARTS_V2], ids=["v1", "v2"])
def test_yaml_round_trip(genotype: DartsGenotype, tmp_path: Path) -> None:
    path = tmp_path / "sub" / "g.yaml"
    save(genotype, path)
    text = path.read_text()
    assert text.startswith("# lightning_nas genotype")
    assert "- [sep_conv_3x3, " in text  # one readable line per edge
    assert load(path) == genotype


def test_num_skip_connections() -> None:
    assert DARTS_V2.num_skip_connections() == 2
    assert DARTS_V2.num_skip_connections("reduce") == 3
    assert DARTS_V1.num_skip_connections("normal") == 3
    assert DARTS_V2.steps == {"normal": 4, "reduce": 4}
    with pytest.raises(ValueError, match="cell must be 'normal' or 'reduce', got 'other'"):
        DARTS_V2.num_skip_connections("other")  # type: ignore[arg-type]


def _edit(**changes: Any) -> dict[str, Any]:
    d = DARTS_V2.to_dict()
    for key, value in changes.items():
        if value is _DELETE:
            del d[key]
        else:
            d[key] = value
    return d


_DELETE = object()
_BAD_NORMAL = [list(p) for p in DARTS_V2.to_dict()["normal"]]


def _with(cell: list[list[Any]], k: int, entry: list[Any]) -> list[list[Any]]:
    cell = [list(p) for p in cell]
    cell[k] = entry
    return cell


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        pytest.param(
            _edit(normal=_with(_BAD_NORMAL, 3, ["sep_conv_9x9", 1])),
            ["normal[3][0]", "unknown op 'sep_conv_9x9'", "expected one of max_pool_3x3, "],
            id="unknown-op",
        ),
        pytest.param(
            _edit(normal=_with(_BAD_NORMAL, 2, ["none", 1])),
            ["normal[2][0]", "'none' is not allowed", "expected one of max_pool_3x3"],
            id="none-op",
        ),
        pytest.param(
            _edit(kind="resnet"),
            ["kind", "unknown genotype kind 'resnet'", "expected one of", "darts"],
            id="unknown-kind",
        ),
        pytest.param(_edit(kind=_DELETE), ["kind", "missing key"], id="missing-kind"),
        pytest.param(
            _edit(reduce_concat=_DELETE), ["reduce_concat", "missing key"], id="missing-key"
        ),
        pytest.param(
            _edit(drop_prob=0.2),
            ["drop_prob", "unexpected key", "expected only kind, version, normal"],
            id="extra-key",
        ),
        pytest.param(
            _edit(normal=_with(_BAD_NORMAL, 1, ["sep_conv_3x3", 2])),
            ["normal[1][1]", "bad input index 2 for intermediate node 0", "0 <= j < 2"],
            id="bad-input-index",
        ),
        pytest.param(
            _edit(reduce=_with(_BAD_NORMAL, 7, ["dil_conv_3x3", -1])),
            ["reduce[7][1]", "bad input index -1 for intermediate node 3", "0 <= j < 5"],
            id="negative-input-index",
        ),
        pytest.param(
            _edit(version=2),
            ["version", "version 2 is newer than supported", "expected at most 1"],
            id="newer-version",
        ),
        pytest.param(_edit(version=True), ["version", "got True"], id="bool-version"),
        pytest.param(_edit(version=_DELETE), ["version", "missing key"], id="missing-version"),
        pytest.param(
            _edit(normal_concat="2345"),
            ["normal_concat", "got str", "expected a list of node indices"],
            id="wrong-type-concat",
        ),
        pytest.param(
            _edit(normal={"a": 1}), ["normal", "got dict", "[op, input] pairs"], id="wrong-type"
        ),
        pytest.param(
            _edit(normal=_BAD_NORMAL[:7]), ["normal", "got 7 entries", "even"], id="odd-count"
        ),
        pytest.param(
            _edit(normal=_with(_BAD_NORMAL, 0, ["sep_conv_3x3"])),
            ["normal[0]", "expected [op, input]"],
            id="short-entry",
        ),
        pytest.param(
            _edit(normal_concat=[2, 3, 6]),
            ["normal_concat[2]", "bad node index 6", "2 <= c < 6"],
            id="concat-out-of-range",
        ),
        pytest.param(
            _edit(reduce_concat=[2, 2]), ["reduce_concat", "repeated node index"], id="concat-dup"
        ),
        pytest.param([1, 2], ["<root>", "got list", "expected a mapping"], id="not-a-mapping"),
    ],
)
def test_validation_errors_name_file_and_key(
    data: Any, fragments: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "bad_genotype.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(GenotypeError) as info:
        load(path)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    for fragment in fragments:
        assert fragment in message


def test_unknown_op_message_exact(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(_edit(normal=_with(_BAD_NORMAL, 3, ["sep_conv_9x9", 1]))))
    with pytest.raises(GenotypeError) as info:
        load(path)
    assert str(info.value) == (
        f"{path}: normal[3][0]: unknown op 'sep_conv_9x9'; expected one of max_pool_3x3, "
        "avg_pool_3x3, skip_connect, sep_conv_3x3, sep_conv_5x5, dil_conv_3x3, dil_conv_5x5"
    )


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("kind: darts\nnormal: [[sep_conv_3x3, 0]\n")
    with pytest.raises(GenotypeError, match=r"broken\.yaml: line \d+: invalid YAML") as info:
        load(path)
    assert "\n" not in str(info.value)
    with pytest.raises(FileNotFoundError, match="genotype file not found: .*missing.yaml"):
        load(tmp_path / "missing.yaml")
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        build_network(str(tmp_path / "missing.yaml"), num_classes=3)


def test_direct_construction_is_validated() -> None:
    with pytest.raises(GenotypeError, match=r"^<DartsGenotype>: reduce\[1\]\[1\]: bad input"):
        DartsGenotype(
            normal=(("sep_conv_3x3", 0), ("sep_conv_3x3", 1)),
            normal_concat=(2,),
            reduce=(("max_pool_3x3", 0), ("max_pool_3x3", 5)),
            reduce_concat=(2,),
        )


def test_from_dict_source_in_message() -> None:
    with pytest.raises(GenotypeError, match=r"^<dict>: kind: unknown genotype kind 'x'"):
        from_dict({"kind": "x"})
    with pytest.raises(GenotypeError, match=r"^cfg\.yaml: kind: unknown genotype kind 'x'"):
        from_dict({"kind": "x"}, source="cfg.yaml")


def test_subclasses_register_their_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(genotypes, "_REGISTRY", dict(genotypes._REGISTRY))

    @dataclass(frozen=True)
    class ToyGenotype(Genotype):
        kind: ClassVar[str] = "toy"
        version: ClassVar[int] = 2
        network: ClassVar[str] = "torch.nn.Identity"
        widths: tuple[int, ...]

        @classmethod
        def _convert(cls, fields: dict[str, Any], source: str) -> dict[str, Any]:
            return {"widths": tuple(fields["widths"])}

    toy = ToyGenotype(widths=(8, 16))
    assert toy.to_dict() == {"kind": "toy", "version": 2, "widths": [8, 16]}
    assert from_dict({"kind": "toy", "version": 1, "widths": [8, 16]}) == toy
    assert from_dict(DARTS_V2.to_dict()) == DARTS_V2
    with pytest.raises(GenotypeError, match="kind: got 'toy'; expected 'darts'"):
        DartsGenotype.from_dict(toy.to_dict())
    # build_network resolves the kind's network class path: Network(genotype, num_classes=...)
    assert isinstance(build_network(toy, 3), nn.Identity)


def test_build_network_rejects_other_types() -> None:
    with pytest.raises(TypeError, match="expected a Genotype or a path, got int"):
        build_network(3, num_classes=3)  # type: ignore[arg-type]
