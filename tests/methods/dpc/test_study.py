"""DPC's study end to end on the synthetic data: experiments/dpc.yaml with its CPU overlay.

Random + refine on cached features (the proxy task), a worker killed with SIGKILL mid-trial and
the same command rerun, the top-k exported, and one exported cell retrained end to end with
experiments/retrain_dpc.yaml.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from lightning_nas import genotypes
from lightning_nas.methods.dpc.genotype import DPCGenotype

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]


def overrides(root: Path, data_root: Path, epochs: int) -> list[str]:
    return [
        "-c",
        str(REPO / "experiments/dpc.yaml"),
        "-c",
        str(REPO / "experiments/dpc_cpu.yaml"),
        f"--root_dir={root}",
        f"--evaluator.init_args.data.init_args.cache_root={root}/cache",
        f"--evaluator.init_args.data.init_args.source.init_args.root={data_root}",
        "--evaluator.init_args.data.init_args.source.init_args.image_size=32",  # the fixture's
        f"--evaluator.init_args.trainer.max_epochs={epochs}",
        "--heartbeat_interval=1",
        "--grace_period=3",
        "--progress=false",
    ]


def study_process(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    return subprocess.Popen(
        [sys.executable, "-m", "lightning_nas", "study", *args],
        cwd=REPO,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def test_random_then_refine_study_survives_a_kill_and_exports_a_retrainable_cell(
    tmp_path, synthetic_root
):
    root = tmp_path / "dpc"
    args = overrides(root, synthetic_root, epochs=6)
    url = f"sqlite:///{root}/study.db"
    first = study_process(args, tmp_path / "first.log")
    killed = None
    try:
        deadline = time.monotonic() + 180
        while killed is None and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.2)
            if not (root / "study.db").is_file():
                continue
            try:  # read only (a read-only connection: this poller must never stamp the schema
                # version while the worker creates it, a race that crashed the worker)
                read_only = f"sqlite:///file:{root}/study.db?mode=ro&uri=true"
                storage = optuna.storages.RDBStorage(read_only, skip_table_creation=True)
                study = optuna.load_study(study_name="dpc_cpu", storage=storage)
            except Exception:  # noqa: BLE001 - not created yet
                continue
            running = [  # a candidate in training: every decision sampled
                t
                for t in study.trials
                if t.state == TrialState.RUNNING and t.number >= 1 and len(t.params) == 10
            ]
            if running:
                first.send_signal(signal.SIGKILL)
                killed = running[0].number
        first.wait(30)
    finally:
        first.kill()
    assert killed is not None, (tmp_path / "first.log").read_text()[-3000:]
    second = study_process(args, tmp_path / "second.log")
    assert second.wait(300) == 0, (tmp_path / "second.log").read_text()[-3000:]

    study = optuna.load_study(study_name="dpc_cpu", storage=url)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 6
    assert study.trials[killed].state == TrialState.FAIL
    retry = [
        t for t in complete if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == killed
    ]
    assert len(retry) == 1 and retry[0].params == study.trials[killed].params
    keys = [tuple(sorted(t.params.items())) for t in complete]
    assert len(set(keys)) == 6  # nothing evaluated twice
    # refinement: after 4 random candidates, mutations (one decision) of the top 2
    refined = [t for t in complete if "refined_from" in t.user_attrs]
    assert refined
    for t in refined:
        parent = study.trials[t.user_attrs["refined_from"]]
        assert sum(t.params[k] != parent.params[k] for k in t.params) == 1
    for t in complete:
        assert 0.0 <= t.values[0] <= 1.0
        assert isinstance(genotypes.from_dict(t.user_attrs["genotype"]), DPCGenotype)

    from lightning_nas.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["study", "export", *args, "--top_k", "3", f"--out={tmp_path / 'top'}"])
    assert exit_info.value.code == 0
    written = sorted((tmp_path / "top").glob("rank*.yaml"))
    assert len(written) == 3
    best = max(complete, key=lambda t: t.values[0])
    assert genotypes.load(written[0]).to_dict() == best.user_attrs["genotype"]

    from lightning_nas.cli import NASCLI

    cli = NASCLI(
        args=[
            "fit",
            "-c",
            str(REPO / "experiments/retrain_dpc.yaml"),
            f"--model.init_args.network.init_args.genotype={written[0]}",
            "--model.init_args.network.init_args.channels=16",
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
