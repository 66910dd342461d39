r"""Does each method's search beat random genotypes? Search, then searched-vs-random retrains.

For every method (DARTS, Auto-DeepLab, FasterSeg, DPC, SM-NAS) on the embedded synthetic data at
CPU scale, the real command lines run as subprocesses:

1. the search (``lightning-nas fit -c experiments/<m>.yaml`` for the one-shot methods, after
   ``lightning-nas latency build`` for FasterSeg; ``lightning-nas study`` + ``study export`` for
   DPC and SM-NAS), timed in wall-clock and CPU minutes (user + sys of the child processes);
2. ``lightning-nas baseline``: the searched genotype retrained over ``--seeds`` and
   ``--num_random`` uniformly random genotypes of the same space with the method's retrain
   config and the same CPU-sized overrides.

Writes ``<out>/results.json`` (per method: every command, the search's wall and CPU minutes, the
final architecture entropy ratios of the one-shot searches, the searched and random mIoU, the
percentile, the p-value, the verdict, the machine) and ``<out>/results.md`` (the table); with
``--docs`` the table replaces the text between ``<!-- search_quality:begin -->`` and
``<!-- search_quality:end -->`` in that file. Every subprocess's output is in
``<out>/<method>/*.log``. Rerun to resume: a finished search (``search.json``) and a finished
baseline (``baseline/baseline.json``) are reused while their commands are unchanged
(``--force`` redoes the baselines, ``--force-search`` the searches too). A method whose search
or baseline fails gets a row saying why.

Run from the repository root (about 45 minutes for all five on 2 CPU cores: DARTS and SM-NAS
~12 min each, DPC ~5-9, Auto-DeepLab ~6, FasterSeg ~5):

    python benchmarks/search_quality.py [--methods darts dpc] [--seeds 0 1 2] [--num_random 6] \
        [--out runs/search_quality] [--docs docs/results.md | --no-docs]

Demo-scale settings (the scale of ``lightning_nas.demo``): 64 px images, a few search epochs,
10 retrain epochs (SM-NAS 6: its random stock encoders are the costliest), small widths; every
method's settings are one-line notes in ``results.json``. The one-shot searches raise the
architecture learning rate (as the demo does for DARTS) so that α can leave its initialisation in
a few dozen steps; the final entropy ratio (1 = uniform) says whether it did. Every subprocess
runs with one torch thread (``--threads``): on a shared machine two OpenMP threads per process
can run several times slower.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
METHODS = ("darts", "autodeeplab", "fasterseg", "dpc", "smnas")
BEGIN, END = "<!-- search_quality:begin -->", "<!-- search_quality:end -->"
LM = [sys.executable, "-m", "lightning_nas"]

IMAGE_SIZE = 64
RETRAIN_EPOCHS = 10
"""Retrain epochs of every method but SM-NAS (its random encoders are the costliest)."""
FLAT_SPREAD = 0.02
"""Below this mIoU range over all retrains the table notes that the architecture did not matter."""
DEMO_ARCH_LR = 0.3
"""Architecture learning rate of the short one-shot searches (the demo's; see the docstring)."""
CPU = ["--trainer.accelerator=cpu", "--trainer.devices=1"]
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


@dataclass
class Plan:
    """What to run for one method."""

    steps: list[tuple[str, list[str]]]
    """``(name, argv)`` of the search's subprocesses, in order."""
    genotype: Callable[[], Path | None]
    """The searched genotype once the steps ran (``None``: not found)."""
    retrain_config: str
    overrides: list[str]
    settings: list[str] = field(default_factory=list)
    """One-line notes on the settings (what differs from the method's recipe, and why)."""
    metrics_csv: Path | None = None
    """The search's CSVLogger metrics (one-shot methods: the entropy ratios)."""


def _data_root(out: Path, num_train: int = 192, num_val: int = 48) -> str:
    """A private copy of the synthetic data (rendering never touches the shared data/synthetic)."""
    return str(out / "data" / f"synthetic_{num_train}_{num_val}_{IMAGE_SIZE}")


def _newest(pattern: str, root: Path) -> Path | None:
    found = sorted(root.rglob(pattern), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def _fit_search(config: list[str], search: Path, root: str, args: list[str]) -> list[str]:
    """``lightning-nas fit`` of a one-shot search, logging to CSV in ``search``."""
    return [
        *LM, "fit", *config, *CPU, *QUIET,
        f"--trainer.default_root_dir={search}",
        "--trainer.logger=CSVLogger",
        f"--trainer.logger.save_dir={search}",
        f"--data.init_args.root={root}",
        *args,
    ]  # fmt: skip


def _retrain_overrides(
    root: str, extra: Sequence[str] = (), epochs: int = RETRAIN_EPOCHS
) -> list[str]:
    return [
        "trainer.accelerator=cpu",
        "trainer.devices=1",
        f"trainer.max_epochs={epochs}",
        f"data.init_args.root={root}",
        *extra,
    ]


def plan_darts(d: Path, out: Path) -> Plan:
    search, root = d / "search", _data_root(out)
    space = {"C": 8, "layers": 5}
    epochs, arch_lr = 2, DEMO_ARCH_LR
    argv = _fit_search(
        ["-c", "experiments/darts.yaml"], search, root,
        [f"--trainer.max_epochs={epochs}",
         *[f"--model.init_args.space.init_args.{k}={v}" for k, v in space.items()],
         f"--model.init_args.weight_lr_scheduler.init_args.T_max={epochs}",
         f"--model.init_args.arch_optimizer.init_args.lr={arch_lr}"],
    )  # fmt: skip
    return Plan(
        steps=[("search", argv)],
        genotype=lambda: _newest("genotype.yaml", search),
        retrain_config="experiments/retrain_darts.yaml",
        overrides=_retrain_overrides(
            root, [f"model.init_args.network.init_args.{k}={v}" for k, v in space.items()]
        ),
        settings=[
            f"search: the demo's (C={space['C']}, layers={space['layers']}, {epochs} epochs on "
            f"trainA/trainB of 192 images, architecture lr {arch_lr} instead of DARTS' 3e-4)",
            f"retrain: {RETRAIN_EPOCHS} epochs on 192 images, C={space['C']}, "
            f"layers={space['layers']}",
        ],
        metrics_csv=search,
    )


def plan_autodeeplab(d: Path, out: Path) -> Plan:
    search, root = d / "search", _data_root(out)
    layers, search_f, retrain_f, decoder = 4, 4, 8, 64
    epochs, arch_start, arch_lr = 4, 1, DEMO_ARCH_LR
    argv = _fit_search(
        ["-c", "experiments/autodeeplab.yaml"], search, root,
        [f"--trainer.max_epochs={epochs}",
         f"--model.init_args.arch_start_epoch={arch_start}",
         f"--model.init_args.weight_lr_scheduler.init_args.T_max={epochs}",
         f"--model.init_args.space.init_args.layers={layers}",
         f"--model.init_args.space.init_args.filter_multiplier={search_f}",
         f"--model.init_args.arch_optimizer.init_args.lr={arch_lr}",
         "--data.init_args.batch_size=8"],
    )  # fmt: skip
    return Plan(
        steps=[("search", argv)],
        genotype=lambda: _newest("genotype.yaml", search),
        retrain_config="experiments/retrain_autodeeplab.yaml",
        overrides=_retrain_overrides(
            root,
            [
                "trainer.max_steps=-1",
                f"model.init_args.network.init_args.filter_multiplier={retrain_f}",
                f"model.init_args.network.init_args.aspp_channels={decoder}",
                f"model.init_args.network.init_args.decoder_channels={decoder}",
            ],
        ),
        settings=[
            f"search: layers={layers}, F={search_f}, {epochs} epochs (α, β from epoch "
            f"{arch_start}) on trainA/trainB of 192 images, batch 8, architecture lr {arch_lr} "
            "instead of 3e-3",
            f"retrain: {RETRAIN_EPOCHS} epochs on 192 images, F={retrain_f}, ASPP and decoder "
            f"{decoder} channels instead of 256 (the 256-channel decoder costs 3× the network "
            "and does not depend on the genotype)",
        ],
        metrics_csv=search,
    )


def plan_fasterseg(d: Path, out: Path) -> Plan:
    search, root = d / "search", _data_root(out)
    table = d / "latency_table.json"
    layers, fch, epochs, arch_start, arch_lr = 8, 2, 3, 1, DEMO_ARCH_LR
    build = [
        *LM, "latency", "build", "--space-config", "experiments/fasterseg.yaml",
        "--space-arg", f"layers={layers}", "--space-arg", f"Fch={fch}",
        "--space-arg", "num_classes=6", "--input-size", str(IMAGE_SIZE), str(IMAGE_SIZE),
        "--warmup", "1", "--repeats", "3", "--rounds", "1", "--min-run-time", "0",
        "--device", "cpu", "--no-progress", "--out", str(table),
    ]  # fmt: skip
    argv = _fit_search(
        ["-c", "experiments/fasterseg.yaml", "-c", "experiments/data/synthetic.yaml"], search, root,
        [f"--trainer.max_epochs={epochs}",
         f"--model.init_args.arch_start_epoch={arch_start}",
         f"--model.init_args.space.init_args.layers={layers}",
         f"--model.init_args.space.init_args.Fch={fch}",
         f"--model.init_args.arch_optimizer.init_args.lr={arch_lr}",
         "--data.init_args.batch_size=8",
         f"--trainer.callbacks.table={table}",
         "--trainer.callbacks.reference_genotype=null",
         "--trainer.callbacks.reference_latency_ms=null"],
    )  # fmt: skip
    return Plan(
        steps=[("latency table", build), ("search", argv)],
        genotype=lambda: _newest("genotype.yaml", search),
        retrain_config="experiments/retrain_fasterseg.yaml",
        overrides=_retrain_overrides(root, [f"model.init_args.network.init_args.Fch={fch}"]),
        settings=[
            f"latency table: this CPU, tiny space (layers={layers}, Fch={fch}), 64×64 input; "
            "its cost is part of the search's",
            f"search: layers={layers}, Fch={fch}, {epochs} epochs (pre-training {arch_start}) on "
            f"trainA/trainB of 192 images, batch 8, architecture lr {arch_lr} instead of 3e-4, "
            "latency in this table's ms (no reference genotype)",
            f"retrain: the student, {RETRAIN_EPOCHS} epochs on 192 images, Fch={fch}",
        ],
        metrics_csv=search,
    )


def _study(config: list[str], extra: list[str]) -> list[str]:
    return [*LM, "study", *config, "--progress=false", *extra]


def plan_dpc(d: Path, out: Path) -> Plan:
    search, export = d / "search", d / "export"
    num_train, num_val = 48, 24
    config = ["-c", "experiments/dpc.yaml", "-c", "experiments/dpc_cpu.yaml"]
    src = "--evaluator.init_args.data.init_args.source.init_args"
    n_trials, n_random = 12, 8
    extra = [
        f"--n_trials={n_trials}",
        f"--strategy.init_args.n_random={n_random}",
        f"--root_dir={search}",
        f"--evaluator.init_args.data.init_args.cache_root={search / 'cache'}",
        f"{src}.root={_data_root(out, num_train, num_val)}",
        f"{src}.num_train={num_train}",
        f"{src}.num_val={num_val}",
    ]
    root = _data_root(out)
    return Plan(
        steps=[
            ("search", _study(config, extra)),
            (
                "export",
                [*LM, "study", "export", *config, *extra, "--top_k", "1", "--out", str(export)],
            ),
        ],
        genotype=lambda: _newest("rank01_*.yaml", export),
        retrain_config="experiments/retrain_dpc.yaml",
        overrides=_retrain_overrides(root, ["model.init_args.network.init_args.channels=16"]),
        settings=[
            f"search: experiments/dpc_cpu.yaml with {n_trials} candidates ({n_random} random, "
            "then refinements of the 2 best), each a DPC head of 16 channels trained 2 epochs on "
            "cached output-stride-16 features of a randomly initialised MobileNet-v2 (no "
            f"pretrained weights), {num_train} train / {num_val} val images; searched = rank 1",
            f"retrain: end to end (MobileNet-v2 from scratch), {RETRAIN_EPOCHS} epochs on 192 "
            "images, 16 channels, output stride 16: the cell sees a 4×4 feature map at 64 px",
        ],
    )


def plan_smnas(d: Path, out: Path) -> Plan:
    search, export = d / "search", d / "export"
    num_train, num_val = 48, 24
    config = ["-c", "experiments/smnas.yaml", "-c", "experiments/smnas_cpu.yaml"]
    data = _data_root(out, num_train, num_val)
    epochs, search_epochs = 6, 2
    extra = []
    for prefix in ("", "next_stage.init_args."):
        extra += [
            f"--{prefix}space.init_args.input_sizes=[[{IMAGE_SIZE},{IMAGE_SIZE}]]",
            f"--{prefix}evaluator.init_args.trainer.max_epochs={search_epochs}",
            f"--{prefix}evaluator.init_args.data.init_args.root={data}",
            f"--{prefix}evaluator.init_args.data.init_args.num_train={num_train}",
            f"--{prefix}evaluator.init_args.data.init_args.num_val={num_val}",
        ]
    extra += [f"--root_dir={search}", f"--next_stage.init_args.root_dir={search / 'modular'}"]
    return Plan(
        steps=[
            ("search", _study(config, extra)),
            (
                "export",
                [*LM, "study", "export", *config, *extra, "--top_k", "1", "--out", str(export)],
            ),
        ],
        genotype=lambda: _newest("rank01_*.yaml", export),
        retrain_config="experiments/retrain_smnas.yaml",
        overrides=_retrain_overrides(_data_root(out), epochs=epochs),
        settings=[
            "search: experiments/smnas_cpu.yaml (stage 1: 8 structures, stage 2: 6 modular "
            f"candidates) with input size {IMAGE_SIZE}×{IMAGE_SIZE} only and {search_epochs} "
            f"epochs per candidate on {num_train} train / {num_val} val images; "
            "multi-objective (mIoU, latency): searched = the front's highest-mIoU genotype",
            f"retrain: {epochs} epochs on 192 images, from scratch (encoder_weights null)",
        ],
    )


PLANS: dict[str, Callable[[Path, Path], Plan]] = {
    "darts": plan_darts,
    "autodeeplab": plan_autodeeplab,
    "fasterseg": plan_fasterseg,
    "dpc": plan_dpc,
    "smnas": plan_smnas,
}


# ---------------------------------------------------------------------------------------------
# Running


class StepError(RuntimeError):
    """A subprocess failed; the message is one line."""


THREADS = {"n": 1}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"})
    threads = str(THREADS["n"])
    env.update({"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads})
    env.pop("LIGHTNING_NAS_TRACEBACK", None)
    return env


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _error_line(log: Path) -> str:
    """The one line that says why a subprocess failed (its ``error:`` line or exception)."""
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith("error:"):
            return ln
    for ln in reversed(lines):
        if re.match(r"^[\w.]+(Error|Exception|Interrupt|Exit)\b", ln):
            return ln
    return lines[-1] if lines else "no output"


def run_step(name: str, argv: list[str], log: Path) -> dict[str, Any]:
    """Run ``argv`` (output to ``log``); return its wall and CPU minutes; raise on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    cpu0, wall0 = _cpu_seconds(), time.monotonic()
    with log.open("w") as f:
        f.write(f"$ {_show(argv)}\n")
        f.flush()
        proc = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, cwd=REPO, env=_env())
    wall, cpu = (time.monotonic() - wall0) / 60, (_cpu_seconds() - cpu0) / 60
    if proc.returncode != 0:
        raise StepError(f"{name} exited with {proc.returncode}: {_error_line(log)[:300]}")
    return {"name": name, "command": _show(argv), "wall_minutes": wall, "cpu_minutes": cpu}


def _show(argv: Sequence[str]) -> str:
    """The command as a user types it (``python -m lightning_nas`` for this interpreter)."""
    argv = list(argv)
    if argv[:3] == LM:
        argv = ["python", "-m", "lightning_nas", *argv[3:]]
    return shlex.join(argv)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def entropy_ratios(search: Path) -> dict[str, float]:
    """The last logged ``arch/<name>/entropy_ratio`` of each parameter in the search's CSV log."""
    found: dict[str, float] = {}
    for path in sorted(search.rglob("metrics.csv"), key=lambda p: p.stat().st_mtime):
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                for key, value in row.items():
                    m = re.fullmatch(r"arch/(.+)/entropy_ratio", key or "")
                    if m and value not in (None, ""):
                        found[m.group(1)] = round(float(value), 4)
    return found


def do_search(method: str, plan: Plan, d: Path, force: bool) -> dict[str, Any]:
    """Run (or reuse) the search; return ``search.json``'s content."""
    state_path = d / "search.json"
    commands = [_show(argv) for _, argv in plan.steps]
    state = _read_json(state_path)
    if (
        not force
        and state is not None
        and state.get("commands") == commands
        and Path(state.get("genotype", "")).is_file()
    ):
        print(f"[{method}] search: done before ({state['genotype']}), reused", flush=True)
        return state
    if state is not None and state.get("commands") != commands:
        print(f"[{method}] search: settings changed since the last run, searching again")
    for path in (d / "search", d / "export", d / "latency_table.json", state_path):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    steps = []
    for name, argv in plan.steps:
        log = d / f"{name.replace(' ', '_')}.log"
        print(f"[{method}] {name}: {_show(argv)}", flush=True)
        print(f"[{method}] {name}: running (log: {log})", flush=True)
        step = run_step(name, argv, log)
        steps.append(step)
        print(
            f"[{method}] {name}: done in {step['wall_minutes']:.1f} min wall, "
            f"{step['cpu_minutes']:.1f} min CPU",
            flush=True,
        )
    genotype = plan.genotype()
    if genotype is None:
        raise StepError("search: finished but wrote no genotype file")
    state = {
        "commands": commands,
        "steps": steps,
        "wall_minutes": sum(s["wall_minutes"] for s in steps),
        "cpu_minutes": sum(s["cpu_minutes"] for s in steps),
        "genotype": str(genotype),
        "entropy_ratio": entropy_ratios(plan.metrics_csv) if plan.metrics_csv else None,
    }
    state_path.write_text(json.dumps(state, indent=2) + "\n")
    return state


def do_baseline(
    method: str, plan: Plan, d: Path, search: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """Run (or reuse) ``lightning-nas baseline``; return its results and our timing."""
    out = d / "baseline"
    argv = [*LM, "baseline", "--genotype", search["genotype"], "-c", plan.retrain_config,
            "--seeds", *map(str, args.seeds), "--num_random", str(args.num_random)]  # fmt: skip
    for item in plan.overrides:
        argv += ["--override", item]
    argv += ["--search_minutes", f"{search['wall_minutes']:.2f}", "--out", str(out)]
    argv += ["--no_progress"]
    command = _show(argv)
    state_path = d / "baseline_run.json"
    state = _read_json(state_path)
    result = _read_json(out / "baseline.json")
    same = state is not None and state.get("command") == command
    if same and result is not None and not args.force:
        print(f"[{method}] baseline: done before ({out / 'baseline.json'}), reused", flush=True)
        return {"result": result, **state}
    if out.exists() and not same:
        print(f"[{method}] baseline: new settings or search, starting it afresh", flush=True)
        shutil.rmtree(out)
    elif out.exists() and args.force:
        shutil.rmtree(out)
    n = len(args.seeds) + args.num_random
    print(f"[{method}] baseline: {command}", flush=True)
    print(
        f"[{method}] baseline: {n} retrains ({len(args.seeds)} seeds of the searched genotype, "
        f"{args.num_random} random genotypes; log: {d / 'baseline.log'})",
        flush=True,
    )
    state_path.write_text(json.dumps({"command": command}, indent=2) + "\n")
    step = run_step("baseline", argv, d / "baseline.log")
    result = _read_json(out / "baseline.json")
    if result is None:
        raise StepError(f"baseline: finished but wrote no {out / 'baseline.json'}")
    state = {"command": command, "wall_minutes": step["wall_minutes"],
             "cpu_minutes": step["cpu_minutes"]}  # fmt: skip
    state_path.write_text(json.dumps(state, indent=2) + "\n")
    print(
        f"[{method}] baseline: done in {step['wall_minutes']:.1f} min wall, "
        f"{step['cpu_minutes']:.1f} min CPU",
        flush=True,
    )
    return {"result": result, **state}


def run_method(method: str, args: argparse.Namespace) -> dict[str, Any]:
    """Search and baseline of one method; a failure becomes the entry's ``error``."""
    d = args.out / method
    d.mkdir(parents=True, exist_ok=True)
    plan = PLANS[method](d, args.out)
    entry: dict[str, Any] = {"method": method, "status": "ok", "settings": plan.settings}
    entry["retrain_config"] = plan.retrain_config
    entry["retrain_overrides"] = plan.overrides
    stage = "search"
    try:
        search = do_search(method, plan, d, args.force_search)
        entry["search"] = search
        entry["genotype"] = search["genotype"]
        entry["commands"] = list(search["commands"])
        ratio = search.get("entropy_ratio")
        if ratio:
            print(f"[{method}] final entropy ratio (1 = uniform): {_ratio_text(ratio)}")
        stage = "baseline"
        baseline = do_baseline(method, plan, d, search, args)
    except StepError as err:
        entry.update(status=f"{stage} failed", error=str(err))
        print(f"[{method}] FAILED: {err}", flush=True)
        return entry
    except Exception as err:  # noqa: BLE001 - one method's failure never stops the others
        entry.update(status=f"{stage} failed", error=f"{type(err).__name__}: {err}"[:300])
        print(f"[{method}] FAILED ({stage}): {type(err).__name__}: {err}", flush=True)
        return entry
    result = baseline["result"]
    entry["commands"].append(baseline["command"])
    entry["baseline"] = {k: baseline.get(k) for k in ("wall_minutes", "cpu_minutes")}
    c = result["comparison"]
    keys = ("searched_mean", "searched_std", "random_mean", "random_std", "random_min",
            "random_median", "random_max", "percentile", "beats_all", "p_value", "verdict",
            "searched", "random")  # fmt: skip
    entry["comparison"] = {k: c.get(k) for k in keys}
    params = {}
    for group in ("searched", "random"):
        values = [r["params_m"] for r in result["runs"] if r["group"] == group and r["params_m"]]
        params[group] = sorted(set(round(v, 3) for v in values))
    entry["params_m"] = params
    entry["machine"] = args.machine
    entry["baseline_machine"] = result.get("machine")
    entry["baseline_json"] = str(d / "baseline" / "baseline.json")
    total_wall = entry["search"]["wall_minutes"] + (entry["baseline"]["wall_minutes"] or 0)
    total_cpu = entry["search"]["cpu_minutes"] + (entry["baseline"]["cpu_minutes"] or 0)
    entry["total"] = {"wall_minutes": total_wall, "cpu_minutes": total_cpu}
    print(
        f"[{method}] searched {c['searched_mean']:.4f} ± {c['searched_std']:.4f}, random "
        f"{c['random_mean']:.4f} ± {c['random_std']:.4f}: {c['verdict']} "
        f"(method total {total_wall:.1f} min wall)",
        flush=True,
    )
    return entry


# ---------------------------------------------------------------------------------------------
# Reporting


def cpu_model() -> str:
    """``lscpu``'s model name and the core count."""
    model = None
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines()
                      if ln.startswith("Model name:")), None)  # fmt: skip
    except OSError:
        pass
    return f"{model or 'unknown CPU'}, {os.cpu_count()} cores"


def _ratio_text(ratio: dict[str, float] | None) -> str:
    if not ratio:
        return "–"
    short = {re.sub(r"^(alphas?|betas?|arch)_", "", k) or k: v for k, v in ratio.items()}
    if len(short) <= 3:
        return ", ".join(f"{k} {v:.2f}" for k, v in short.items())
    return f"{min(ratio.values()):.2f}–{max(ratio.values()):.2f} ({len(ratio)} parameters)"


def short_verdict(c: dict[str, Any]) -> str:
    if c["beats_all"]:
        text = "beats every random genotype"
    elif c["percentile"] >= 75:
        text = "beats most random genotypes"
    elif c["percentile"] > 25:
        text = "no better than random"
    else:
        text = "worse than most random genotypes"
    if c.get("p_value") is not None:
        text += f" (p = {c['p_value']:.2g})"
    return text


def markdown_table(entries: Sequence[dict[str, Any]]) -> str:
    head = ("| method | search CPU min | final entropy ratio | searched mIoU mean ± std (n seeds) "
            "| random mIoU mean ± std (n) | random range | percentile | verdict |")  # fmt: skip
    lines = [head, "|" + "---|" * 8]
    for e in entries:
        search = e.get("search") or {}
        cost = f"{search['cpu_minutes']:.1f}" if search else "–"
        ratio = _ratio_text(search.get("entropy_ratio")) if search else "–"
        if e["status"] != "ok":
            reason = str(e.get("error", "")).replace("|", "\\|")
            lines.append(f"| {e['method']} | {cost} | {ratio} | {e['status']}: {reason} "
                         "| | | | |")  # fmt: skip
            continue
        c = e["comparison"]
        lines.append(
            f"| {e['method']} | {cost} | {ratio} "
            f"| {c['searched_mean']:.3f} ± {c['searched_std']:.3f} ({len(c['searched'])}) "
            f"| {c['random_mean']:.3f} ± {c['random_std']:.3f} ({len(c['random'])}) "
            f"| {c['random_min']:.3f}–{c['random_max']:.3f} (median {c['random_median']:.3f}) "
            f"| {c['percentile']:.0f} | {short_verdict(c)} |"
        )
    return "\n".join(lines)


def report(entries: Sequence[dict[str, Any]], command: str, machine: str) -> str:
    """The table, then the date, the command and the machine."""
    date = datetime.date.today().isoformat()
    lines = [
        markdown_table(entries),
        "",
        f"Date: {date}. Command: `{command}`. Machine: {machine} "
        f"({THREADS['n']} torch thread{'s' if THREADS['n'] > 1 else ''} per process).",
        "mIoU: `val/mIoU` on the 48 synthetic validation images after the last retrain epoch; "
        "percentile: the searched mean's rank among the random genotypes (100 = beats all); "
        "p: one-sided Mann-Whitney. Every command and setting: the `results.json` beside the runs.",
    ]
    for e in entries:
        if e["status"] != "ok":
            continue
        c = e["comparison"]
        spread = max(c["searched"] + c["random"]) - min(c["searched"] + c["random"])
        if spread < FLAT_SPREAD:
            lines.append(
                f"{e['method']}: every retrain (searched and random) lies within {spread:.3f} "
                "mIoU: at this scale the architecture made no measurable difference."
            )
    if any(e["method"] == "smnas" for e in entries):
        lines.append("SM-NAS searches mIoU and latency: its row retrains the Pareto front's "
                     "highest-mIoU genotype.")  # fmt: skip
    return "\n".join(lines)


def write_docs(path: Path, text: str) -> bool:
    """Replace the text between the markers of ``path``; ``False`` if the file or marks lack."""
    if not path.is_file():
        print(f"docs: {path} does not exist; the table was not written there")
        return False
    content = path.read_text()
    start, end = content.find(BEGIN), content.find(END)
    if start < 0 or end < start:
        print(f"docs: {path} lacks the markers {BEGIN} ... {END}; the table was not written")
        return False
    path.write_text(content[: start + len(BEGIN)] + "\n" + text + "\n" + content[end:])
    print(f"docs: table written to {path}")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--num_random", type=int, default=6)
    parser.add_argument("--out", type=Path, default=Path("runs/search_quality"))
    docs = parser.add_mutually_exclusive_group()
    docs.add_argument("--docs", type=Path, default=Path("docs/results.md"))
    docs.add_argument("--no-docs", dest="docs", action="store_const", const=None)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of every subprocess (OMP_NUM_THREADS; default 1: on a busy machine "
        "two OpenMP threads per process can run several times slower)",
    )
    parser.add_argument("--force", action="store_true", help="redo the baselines")
    parser.add_argument("--force-search", action="store_true", help="redo the searches too")
    args = parser.parse_args(argv)
    args.force = args.force or args.force_search
    THREADS["n"] = args.threads
    os.chdir(REPO)
    args.out.mkdir(parents=True, exist_ok=True)
    command = shlex.join(["python", "benchmarks/search_quality.py", *argv])
    machine = args.machine = cpu_model()
    print(f"search quality: {', '.join(args.methods)}; seeds {args.seeds}, "
          f"{args.num_random} random genotypes; {machine}; out {args.out}", flush=True)  # fmt: skip
    entries = []
    start = time.monotonic()
    for k, method in enumerate(args.methods, start=1):
        print(f"=== [{k}/{len(args.methods)}] {method}", flush=True)
        t0 = time.monotonic()
        entries.append(run_method(method, args))
        print(f"[{method}] {(time.monotonic() - t0) / 60:.1f} min this run", flush=True)
        results = {
            "command": command,
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "machine": machine,
            "seeds": args.seeds,
            "num_random": args.num_random,
            "image_size": IMAGE_SIZE,
            "threads_per_process": args.threads,
            "methods": entries,
        }
        (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    text = report(entries, command, machine)
    (args.out / "results.md").write_text(text + "\n")
    print("\n" + text + "\n")
    for e in entries:
        cost = [f"{e['method']:>12}:"]
        for part in ("search", "baseline", "total"):
            if e.get(part) and e[part].get("wall_minutes") is not None:
                cost.append(f"{part} {e[part]['wall_minutes']:.1f} min wall / "
                            f"{e[part]['cpu_minutes']:.1f} min CPU")  # fmt: skip
        print("  ".join(cost) + ("" if e["status"] == "ok" else f"  ({e['status']})"))
    print(f"results: {args.out / 'results.json'}, {args.out / 'results.md'} "
          f"({(time.monotonic() - start) / 60:.1f} min)")  # fmt: skip
    if args.docs is not None:
        write_docs(args.docs, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
