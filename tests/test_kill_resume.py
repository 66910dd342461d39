"""kill -9 anywhere, rerun the same command: the run finishes, a search bit-identically.

Real processes: ``python -m lightning_nas fit ...`` (the ``lightning`` console script) with the
mid-epoch checkpoint recipe of docs/resume.md, killed with SIGKILL once a checkpoint of a
seeded-random step exists (the process is then anywhere in the following steps), and the same
command rerun with ``--ckpt_path last``. The uninterrupted reference runs in this process.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lightning_nas.cli import NASCLI

REPO = Path(__file__).parents[1]


SEARCH = [
    "-c",
    str(REPO / "experiments/darts.yaml"),
    "--model.init_args.space.init_args.C=4",
    "--model.init_args.space.init_args.layers=3",
    "--model.init_args.space.init_args.steps=2",
    "--model.init_args.space.init_args.multiplier=2",
    "--model.init_args.weight_lr_scheduler.init_args.T_max=2",
]
RETRAIN = [
    "-c",
    str(REPO / "experiments/retrain_darts.yaml"),
    f"--model.init_args.network.init_args.genotype={REPO}/experiments/genotypes/darts_v1.yaml",
    "--model.init_args.network.init_args.C=4",
    "--model.init_args.network.init_args.layers=3",
]


def command(kind: str, root: str, out: Path) -> list[str]:
    return [
        "fit",
        *(SEARCH if kind == "search" else RETRAIN),
        f"--data.init_args.root={root}",
        "--data.init_args.num_train=16",
        "--data.init_args.num_val=8",
        "--data.init_args.image_size=32",
        "--data.init_args.batch_size=2",
        "--data.init_args.scale_range=[0.75,1.25]",
        "--trainer.max_epochs=2",
        f"--trainer.default_root_dir={out}",
        "--trainer.enable_progress_bar=false",
        # docs/resume.md: a checkpoint every N optimizer steps in a fixed folder
        "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
        f"--trainer.callbacks.dirpath={out}/steps",
        "--trainer.callbacks.every_n_train_steps=2",
        "--trainer.callbacks.save_last=true",
        "--trainer.callbacks.save_top_k=-1",
        "--ckpt_path=last",
    ]


def start(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "lightning_nas", *args],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"exited with {proc.returncode} before {path.name}"
        assert time.monotonic() < deadline, f"no {path.name} after {timeout} s"
        time.sleep(0.05)


def final_state(out: Path) -> dict[str, torch.Tensor]:
    path = out / "steps" / "last.ckpt"
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("kind", ["search", "retrain"])
def test_killed_at_a_random_step_resumes_bit_identically(tmp_path, synthetic_root, kind):
    # 16 scenes, batches of 2, 2 epochs of 8 optimizer steps: a search has trainA/trainB
    # halves of 8 (4 batches, each an architecture and a weight step), a retrain 8 batches.
    # Checkpoints every 2 steps; the kill comes after a seeded-random one, mid-epoch or not.
    step = random.Random(f"{kind}15").choice([2, 4, 6, 8, 10, 12])
    killed_dir = tmp_path / "killed"
    log = tmp_path / "killed.log"
    args = command(kind, synthetic_root, killed_dir)
    proc = start(args, log)
    try:
        ckpt = killed_dir / "steps" / f"epoch={(step - 1) // 8}-step={step}.ckpt"
        wait_for(ckpt, proc)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        proc.kill()
    saved = {p.name for p in (killed_dir / "steps").glob("epoch=*.ckpt")}
    assert "epoch=1-step=16.ckpt" not in saved  # it did not finish before the kill

    reference = NASCLI(args=command(kind, synthetic_root, tmp_path / "reference"))
    expected = reference.model.state_dict()

    rerun = start(args, log)
    assert rerun.wait(240) == 0, log.read_text()[-3000:]
    assert "Restoring states from the checkpoint" in log.read_text()
    resumed = final_state(killed_dir)
    assert resumed.keys() == expected.keys()
    for name, value in expected.items():
        assert torch.equal(resumed[name], value), name
