"""SM-NAS end to end on the synthetic data: experiments/smnas.yaml with its CPU overlay.

Stage 1 (structural) then stage 2 (modular, seeded from stage 1's knee points) on NSGA-II over
(mIoU, measured latency); the front over both stages exported; every exported genotype rebuilds
to the parameters and FLOPs its trial recorded; one front member retrained with
experiments/retrain_smnas.yaml.
"""

from __future__ import annotations

import csv
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from lightning_nas import genotypes
from lightning_nas.cli import NASCLI, main
from lightning_nas.methods.smnas.network import SMNASNetwork
from lightning_nas.methods.smnas.structural import model_cost
from lightning_nas.strategies.pareto import dominates

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]


def test_two_stage_search_front_export_and_retrain(tmp_path, synthetic_root, capsys):
    root = tmp_path / "smnas"
    source = "init_args.data.init_args"
    args = [
        "-c",
        str(REPO / "experiments/smnas.yaml"),
        "-c",
        str(REPO / "experiments/smnas_cpu.yaml"),
        f"--root_dir={root}",
        "--n_trials=5",
        f"--evaluator.{source}.root={synthetic_root}",
        f"--evaluator.{source}.image_size=32",  # the shared fixture's rendering
        f"--next_stage.init_args.root_dir={root}/modular",
        "--next_stage.init_args.n_trials=4",
        f"--next_stage.init_args.evaluator.{source}.root={synthetic_root}",
        f"--next_stage.init_args.evaluator.{source}.image_size=32",
        "--progress=false",
    ]
    with pytest.raises(SystemExit) as exit_info:
        main(["study", *args])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "Pareto front" in printed and "candidate pairs differently" in printed

    stage1 = optuna.load_study(
        study_name="smnas_cpu_structural", storage=f"sqlite:///{root}/study.db"
    )
    stage2 = optuna.load_study(
        study_name="smnas_cpu_modular", storage=f"sqlite:///{root}/modular/study.db"
    )
    assert stage1.user_attrs["strategy"].startswith("NSGA2Search(")
    done1 = [t for t in stage1.trials if t.state == TrialState.COMPLETE]
    done2 = [t for t in stage2.trials if t.state == TrialState.COMPLETE]
    assert len(done1) == 5 and len(done2) == 4
    assert [d.name for d in stage1.directions] == ["MAXIMIZE", "MINIMIZE"]
    seeded = [t for t in done2 if "seeded_from" in t.user_attrs]
    assert 1 <= len(seeded) <= 2  # the knee points of stage 1 (seeds: 2)
    for t in seeded:
        parent = stage1.trials[int(t.user_attrs["seeded_from"].split(":")[1])]
        child, origin = (genotypes.from_dict(x.user_attrs["genotype"]) for x in (t, parent))
        assert (child.decoder, child.input_size) == (origin.decoder, origin.input_size)
        assert child.encoder == "coded" and child.norm == "gn_ws"

    # the front over both stages: non-dominated among every feasible candidate
    with pytest.raises(SystemExit) as exit_info:
        main(["study", "export", *args, f"--out={tmp_path / 'front'}"])
    assert exit_info.value.code == 0
    rows = list(csv.DictReader((tmp_path / "front" / "front" / "front.csv").open()))
    values = [(float(r["val/mIoU"]), float(r["latency_ms"])) for r in rows]
    on_front = [v for v, r in zip(values, rows) if r["on_front"] == "True"]
    for v in on_front:
        assert not any(dominates(w, v, ["maximize", "minimize"]) for w in values)
    written = sorted((tmp_path / "front").glob("rank*.yaml"))
    assert len(written) == len(on_front) >= 1
    assert (tmp_path / "front" / "front" / "front.png").is_file()
    assert (tmp_path / "front" / "front" / "hypervolume.csv").is_file()

    # each exported genotype rebuilds to the parameters and FLOPs its trial recorded, exactly
    by_label = {r["label"]: r for r in rows}
    for path in written:
        genotype = genotypes.load(path)
        net = SMNASNetwork(genotype, num_classes=6)
        cost = model_cost(net.model, genotype.input_size)
        row = by_label[genotype.label]
        assert round(cost["params"], 6) == pytest.approx(float(row["params"]), abs=1e-6)
        assert round(cost["flops"], 6) == pytest.approx(float(row["flops"]), abs=1e-9)

    cli = NASCLI(
        args=[
            "fit",
            "-c",
            str(REPO / "experiments/retrain_smnas.yaml"),
            f"--model.init_args.network.init_args.genotype={written[0]}",
            f"--data.init_args.root={synthetic_root}",
            "--data.init_args.num_train=16",
            "--data.init_args.num_val=8",
            "--data.init_args.image_size=32",
            "--trainer.max_epochs=1",
            f"--trainer.default_root_dir={tmp_path / 'retrain'}",
            "--trainer.enable_progress_bar=false",
        ]
    )
    assert cli.trainer.state.finished
    assert cli.model.network.genotype == genotypes.load(written[0])
