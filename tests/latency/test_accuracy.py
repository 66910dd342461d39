"""Robust timing, interleaved rounds, resumable builds, the network estimate and its statistics.

Behaviour and numbers only: fake timers and hand-computed data, never wall-clock thresholds.
"""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.benchmark.utils.common import Measurement

import lightning_nas.latency.measure as measure_mod
from lightning_nas.latency import (
    LatencyTable,
    OpConfig,
    OpTimer,
    build_op,
    measure_module,
    network_call_config,
    network_estimate,
)
from lightning_nas.latency.blocks import BLOCKS
from lightning_nas.latency.cli import latency_main
from lightning_nas.latency.estimate import (
    bootstrap_interval,
    fit_line,
    pearson,
    ranks,
    spearman,
)
from lightning_nas.methods.darts.space import DartsSpace

ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- timing
class FakeTimer:
    """Stands in for ``torch.utils.benchmark.Timer``: records what it was given."""

    made: list = []

    def __init__(self, stmt, globals, num_threads, **kwargs):
        self.stmt, self.globals, self.num_threads = stmt, globals, num_threads
        self.kwargs = kwargs
        FakeTimer.made.append(self)

    def blocked_autorange(self, min_run_time):
        self.min_run_time = min_run_time
        self.globals["module"](*self.globals["inputs"])  # one real call, in the caller's modes
        # blocks of 4 calls taking 0.4, 0.8, 2.0 s: per call 0.1, 0.2, 0.5 s; median 0.2 s
        return Measurement(number_per_run=4, raw_times=[0.4, 2.0, 0.8], task_spec=None)


def test_blocked_timing_returns_the_median_block_time_per_call_in_ms(monkeypatch):
    import torch.utils.benchmark

    monkeypatch.setattr(torch.utils.benchmark, "Timer", FakeTimer)
    FakeTimer.made.clear()
    calls = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            calls.append((self.training, torch.is_inference_mode_enabled()))
            return x

    probe = Probe().train()
    torch.set_num_threads(1)
    ms = measure_module(probe, [torch.zeros(1)], warmup=2, repeats=99, min_run_time=0.25)
    assert ms == pytest.approx(200.0)
    (timer,) = FakeTimer.made
    assert timer.stmt == "module(*inputs)" and timer.min_run_time == 0.25
    assert timer.num_threads == torch.get_num_threads()  # not the Timer's default of 1
    assert timer.kwargs == {}  # the Timer's own (wall, synchronising) clock
    assert calls == [(False, True)] * 3  # 2 warm-up + the timer's, in eval and inference mode
    assert probe.training
    with pytest.raises(ValueError, match="min_run_time"):
        measure_module(probe, [torch.zeros(1)], min_run_time=0)


def test_cpu_clock_is_the_threads_cpu_time_and_needs_one_cpu_thread(monkeypatch):
    import time as time_module

    import torch.utils.benchmark

    monkeypatch.setattr(torch.utils.benchmark, "Timer", FakeTimer)
    FakeTimer.made.clear()
    module = torch.nn.Identity()
    assert measure_module(module, [torch.zeros(1)], min_run_time=0.1, clock="cpu") == 200.0
    assert FakeTimer.made[0].kwargs == {"timer": time_module.thread_time}
    monkeypatch.undo()
    ticks = iter(range(100))
    monkeypatch.setattr(measure_mod.time, "thread_time", lambda: float(next(ticks)))
    # repeats path: each sample reads the clock twice, one tick apart → 1 s = 1000 ms
    assert measure_module(module, [torch.zeros(1)], warmup=0, repeats=3, clock="cpu") == 1000.0
    torch.set_num_threads(2)
    with pytest.raises(ValueError, match="get_num_threads"):
        measure_module(module, [torch.zeros(1)], clock="cpu")
    torch.set_num_threads(1)
    with pytest.raises(ValueError, match="clock must be"):
        measure_module(module, [torch.zeros(1)], clock="gpu")


def test_op_timer_passes_min_run_time(monkeypatch):
    seen = {}

    def fake_measure(module, inputs, warmup, repeats, number, min_run_time, clock):
        seen.update(warmup=warmup, min_run_time=min_run_time, clock=clock)
        seen["shapes"] = [x.shape for x in inputs]
        return 1.25

    monkeypatch.setattr(measure_mod, "measure_module", fake_measure)
    timer = OpTimer(warmup=1, min_run_time=0.01, clock="cpu")
    assert timer(OpConfig("skip_connect", 4, 4, 8, 8)) == 1.25
    assert seen == {
        "warmup": 1,
        "min_run_time": 0.01,
        "clock": "cpu",
        "shapes": [torch.Size([1, 4, 8, 8])],
    }


