"""The dataset overlays compose with the method configs and run through the real CLI."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import yaml
from fake_datasets import make_ade20k, make_cityscapes, make_voc
from PIL import Image

from lightning_nas.cli import NASCLI
from lightning_nas.data import (
    ADE20KDataModule,
    CityscapesDataModule,
    SegmentationDataModule,
    SyntheticDataModule,
    VOCDataModule,
)
from lightning_nas.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
TINY_SEARCH = [
    "--model.init_args.space.init_args.C=4",
    "--model.init_args.space.init_args.layers=3",
    "--model.init_args.space.init_args.steps=2",
    "--model.init_args.space.init_args.multiplier=2",
]
TINY_RETRAIN = [
    f"--model.init_args.network.init_args.genotype={REPO}/experiments/genotypes/darts_v1.yaml",
    "--model.init_args.network.init_args.C=4",
    "--model.init_args.network.init_args.layers=3",
]
# dataset -> (tree maker, number of classes, overrides that keep the run tiny)
DATASETS = {
    "cityscapes": (make_cityscapes, 19, ["--data.init_args.long_side=64"]),
    "voc": (make_voc, 21, []),
    "ade20k": (make_ade20k, 150, ["--data.init_args.long_side=32"]),
}


def tiny_data(root: Path, name: str) -> list[str]:
    return [
        f"--data.init_args.root={root}",
        "--data.init_args.crop_size=16",
        "--data.init_args.batch_size=2",
        "--data.init_args.num_workers=0",
        "--data.init_args.pin_memory=false",
        *DATASETS[name][2],
    ]


def run(args: list[str], tmp_path: Path, run: bool = True) -> NASCLI:
    return NASCLI(
        args=[
            *args,
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
        ],
        run=run,
    )


@pytest.mark.parametrize("name", list(DATASETS))
def test_search_fast_dev_run(name: str, tmp_path: Path) -> None:
    make, num_classes, _ = DATASETS[name]
    root = make(tmp_path / name)
    overlay = REPO / "experiments" / "data" / f"{name}.yaml"
    cli = run(
        ["fit", "-c", str(REPO / "experiments/darts.yaml"), "-c", str(overlay),
         "--trainer.fast_dev_run=true", *TINY_SEARCH, *tiny_data(root, name)],
        tmp_path,
    )  # fmt: skip
    assert type(cli.datamodule).__name__.lower().startswith(name[:3])
    assert cli.datamodule.search  # kept from darts.yaml although the data class changed
    assert cli.model.space.num_classes == cli.datamodule.num_classes == num_classes
    assert cli.trainer.state.finished


def test_retrain_overlay_keeps_retrain_protocol(tmp_path: Path) -> None:
    cli = run(
        ["-c", str(REPO / "experiments/retrain_darts.yaml"),
         "-c", str(REPO / "experiments/data/cityscapes.yaml"), *TINY_RETRAIN],
        tmp_path,
        run=False,  # parse and instantiate only (no subcommand)
    )  # fmt: skip
    dm = cli.datamodule
    assert not dm.search
    assert (dm.crop_size, dm.long_side, dm.num_workers, dm.pin_memory) == (769, None, 8, True)
    assert (dm.scale_range, dm.scales) == ((0.5, 2.0), None)  # DeepLab's retraining scale
    assert cli.model.network.num_classes == 19


TINY_AUTODEEPLAB = [
    "--model.init_args.space.init_args.layers=4",
    "--model.init_args.space.init_args.filter_multiplier=2",
]


def test_autodeeplab_recipe_sets_no_random_scale() -> None:
    # The paper searches on random 321x321 crops of half-resolution images, without scaling.
    config = yaml.safe_load((REPO / "experiments/autodeeplab.yaml").read_text())
    assert config["data"]["init_args"]["scale_range"] == [1.0, 1.0]
    assert "scales" not in config["data"]["init_args"]
    # The overlays set no scale, so that the method config's survives them.
    for name in DATASETS:
        overlay = yaml.safe_load((REPO / "experiments" / "data" / f"{name}.yaml").read_text())
        assert not {"scale_range", "scales"} & set(overlay["data"]["init_args"]), name


def test_autodeeplab_search_on_cityscapes_keeps_the_paper_protocol(tmp_path: Path) -> None:
    cli = run(
        ["-c", str(REPO / "experiments/autodeeplab.yaml"),
         "-c", str(REPO / "experiments/data/cityscapes.yaml"), *TINY_AUTODEEPLAB],
        tmp_path,
        run=False,
    )  # fmt: skip
    dm = cli.datamodule
    assert type(dm).__name__ == "CityscapesDataModule" and dm.search
    assert (dm.crop_size, dm.long_side, dm.scale_range, dm.scales) == (321, 1024, (1.0, 1.0), None)


def test_discrete_scales_compose_with_the_overlay(tmp_path: Path) -> None:
    # What the FasterSeg recipes need: scales from the method config (here the command line)
    # survive experiments/data/cityscapes.yaml.
    cli = run(
        ["-c", str(REPO / "experiments/retrain_darts.yaml"),
         "-c", str(REPO / "experiments/data/cityscapes.yaml"), *TINY_RETRAIN,
         "--data.init_args.scales=[0.75,1,1.25]"],
        tmp_path,
        run=False,
    )  # fmt: skip
    assert (cli.datamodule.scales, cli.datamodule.scale_range) == ((0.75, 1.0, 1.25), None)
    with pytest.raises(ConfigError, match="scale_range and scales are mutually exclusive"):
        run(
            ["-c", str(REPO / "experiments/autodeeplab.yaml"),
             "-c", str(REPO / "experiments/data/cityscapes.yaml"), *TINY_AUTODEEPLAB,
             "--data.init_args.scales=[0.75,1,1.25]"],
            tmp_path,
            run=False,
        )  # fmt: skip


def test_predict_writes_a_voc_submission(tmp_path: Path) -> None:
    root = make_voc(tmp_path / "voc")
    out = tmp_path / "predictions"
    run(
        ["predict", "-c", str(REPO / "experiments/retrain_darts.yaml"),
         "-c", str(REPO / "experiments/data/voc.yaml"), *TINY_RETRAIN, *tiny_data(root, "voc"),
         "--data.init_args.predict_split=test",
         "--trainer.callbacks+=callbacks.prediction_writer.PredictionWriter",
         f"--trainer.callbacks.output_dir={out}"],
        tmp_path,
    )  # fmt: skip
    folder = out / "submission" / "results" / "VOC2012" / "Segmentation" / "comp6_test_cls"
    written = sorted(folder.iterdir())
    assert [p.stem for p in written] == ["2008_000006", "2008_000007"]
    for path in written:
        image = Image.open(path)
        assert image.mode == "P"
        assert np.array(image).max() < 21


@pytest.mark.parametrize(
    "cls,root",
    [
        (CityscapesDataModule, "data/cityscapes"),
        (VOCDataModule, "data/voc"),
        (ADE20KDataModule, "data/ade20k"),
        (SyntheticDataModule, "data/synthetic"),
    ],
    ids=lambda x: getattr(x, "__name__", x),
)
def test_cli_shows_every_data_argument(cls: type, root: str, capsys: pytest.CaptureFixture) -> None:
    """The shared arguments, declared once in the base, reach --print_config and --help."""
    path = f"{cls.__module__}.{cls.__name__}"
    shared = set(inspect.signature(SegmentationDataModule.__init__).parameters) - {"self"}
    own = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"} - shared
    with pytest.raises(SystemExit):
        NASCLI(
            args=["fit", "--model=lightning_nas.segmentation.SegmentationModule",
                  "--model.network=torch.nn.Identity", f"--data={path}", "--print_config"]
        )  # fmt: skip
    printed = yaml.safe_load(capsys.readouterr().out)["data"]["init_args"]
    assert set(printed) == shared | own
    # the printed sentinels (null / auto) rebuild exactly the dataset's defaults
    rebuilt, default = cls(**printed), cls()
    for key in shared:
        assert getattr(rebuilt, key) == getattr(default, key), key
    assert default.root == root
    with pytest.raises(SystemExit):
        NASCLI(args=["fit", f"--data.help={path}"])
    help_text = capsys.readouterr().out
    for key in shared | own:
        assert f"--data.{key} " in help_text, key
    assert "data/cityscapes" in help_text  # what root: null means, per dataset
