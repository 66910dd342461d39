"""Workers that die: kill -9 mid-trial, rerun or a second worker → the study ends complete.

Real storages: a SQLite file, and a PostgreSQL server started here from the installed binaries
(two worker processes on one study). Real processes: ``python -m lightning_nas study``. The
evaluator is the closed-form one of ``toy_space`` with a sleep, so a trial is long enough to be
killed in the middle; DPC's real study is tested in ``tests/methods/dpc``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState
from postgres import find_binaries, postgres_server

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def write_config(path: Path, root: Path, markers: Path, storage: str | None, n_trials: int):
    config = {
        "space": {"class_path": "toy_space.ToySpace", "init_args": {"length": 6}},
        "evaluator": {
            "class_path": "toy_space.ToyEvaluator",
            "init_args": {"sleep": 0.8, "marker_dir": str(markers)},
        },
        "strategy": {"class_path": "lightning_nas.strategies.RandomSearch", "init_args": {}},
        "n_trials": n_trials,
        "study_name": "workers",
        "storage": storage,
        "root_dir": str(root),
        "heartbeat_interval": 1,
        "grace_period": 3,
        "progress": False,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def worker(config: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{REPO}", "WANDB_MODE": "disabled"}
    return subprocess.Popen(
        [sys.executable, "-m", "lightning_nas", "study", "-c", str(config)],
        env=env,
        cwd=REPO,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def wait_for(predicate, timeout: float = 120.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(0.1)


def started_not_done(markers: Path, pid: int) -> list[int]:
    started = {int(p.stem.split("_")[1]) for p in markers.glob(f"{pid}_*.started")}
    done = {int(p.stem.split("_")[1]) for p in markers.glob(f"{pid}_*.done")}
    return sorted(started - done)


def check_nothing_lost(study: optuna.Study, killed: int, n_trials: int, extra: int = 0) -> None:
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert n_trials <= len(complete) <= n_trials + extra, [t.state for t in trials]
    dead = trials[killed]
    assert dead.state == TrialState.FAIL
    retries = [
        t for t in complete if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == killed
    ]
    assert len(retries) == 1 and retries[0].params == dead.params  # its candidate was re-run
    keys = [tuple(sorted(t.params.items())) for t in complete]
    assert len(set(keys)) == len(keys)  # no candidate evaluated twice
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_kill_9_mid_trial_then_rerun_continues_to_the_count(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    config = write_config(tmp_path / "c.yaml", tmp_path / "run", markers, None, n_trials=5)
    first = worker(config, tmp_path / "first.log")
    try:
        wait_for(lambda: 2 in started_not_done(markers, first.pid), what="trial 2 to start")
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        first.kill()
    second = worker(config, tmp_path / "second.log")
    assert second.wait(240) == 0, (tmp_path / "second.log").read_text()[-2000:]
    study = optuna.load_study(study_name="workers", storage=f"sqlite:///{tmp_path}/run/study.db")
    check_nothing_lost(study, killed=2, n_trials=5)
    # the rerun's log names the retried trial with the killed trial's parameters
    assert "trial 5:" in (tmp_path / "second.log").read_text()


@pytest.fixture
def postgres_url():
    if find_binaries() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL server binaries missing: .ci/run installs them")
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not installed")
    tmp = Path(tempfile.mkdtemp(prefix="lightning-nas-pg-"))
    tmp.chmod(0o755)  # the postgres user (under root) must reach the data directory
    try:
        with postgres_server(tmp / "pg") as url:
            yield url
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_two_workers_share_a_postgres_study_and_the_dashboard_serves_it(tmp_path, postgres_url):
    from lightning_nas.strategies.cli import study_main

    markers = tmp_path / "markers"
    markers.mkdir()
    config = write_config(tmp_path / "c.yaml", tmp_path / "run", markers, postgres_url, 5)
    assert study_main(["create", "-c", str(config)]) == 0  # once, before the workers
    a = worker(config, tmp_path / "a.log")
    b = worker(config, tmp_path / "b.log")
    try:
        wait_for(lambda: started_not_done(markers, a.pid), what="a trial on worker a")
        killed = started_not_done(markers, a.pid)[0]
        a.send_signal(signal.SIGKILL)
        a.wait(30)
        assert b.wait(240) == 0, (tmp_path / "b.log").read_text()[-2000:]
    finally:
        for p in (a, b):
            with contextlib.suppress(ProcessLookupError):
                p.kill()
    study = optuna.load_study(study_name="workers", storage=postgres_url)
    # two workers may race for the last trial: at most one extra
    check_nothing_lost(study, killed=killed, n_trials=5, extra=1)
    retried = [t for t in study.trials if "failed_trial" in t.system_attrs]
    assert [t.number for t in retried if t.state == TrialState.COMPLETE]
    # both workers ran trials
    pids = {p.name.split("_")[0] for p in markers.glob("*.done")}
    assert pids == {str(b.pid)} or pids == {str(a.pid), str(b.pid)}
    assert str(b.pid) in pids

    # optuna-dashboard serves the study over HTTP
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    import optuna_dashboard

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):  # noqa: D102
            pass

    server = make_server("127.0.0.1", 0, optuna_dashboard.wsgi(postgres_url), handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/api/studies"
        with urllib.request.urlopen(url, timeout=30) as response:
            body = json.loads(response.read())
    finally:
        server.shutdown()
    studies = {s["study_name"]: s for s in body["study_summaries"]}
    assert "workers" in studies