def test_real_blocked_timing_of_a_tiny_op_is_positive():
    for clock in ("wall", "cpu"):
        ms = OpTimer(warmup=1, min_run_time=0.001, clock=clock)(OpConfig("add", 2, 2, 4, 4))
        assert 0.0 < ms < math.inf


# ----------------------------------------------------------------------------- rounds
def test_build_interleaves_rounds_and_combines_them():
    calls = []
    values = {"a": [3.0, 1.0, 2.0], "b": [5.0, 7.0, 6.0]}
    configs = {"a": OpConfig("add", 4, 4, 8, 8), "b": OpConfig("skip_connect", 4, 4, 8, 8)}
    names = {c.key: n for n, c in configs.items()}

    def measure(c):
        name = names[c.key]
        calls.append(name)
        return values[name][sum(1 for x in calls if x == name) - 1]

    table = LatencyTable.build(
        configs.values(), input_size=(8, 8), measure=measure, progress=False, rounds=3, stat="min"
    )
    assert calls == ["a", "b"] * 3  # round by round, not entry by entry
    assert table[configs["a"]] == 1.0 and table[configs["b"]] == 5.0
    assert table.timing == "min over 3 interleaved round(s) of a custom measure"
    calls.clear()
    table = LatencyTable.build(
        configs.values(), input_size=(8, 8), measure=measure, progress=False, rounds=3
    )
    assert table[configs["a"]] == 2.0 and table[configs["b"]] == 6.0  # median
    with pytest.raises(ValueError, match="rounds"):
        LatencyTable.build(configs.values(), measure=measure, progress=False, rounds=0)
    with pytest.raises(ValueError, match="stat"):
        LatencyTable.build(configs.values(), measure=measure, progress=False, stat="mean")


def test_partial_build_is_reused_and_a_foreign_one_ignored(tmp_path, monkeypatch):
    import lightning_nas.latency.table as table_module

    monkeypatch.setattr(table_module.time, "monotonic", lambda: 100.0)  # always throttled
    configs = [OpConfig("add", 4, 4, 8, 8), OpConfig("skip_connect", 4, 4, 8, 8)]
    partial = tmp_path / "t.json.partial"
    calls = []

    def measure(c):
        calls.append(c.key)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed in round 2, after its first entry
        return float(len(calls))

    kw = {"input_size": (8, 8), "progress": False, "rounds": 2, "partial": partial}
    with pytest.raises(KeyboardInterrupt):
        LatencyTable.build(configs, measure=measure, stat="min", **kw)
    saved = json.loads(partial.read_text())["values"]
    assert saved == {configs[0].key: [1.0], configs[1].key: []}  # the first value, throttled
    calls.clear()
    table = LatencyTable.build(
        configs, measure=lambda c: calls.append(c.key) or 10.0, stat="min", **kw
    )
    assert calls == [configs[1].key, configs[0].key, configs[1].key]  # what is left
    assert table[configs[0]] == 1.0 and table[configs[1]] == 10.0
    assert json.loads(partial.read_text())["values"][configs[0].key] == [1.0, 10.0]
    # a partial file of another setup (other configurations) is not used
    with pytest.warns(UserWarning, match="another setup"):
        other = LatencyTable.build(configs[:1], measure=lambda c: 4.0, **kw)
    assert other[configs[0]] == 4.0


# ----------------------------------------------------------------------------- estimate
def test_network_call_block_and_the_derived_estimate_includes_it():
    call = network_call_config((12, 16))
    assert call.op in BLOCKS
    module, shapes = build_op(call)
    x = torch.randn(1, *shapes[0])
    assert module(x) is x and shapes == [(3, 12, 16)]

    space = DartsSpace(num_classes=5, C=4, layers=3, steps=2, multiplier=2)
    configs = [*space.latency_configs((12, 16)), call]
    fake = {c.key: float(i + 1) for i, c in enumerate(configs)}
    table = LatencyTable.build(
        configs, input_size=(12, 16), measure=lambda c: fake[c.key], progress=False
    )
    genotype = space.derive()
    derived = space.derived_latency_configs(genotype, (12, 16))
    # the head's classifier and its upsampling to the input size are entries of the sum
    assert {"relu_conv1x1", "bilinear_upsample", "conv3x3_bn"} <= {c.op for c in derived}
    by_hand = sum(fake[c.key] for c in derived) + fake[call.key]
    assert network_estimate(space, table, genotype) == by_hand


def test_resampling_and_head_entries_of_every_space():
    from lightning_nas.methods.autodeeplab.space import AutoDeepLabSpace
    from lightning_nas.methods.fasterseg.space import FasterSegSpace

    fs = {c.op for c in FasterSegSpace(layers=8, Fch=2, teacher=False).latency_configs((32, 32))}
    assert {"fs_up2_concat", "fs_upsample", "fs_head", "fs_convnorm1x1", "concat"} <= fs
    adl = AutoDeepLabSpace(num_classes=3, layers=3, filter_multiplier=2, blocks=2)
    ops = {c.op for c in adl.latency_configs((32, 32))}
    assert {"adl_upsample", "adl_downsample", "adl_aspp", "concat2", "conv1x1"} <= ops


