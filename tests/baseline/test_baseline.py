"""``lightning-nas baseline`` on a tiny budget: real retrains, an identical recipe, resumable."""

import json
from pathlib import Path

import pytest
import yaml
from PIL import Image

from lightning_nas import genotypes
from lightning_nas.cli import main

REPO = Path(__file__).parents[2]
GENOTYPE = REPO / "experiments/genotypes/darts_v2.yaml"


def _overrides(root):
    return [
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
        "trainer.devices=1",
        "trainer.limit_train_batches=1",
        "model.init_args.network.init_args.C=4",
        "model.init_args.network.init_args.layers=3",
        f"data.init_args.root={root}",
        "data.init_args.num_train=16",
        "data.init_args.num_val=8",
        "data.init_args.image_size=32",
    ]


def _run(tmp_path, root, capsys, extra=()):
    config = str(REPO / "experiments/retrain_darts.yaml")
    argv = ["baseline", "--genotype", str(GENOTYPE), "-c", config,
            "--seeds", "0", "1", "--num_random", "2", "--out", str(tmp_path / "b"), "--no_progress",
            "--search_minutes", "1.5", *extra]  # fmt: skip
    for item in _overrides(root):
        argv += ["--override", item]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code, capsys.readouterr()


def _recipe(config_path):
    cfg = yaml.safe_load(Path(config_path).read_text())
    cfg.pop("seed_everything")
    cfg["model"]["init_args"]["network"]["init_args"].pop("genotype")
    cfg["trainer"].pop("default_root_dir")
    cfg["trainer"]["logger"]["init_args"].pop("save_dir")
    cfg.pop("ckpt_path", None)
    return cfg


def test_baseline_retrains_searched_and_random_with_one_recipe(tmp_path, synthetic_root, capsys):
    code, captured = _run(tmp_path, synthetic_root, capsys)
    assert code == 0, captured.err
    out = tmp_path / "b"
    result = json.loads((out / "baseline.json").read_text())
    runs = result["runs"]
    assert [(r["group"], r["seed"]) for r in runs] == [
        ("searched", 0), ("searched", 1), ("random", 0), ("random", 1)
    ]  # fmt: skip
    # the table and the JSON agree with the runs; the percentile is recomputable by hand
    c = result["comparison"]
    searched = [r["value"] for r in runs if r["group"] == "searched"]
    random = [r["value"] for r in runs if r["group"] == "random"]
    assert c["searched"] == searched and c["random"] == random
    mean = sum(searched) / 2
    assert (
        c["percentile"]
        == 100 * (sum(v < mean for v in random) + 0.5 * sum(v == mean for v in random)) / 2
    )
    assert f"{c['searched_mean']:.4f}" in captured.out and "verdict:" in captured.out
    assert "1.5" in captured.out and result["search_minutes"] == 1.5
    # random genotypes: valid, different from the searched one and from each other
    drawn = [genotypes.load(r["genotype"]) for r in runs if r["group"] == "random"]
    assert genotypes.load(GENOTYPE) not in drawn and drawn[0] != drawn[1]
    # identical recipe: every run's saved config equals the others but for genotype, seed, paths
    configs = [Path(r["run_dir"]) / "logs/version_0/config.yaml" for r in runs]
    recipes = [_recipe(p) for p in configs]
    assert all(r == recipes[0] for r in recipes[1:])
    assert recipes[0]["trainer"]["max_epochs"] == 1
    seeds = [yaml.safe_load(p.read_text())["seed_everything"] for p in configs]
    assert seeds == [0, 1, 0, 1]
    # the files: CSV rows, a PNG that decodes
    lines = (out / "baseline.csv").read_text().splitlines()
    assert lines[0].startswith("group,label,seed,value") and len(lines) == 5
    with Image.open(out / "baseline.png") as img:
        img.verify()
    # rerun: the study is complete, nothing is retrained, the same numbers come back
    mtimes = [p.stat().st_mtime for p in configs]
    code, captured = _run(tmp_path, synthetic_root, capsys)
    assert code == 0
    assert json.loads((out / "baseline.json").read_text())["comparison"] == c
    assert [p.stat().st_mtime for p in configs] == mtimes


def test_baseline_bad_input_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["baseline", "--genotype", str(GENOTYPE), "-c", str(tmp_path / "missing.yaml")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "missing.yaml" in err and len(err.splitlines()) == 1


def test_latency_matched_random_genotypes_from_the_command_line_options(tmp_path, capsys):
    import argparse

    import torch

    from lightning_nas.baseline.cli import _latency
    from lightning_nas.baseline.run import random_genotypes
    from lightning_nas.latency import LatencyTable
    from lightning_nas.spaces import DartsSpace

    def fake_ms(config):  # a deterministic table: op rank × size
        ops = ["skip_connect", "max_pool_3x3", "avg_pool_3x3", "sep_conv_3x3", "sep_conv_5x5",
               "dil_conv_3x3", "dil_conv_5x5"]  # fmt: skip
        return float((ops.index(config.op) + 1 if config.op in ops else 9) * config.C_in + 1)

    torch.manual_seed(0)
    space = {"num_classes": 3, "C": 4, "layers": 3}
    table = LatencyTable.build(DartsSpace(**space).latency_configs((16, 16)), input_size=(16, 16),
                               measure=fake_ms, progress=False)  # fmt: skip
    table.save(tmp_path / "table.json")
    config = tmp_path / "space.yaml"
    config.write_text(yaml.safe_dump({"class_path": "lightning_nas.spaces.DartsSpace",
                                      "init_args": space}))  # fmt: skip
    args = argparse.Namespace(latency_table=str(tmp_path / "table.json"),
                              latency_space_config=str(config))  # fmt: skip
    latency = _latency(args)
    searched = genotypes.load(GENOTYPE)
    reference = latency(searched)
    paths = random_genotypes(searched, 3, 0, tmp_path / "g", latency=latency, tolerance=0.1)
    drawn = [genotypes.load(p) for p in paths]
    assert len(set(drawn)) == 3 and searched not in drawn
    assert all(abs(latency(g) - reference) <= 0.1 * reference for g in drawn)
    # without the space that prices genotypes: one line
    with pytest.raises(SystemExit) as exit_info:
        table_path = str(tmp_path / "table.json")
        main(["baseline", "--genotype", str(GENOTYPE), "-c", str(config),
              "--latency_table", table_path, "--out", str(tmp_path / "o")])  # fmt: skip
    assert exit_info.value.code == 2
    assert "--latency_space_config" in capsys.readouterr().err
