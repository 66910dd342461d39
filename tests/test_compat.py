"""What users saved before the move to ``lightning_nas/methods/`` keeps working.

* checkpoints written by the CLI before the move (``tests/fixtures/pre_move``, made by
  ``tests/fixtures/make_pre_move_checkpoints.py`` at commit ``1ac6c82``) load strictly and derive
  (or hold) the genotype they derived when saved;
* every class path a YAML file or a saved ``config.yaml`` may name, short or full, resolves;
* every YAML under ``experiments/`` parses and validates (``--print_config`` resolves and checks
  every ``class_path``), and every genotype file there loads.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch
import yaml

from lightning_nas import genotypes
from lightning_nas._config import import_object
from lightning_nas.cli import main

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests/fixtures/pre_move"
CHECKPOINTS = sorted([*FIXTURES.glob("*.ckpt"), *FIXTURES.glob("*.ckpt.gz")])


def fixture_name(path: Path) -> str:
    return path.name.split(".")[0]


def test_there_are_pre_move_checkpoints_of_each_method():
    names = {fixture_name(p) for p in CHECKPOINTS}
    assert {"darts_search", "autodeeplab_search", "fasterseg_search"} <= names
    assert {"darts_retrain", "fasterseg_retrain"} <= names


@pytest.mark.parametrize("path", CHECKPOINTS, ids=fixture_name)
def test_pre_move_checkpoint_loads_and_keeps_its_architecture(path, tmp_path):
    name = fixture_name(path)
    expected = genotypes.load(FIXTURES / f"{name}.yaml")
    if path.suffix == ".gz":  # shrunk by make_pre_move_checkpoints.shrink (weights zeroed)
        plain = tmp_path / f"{name}.ckpt"
        plain.write_bytes(gzip.decompress(path.read_bytes()))
        path = plain
    saved = torch.load(path, map_location="cpu", weights_only=False)
    cls = import_object(saved["hyper_parameters"]["_class_path"])
    module = cls.load_from_checkpoint(path, map_location="cpu")  # strict: every key matches
    if name.endswith("_search"):
        assert module.derive() == expected
    else:
        assert module.network.genotype == expected
    state = module.state_dict()
    for key, value in saved["state_dict"].items():
        assert torch.equal(state[key], value), key
    module.eval()
    with torch.no_grad():
        out = module(torch.randn(1, 3, 32, 32))
    assert out.shape[-2:] == (32, 32)


# Every class path a YAML file names today, and the full paths jsonargparse writes into a saved
# config.yaml (``<module>.<Class>``) before the move.
CLASS_PATHS = [
    "lightning_nas.spaces.DartsSpace",
    "lightning_nas.spaces.AutoDeepLabSpace",
    "lightning_nas.spaces.FasterSegSpace",
    "lightning_nas.spaces.SearchSpace",
    "lightning_nas.spaces.darts.DartsSpace",
    "lightning_nas.spaces.autodeeplab.AutoDeepLabSpace",
    "lightning_nas.spaces.fasterseg.FasterSegSpace",
    "lightning_nas.spaces.base.SearchSpace",
    "lightning_nas.networks.DartsNetwork",
    "lightning_nas.networks.AutoDeepLabNetwork",
    "lightning_nas.networks.FasterSegNetwork",
    "lightning_nas.networks.darts.DartsNetwork",
    "lightning_nas.networks.autodeeplab.AutoDeepLabNetwork",
    "lightning_nas.networks.fasterseg.FasterSegNetwork",
    "lightning_nas.genotypes.DartsGenotype",
    "lightning_nas.genotypes.AutoDeepLabGenotype",
    "lightning_nas.genotypes.FasterSegGenotype",
    "callbacks.ArchitectureLogger",
    "callbacks.BranchSelection",
    "callbacks.Distillation",
    "callbacks.GenotypeWriter",
    "callbacks.LatencyRegularization",
    "callbacks.PredictionWriter",
    "callbacks.architecture_logger.ArchitectureLogger",
    "callbacks.branch_selection.BranchSelection",
    "callbacks.distillation.Distillation",
    "callbacks.genotype_writer.GenotypeWriter",
    "callbacks.latency_regularization.LatencyRegularization",
    "callbacks.prediction_writer.PredictionWriter",
    "lightning_nas.search.SearchModule",
    "lightning_nas.segmentation.SegmentationModule",
]


@pytest.mark.parametrize("path", CLASS_PATHS)
def test_class_path_resolves(path):
    obj = import_object(path)
    assert obj.__name__ == path.rpartition(".")[2]


def test_short_and_full_paths_name_one_class():
    assert import_object("lightning_nas.spaces.FasterSegSpace") is import_object(
        "lightning_nas.spaces.fasterseg.FasterSegSpace"
    )
    assert import_object("callbacks.BranchSelection") is import_object(
        "callbacks.branch_selection.BranchSelection"
    )
    assert import_object("lightning_nas.genotypes.DartsGenotype") is type(
        genotypes.load(REPO / "experiments/genotypes/darts_v2.yaml")
    )


FIT_CONFIGS = sorted(
    p
    for p in (REPO / "experiments").glob("*.yaml")
    if "trainer" in (yaml.safe_load(p.read_text()) or {})
)


# overlay -> the study config it completes
STUDY_OVERLAYS = {
    "dpc_cpu.yaml": "dpc.yaml",
    "dpc_fidelity.yaml": "dpc.yaml",
    "dpc_fidelity_cpu.yaml": "dpc.yaml",
    "smnas_cpu.yaml": "smnas.yaml",
}
STUDY_CONFIGS = sorted(
    p
    for p in (REPO / "experiments").glob("*.yaml")
    if "space" in (yaml.safe_load(p.read_text()) or {}) and p.name not in STUDY_OVERLAYS
)


def test_every_experiment_yaml_is_covered():
    every = {p.relative_to(REPO) for p in (REPO / "experiments").rglob("*.yaml")}
    genotype_files = {p.relative_to(REPO) for p in (REPO / "experiments/genotypes").glob("*.yaml")}
    overlays = {
        p.relative_to(REPO) for p in (REPO / "experiments").glob("*/*.yaml")
    } - genotype_files
    fit = {p.relative_to(REPO) for p in FIT_CONFIGS}
    studies = {p.relative_to(REPO) for p in STUDY_CONFIGS}
    study_overlays = {Path("experiments") / name for name in STUDY_OVERLAYS}
    assert every == fit | genotype_files | overlays | studies | study_overlays
    assert len(fit) >= 7


@pytest.mark.parametrize("config", FIT_CONFIGS, ids=lambda p: p.stem)
def test_experiment_config_validates(config, capsys):
    """``--print_config`` imports and type-checks every class path of the file."""
    overlays = [
        "-c",
        str(REPO / "experiments/data/synthetic.yaml"),
        "-c",
        str(REPO / "experiments/loggers/csv.yaml"),
    ]
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(config), *overlays, "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"].startswith("lightning_nas.")


@pytest.mark.parametrize(
    "path", sorted((REPO / "experiments/genotypes").glob("*.yaml")), ids=lambda p: p.stem
)
def test_experiment_genotype_loads(path):
    genotype = genotypes.load(path)
    assert genotypes.from_dict(genotype.to_dict()) == genotype


@pytest.mark.parametrize("config", STUDY_CONFIGS, ids=lambda p: p.stem)
def test_study_config_validates(config, capsys):
    """``lightning-nas study --print_config`` resolves every class path (with its overlays)."""
    from lightning_nas.strategies.cli import study_main

    overlays = [
        arg
        for name, base in STUDY_OVERLAYS.items()
        if base == config.name
        for arg in ("-c", str(REPO / "experiments" / name))
    ]
    for extra in ([], overlays) if overlays else ([],):
        command = "fidelity" if any("fidelity" in a for a in extra) else "run"
        assert study_main([command, "-c", str(config), *extra, "--print_config"]) == 0
        printed = yaml.safe_load(capsys.readouterr().out)
        assert printed["space"]["class_path"].startswith("lightning_nas.methods.")
        assert printed["evaluator"]["class_path"].startswith("lightning_nas.")