# ----------------------------------------------------------------------------- statistics
def test_pearson_spearman_and_line_on_hand_computed_data():
    x, y = [1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0]
    # deviations (-1.5, -0.5, 0.5, 1.5) and (-1.5, 0.5, -0.5, 1.5): Sxy = 4, Sxx = Syy = 5
    assert pearson(x, y) == pytest.approx(0.8)
    assert spearman(x, [10.0, 30.0, 20.0, 40.0]) == pytest.approx(0.8)
    assert ranks([2.0, 2.0, 1.0]) == [1.5, 1.5, 0.0]
    assert fit_line([0.0, 1.0, 2.0], [1.0, 3.0, 5.0]) == pytest.approx((2.0, 1.0))
    assert math.isnan(pearson([1.0, 1.0], [1.0, 2.0]))


def test_bootstrap_interval_of_r():
    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert bootstrap_interval(x, [2 * v + 1 for v in x], resamples=200) == pytest.approx((1, 1))
    y = [1.0, 3.0, 2.0, 5.0, 4.0]
    lo, hi = bootstrap_interval(x, y, resamples=500, seed=1)
    assert -1.0 <= lo < pearson(x, y) < hi <= 1.0  # r = 0.8
    assert bootstrap_interval(x, y, resamples=500, seed=1) == (lo, hi)  # seeded
    # two points: every defined resample is the pair itself (r = 1); the rest are dropped
    assert bootstrap_interval([1.0, 2.0], [3.0, 5.0], resamples=50) == pytest.approx((1, 1))
    # the interval is the 2.5 % / 97.5 % quantile of the resampled statistic
    lo, hi = bootstrap_interval(x, y, statistic=lambda a, b: a[0], resamples=4000)
    assert (lo, hi) == (1.0, 5.0)
    with pytest.raises(ValueError):
        bootstrap_interval([1.0], [1.0])


# ----------------------------------------------------------------------------- resume
def test_cli_build_killed_with_sigkill_then_rerun_completes(tmp_path):
    """A real ``lightning-nas latency build`` subprocess, SIGKILLed mid-build, then rerun."""
    out = tmp_path / "t.json"
    partial = tmp_path / "t.json.partial"
    space_args = ["C=2", "layers=3", "steps=2", "multiplier=2", "num_classes=3"]
    cmd = [sys.executable, "-m", "lightning_nas.latency.cli", "build", "--space", "DartsSpace"]
    for arg in space_args:
        cmd += ["--space-arg", arg]
    cmd += ["--input-size", "8", "8", "--out", str(out), "--no-progress", "--threads", "1"]
    cmd += ["--rounds", "2", "--min-run-time", "0.005", "--warmup", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not partial.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert partial.exists(), proc.stderr.read() if proc.poll() is not None else "timeout"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and not out.exists()
    done = json.loads(partial.read_text())["values"]
    assert any(done.values())

    rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    table = LatencyTable.load(out, device="cpu", input_size=(8, 8))
    space = DartsSpace(num_classes=3, C=2, layers=3, steps=2, multiplier=2)
    assert set(table.entries) == {c.key for c in space.latency_configs((8, 8))}
    assert all(ms > 0 for ms in table.entries.values())
    assert table.timing.startswith("min over 2 interleaved round(s)")
    assert "thread CPU-time clock" in table.timing  # --clock auto, one CPU thread
    assert not partial.exists()


def test_cli_passes_rounds_stat_and_min_run_time(tmp_path, monkeypatch):
    import lightning_nas.latency.cli as cli

    seen = {}
    real_build = LatencyTable.build

    def build(configs, **kw):
        seen.update(kw)
        return real_build(configs, **{**kw, "measure": lambda c: 1.0})

    monkeypatch.setattr(cli.LatencyTable, "build", build)
    monkeypatch.setattr(cli, "steady_allocator", lambda: seen.setdefault("steady", True))
    argv = ["build", "--space", "DartsSpace", "--space-arg", "C=2", "--space-arg", "layers=3"]
    argv += ["--input-size", "8", "8", "--out", str(tmp_path / "t.json"), "--no-progress"]
    assert latency_main(argv) == 0
    assert (seen["rounds"], seen["stat"], seen["min_run_time"]) == (3, "min", 0.02)
    assert seen["clock"] == "cpu"  # auto, one thread (the fixture)
    assert seen["partial"] == tmp_path / "t.json.partial" and seen["steady"]
    seen.clear()
    assert latency_main([*argv, "--min-run-time", "0", "--default-malloc", "--clock", "wall"]) == 0
    assert seen["min_run_time"] is None and "steady" not in seen and seen["clock"] == "wall"
