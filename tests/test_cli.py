"""The command line: configs run, printed configs re-run, bad input gives one clear line."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lightning_nas.cli import NASCLI, main

REPO = Path(__file__).parents[1]
TINY_SEARCH = [
    "--model.init_args.space.init_args.C=4",
    "--model.init_args.space.init_args.layers=3",
    "--model.init_args.space.init_args.steps=2",
    "--model.init_args.space.init_args.multiplier=2",
]


def tiny_data(root):
    return [
        f"--data.init_args.root={root}",
        "--data.init_args.num_train=16",
        "--data.init_args.num_val=8",
        "--data.init_args.image_size=32",
        "--data.init_args.batch_size=4",
    ]


def run_cli(args, tmp_path):
    return NASCLI(
        args=[
            *args,
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.enable_progress_bar=false",
        ]
    )


def test_darts_fast_dev_run_links_num_classes(tmp_path, synthetic_root):
    cli = run_cli(
        [
            "fit",
            "-c",
            str(REPO / "experiments/darts.yaml"),
            "--trainer.fast_dev_run=true",
            *TINY_SEARCH,
            *tiny_data(synthetic_root),
        ],
        tmp_path,
    )
    assert cli.model.space.num_classes == cli.datamodule.num_classes == 6
    assert cli.trainer.state.finished
    assert cli.model.space.C == 4


def test_retrain_fast_dev_run_with_genotype_file(tmp_path, synthetic_root):
    cli = run_cli(
        [
            "fit",
            "-c",
            str(REPO / "experiments/retrain_darts.yaml"),
            "--trainer.fast_dev_run=true",
            f"--model.init_args.network.init_args.genotype={REPO}/experiments/genotypes/darts_v1.yaml",
            "--model.init_args.network.init_args.C=4",
            "--model.init_args.network.init_args.layers=3",
            *tiny_data(synthetic_root),
        ],
        tmp_path,
    )
    assert cli.model.num_classes == 6 and cli.model.network.num_classes == 6
    assert cli.trainer.state.finished


def test_printed_config_reruns(tmp_path, synthetic_root, capsys):
    with pytest.raises(SystemExit) as exit_info:
        NASCLI(
            args=[
                "fit",
                "-c",
                str(REPO / "experiments/darts.yaml"),
                *TINY_SEARCH,
                *tiny_data(synthetic_root),
                "--print_config",
            ]
        )
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    config = yaml.safe_load(printed)
    space = config["model"]["init_args"]["space"]
    assert space["class_path"] in (
        "lightning_nas.spaces.DartsSpace",
        "lightning_nas.methods.darts.space.DartsSpace",
    )
    assert space["init_args"]["C"] == 4
    # DARTS' release (train_search.py): Adam lr 3e-4, betas (0.5, 0.999), weight decay 1e-3
    arch_opt = config["model"]["init_args"]["arch_optimizer"]["init_args"]
    assert arch_opt["lr"] == 3e-4 and arch_opt["weight_decay"] == 1e-3
    assert tuple(arch_opt["betas"]) == (0.5, 0.999)
    path = tmp_path / "printed.yaml"
    path.write_text(printed)
    cli = run_cli(["fit", "-c", str(path), "--trainer.fast_dev_run=true"], tmp_path)
    assert cli.trainer.state.finished and cli.model.space.C == 4


@pytest.mark.parametrize(
    "override,expected",
    [
        ("--model.init_args.no_such_key=1", ["no_such_key", "not accepted"]),
        ("--model.init_args.space.init_args.C=0", ["C", "got 0"]),
        ("--model.init_args.arch_start_epoch=-1", ["arch_start_epoch", "-1"]),
        ("--data.init_args.batch_size=zero", ["batch_size", "zero"]),
    ],
)
def test_bad_config_value_is_one_line(tmp_path, synthetic_root, capsys, override, expected):
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "fit",
                "-c",
                str(REPO / "experiments/darts.yaml"),
                *tiny_data(synthetic_root),
                override,
                "--trainer.fast_dev_run=true",
                f"--trainer.default_root_dir={tmp_path}",
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("error: ") and len(err) <= 2, err
    assert all(word in err[0] for word in expected), err[0]


def test_unknown_op_in_genotype_is_one_line(tmp_path, synthetic_root, capsys):
    bad = tmp_path / "bad.yaml"
    text = (REPO / "experiments/genotypes/darts_v2.yaml").read_text()
    bad.write_text(text.replace("dil_conv_3x3", "dil_conv_9x9", 1))
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "fit",
                "-c",
                str(REPO / "experiments/retrain_darts.yaml"),
                f"--model.init_args.network.init_args.genotype={bad}",
                *tiny_data(synthetic_root),
                "--trainer.fast_dev_run=true",
                f"--trainer.default_root_dir={tmp_path}",
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "bad.yaml" in err[0] and "dil_conv_9x9" in err[0]


def test_missing_genotype_file_is_one_line(tmp_path, synthetic_root, capsys):
    with pytest.raises(SystemExit):
        main(
            [
                "fit",
                "-c",
                str(REPO / "experiments/retrain_darts.yaml"),
                f"--model.init_args.network.init_args.genotype={tmp_path}/nope.yaml",
                *tiny_data(synthetic_root),
                "--trainer.fast_dev_run=true",
            ]
        )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.yaml" in err[0], err


@pytest.mark.slow
def test_console_scripts_and_module_entry_point_show_help():
    env = {**os.environ, "WANDB_MODE": "disabled"}
    bindir = Path(sys.executable).parent
    for cmd in (
        [str(bindir / "lightning-nas"), "fit", "--help"],
        [str(bindir / "lightning"), "fit", "--help"],
        [sys.executable, "-m", "lightning_nas", "fit", "--help"],
    ):
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "--model CONFIG | CLASS_PATH_OR_NAME" in out.stdout
        assert "--data CONFIG | CLASS_PATH_OR_NAME" in out.stdout


def test_cli_checkpoint_loads_without_arguments(tmp_path, synthetic_root):
    from lightning_nas.search import SearchModule

    cli = run_cli(
        [
            "fit",
            "-c",
            str(REPO / "experiments/darts.yaml"),
            "--trainer.max_epochs=1",
            *TINY_SEARCH,
            *tiny_data(synthetic_root),
        ],
        tmp_path,
    )
    ckpt = Path(cli.trainer.checkpoint_callback.dirpath) / "last.ckpt"
    loaded = SearchModule.load_from_checkpoint(ckpt)
    assert loaded.space.C == 4 and loaded.space.num_classes == 6
    assert loaded.derive() == cli.model.derive()


def test_smp_baseline_with_smp_loss(tmp_path, synthetic_root):
    import segmentation_models_pytorch as smp

    cli = run_cli(
        [
            "fit",
            "-c",
            str(REPO / "experiments/baseline_unet.yaml"),
            "--trainer.fast_dev_run=true",
            "--model.init_args.network.init_args.encoder_depth=3",
            "--model.init_args.network.init_args.decoder_channels=[32, 16, 8]",
            *tiny_data(synthetic_root),
        ],
        tmp_path,
    )
    assert isinstance(cli.model.network, smp.Unet)
    assert cli.model.num_classes == 6
    assert cli.model.network.segmentation_head[0].out_channels == 6
    assert isinstance(cli.model.criterion, smp.losses.DiceLoss)
    assert cli.trainer.state.finished


def test_summary_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["summary", str(REPO / "experiments/genotypes/autodeeplab_cityscapes.yaml")])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "10.147 M" in out and "cell_11" in out
