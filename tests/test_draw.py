"""Architecture drawings: every genotype kind draws readably; ``lightning-nas draw``."""

from __future__ import annotations

import io
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

from lightning_nas import cli, genotypes
from lightning_nas.draw import figure, label_overlaps, save
from lightning_nas.errors import ConfigError

GENOTYPES = Path(__file__).resolve().parents[1] / "experiments" / "genotypes"
FILES = sorted(GENOTYPES.glob("*.yaml"))


def smnas_genotypes():
    from lightning_nas.genotypes import SMNASGenotype

    return [
        SMNASGenotype(encoder="resnet18", decoder="FPN", input_size=(512, 1024)),
        SMNASGenotype(
            encoder="coded",
            decoder="DeepLabV3Plus",
            input_size=(64, 64),
            output_stride=8,
            base_width=64,
            code="11-21-21-21",
            decoder_channels=128,
            norm="gn_ws",
        ),
    ]


CASES = [*FILES, *smnas_genotypes()]
IDS = [*(p.stem for p in FILES), "smnas_stage1", "smnas_stage2"]


def png_size(data: bytes) -> tuple[int, int]:
    Image.open(io.BytesIO(data)).verify()
    return Image.open(io.BytesIO(data)).size


def test_every_published_kind_is_covered():
    from lightning_nas.methods import BUILTIN

    kinds = {genotypes.load(p).kind for p in FILES} | {"smnas"}
    assert kinds == set(BUILTIN)  # (other tests register toy kinds: not genotypes.kinds())


@pytest.mark.parametrize("source", CASES, ids=IDS)
def test_every_genotype_draws_a_readable_png_and_svg(source):
    genotype = genotypes.load(source) if isinstance(source, Path) else source
    fig = figure(genotype)
    title = fig.get_suptitle()
    assert title and genotype.kind in title.lower().replace("-", "")
    assert label_overlaps(fig) == []
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=40)
    width, height = png_size(png.getvalue())
    assert width > 0 and height > 0
    svg = io.BytesIO()
    fig.savefig(svg, format="svg")
    assert ET.fromstring(svg.getvalue()).tag.endswith("svg")


def test_save_png_and_svg_atomically(tmp_path):
    source = GENOTYPES / "darts_v2.yaml"
    png = save(source, tmp_path / "out" / "cells.png", dpi=30)
    svg = save(genotypes.load(source), tmp_path / "out" / "cells.svg")
    assert png == tmp_path / "out" / "cells.png" and svg.name == "cells.svg"
    assert png_size(png.read_bytes())[0] > 0
    assert ET.parse(svg).getroot().tag.endswith("svg")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cells.png", "cells.svg"]


def test_different_genotypes_draw_differently(tmp_path):
    v1 = save(GENOTYPES / "darts_v1.yaml", tmp_path / "v1.png", dpi=30).read_bytes()
    v2 = save(GENOTYPES / "darts_v2.yaml", tmp_path / "v2.png", dpi=30).read_bytes()
    assert v1 != v2


def test_bad_suffix_and_kind_without_drawing(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"out\.jpg.*\.png, \.svg"):
        save(GENOTYPES / "darts_v2.yaml", tmp_path / "out.jpg")
    assert not list(tmp_path.iterdir())
    from lightning_nas.genotypes import DartsGenotype

    monkeypatch.setattr(DartsGenotype, "drawing", None)
    with pytest.raises(ConfigError, match="kind 'darts' has no drawing"):
        figure(GENOTYPES / "darts_v2.yaml")


def run_cli(argv):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    return exit_.value.code


def test_cli_draw_writes_the_file(tmp_path, capsys):
    out = tmp_path / "dpc.svg"
    assert run_cli(["draw", str(GENOTYPES / "dpc_cityscapes.yaml"), "-o", str(out)]) == 0
    assert ET.parse(out).getroot().tag.endswith("svg")
    assert capsys.readouterr().out.strip() == str(out)
    # default: beside the genotype, as .png
    copy = tmp_path / "g" / "genotype.yaml"
    copy.parent.mkdir()
    shutil.copy(GENOTYPES / "darts_v1.yaml", copy)
    assert run_cli(["draw", str(copy), "--dpi", "30"]) == 0
    assert png_size((tmp_path / "g" / "genotype.png").read_bytes())[0] > 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "g" / "genotype.png")


@pytest.mark.parametrize("problem", ["suffix", "missing", "dpi"])
def test_cli_draw_user_errors_are_one_line(tmp_path, capsys, problem):
    genotype, out = str(GENOTYPES / "darts_v2.yaml"), str(tmp_path / "out.png")
    named = {"suffix": str(tmp_path / "out.jpg"), "missing": str(tmp_path / "nope.yaml")}
    argv = {
        "suffix": [genotype, "-o", named["suffix"]],
        "missing": [named["missing"], "-o", out],
        "dpi": [genotype, "-o", out, "--dpi", "zero"],
    }[problem]
    assert run_cli(["draw", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert named.get(problem, "--dpi") in lines[0]
    assert not (tmp_path / "out.png").exists()
