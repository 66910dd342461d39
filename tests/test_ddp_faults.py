"""An exception on one rank of a 2-process CPU DDP search ends every rank, with the error, promptly.

The DDP runs are real searches (tests/ddp_fault.py); the guard's logic is also tested alone, on
plain child processes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from callbacks import DDPFaultGuard

SCRIPT = Path(__file__).with_name("ddp_fault.py")
#: Seconds from launch until every rank has ended (start-up takes ~10 s on a loaded 2-core box).
BOUND = 90


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def _run_fault(tmp_path: Path, data: str, rank: int, block: bool, grace: float) -> str:
    """Run the faulty search; return its output once every rank has ended (fail after BOUND)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "PYTHONPATH": str(SCRIPT.parents[1]),
        "WANDB_MODE": "disabled",
        "OMP_NUM_THREADS": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }
    args = [sys.executable, str(SCRIPT), data, str(tmp_path), *map(str, (rank, int(block), grace))]
    log = tmp_path / "log"
    start = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(args, env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    pids: dict[str, int] = {}
    try:
        while True:
            time.sleep(0.5)
            pids = {p.name: int(p.read_text()) for p in tmp_path.glob("pid*") if p.read_text()}
            if proc.poll() is not None and not any(map(_alive, pids.values())):
                break
            if time.monotonic() - start > BOUND:
                pytest.fail(
                    f"ranks still running {BOUND} s after launch: "
                    f"{ {k: v for k, v in pids.items() if _alive(v)} }\n{log.read_text()[-3000:]}"
                )
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in pids.values():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert sorted(pids) == ["pid0", "pid1"], log.read_text()[-3000:]
    assert proc.returncode != 0
    return log.read_text()


@pytest.mark.slow
def test_rank1_exception_ends_rank0_blocked_in_all_reduce(tmp_path, synthetic_root):
    # rank 0 waits in the all-reduce of batch 1; gloo fails it once rank 1 has exited
    output = _run_fault(tmp_path, synthetic_root, rank=1, block=False, grace=10)
    assert "RuntimeError: injected fault on rank 1" in output
    assert "Connection closed by peer" in output  # rank 0's own error
    assert "DDPFaultGuard" not in output  # nothing was left to kill


@pytest.mark.slow
def test_rank0_exception_ends_a_child_that_never_notices(tmp_path, synthetic_root):
    # rank 1 waits in something that never fails (as an NCCL collective does): without the
    # guard it would outlive rank 0; the guard kills it `grace` seconds after rank 0 failed
    output = _run_fault(tmp_path, synthetic_root, rank=0, block=True, grace=1)
    assert "RuntimeError: injected fault on rank 0" in output
    assert "DDPFaultGuard: rank 0 failed (RuntimeError: injected fault on rank 0); " in output
    assert "killing rank 1 (pid " in output


# --- the guard alone ------------------------------------------------------------------------


def _trainer(procs: list[subprocess.Popen] | None) -> SimpleNamespace:
    launcher = None if procs is None else SimpleNamespace(procs=procs)
    return SimpleNamespace(strategy=SimpleNamespace(launcher=launcher))


def _sleeper(seconds: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"])


def test_guard_kills_children_still_running_after_grace(capsys):
    procs = [_sleeper(60), _sleeper(60)]
    try:
        start = time.monotonic()
        DDPFaultGuard(grace=0.2).on_exception(_trainer(procs), None, ValueError("boom"))
        assert time.monotonic() - start < 10
        assert [p.returncode for p in procs] == [-signal.SIGKILL] * 2
    finally:
        for p in procs:
            p.kill()
            p.wait()
    err = capsys.readouterr().err
    assert f"rank 0 failed (ValueError: boom); killing rank 1 (pid {procs[0].pid}), " in err
    assert f"rank 2 (pid {procs[1].pid}), still running 0.2 s later" in err


def test_guard_lets_children_end_on_their_own(capsys):
    procs = [subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])]
    DDPFaultGuard(grace=30).on_exception(_trainer(procs), None, ValueError("boom"))
    assert procs[0].returncode == 3
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("procs", [None, []], ids=["no_launcher", "child_rank"])
def test_guard_does_nothing_without_children(procs, capsys):
    DDPFaultGuard().on_exception(_trainer(procs), None, ValueError("boom"))
    assert capsys.readouterr().err == ""


def test_guard_rejects_negative_grace():
    with pytest.raises(ValueError, match="grace must be >= 0"):
        DDPFaultGuard(grace=-1)
