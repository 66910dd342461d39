"""Run a searched-versus-random baseline: draw random genotypes, retrain all, compare.

:func:`run_baseline` is ``lightning-nas baseline``'s engine, also for programmatic use (the demo,
``benchmarks/search_quality.py``).
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lightning_nas import genotypes
from lightning_nas.baseline.jobs import RANDOM, SEARCHED, BaselineStudy, Job
from lightning_nas.baseline.output import table, write_results
from lightning_nas.baseline.retrain import GENOTYPE_KEY, RetrainEvaluator
from lightning_nas.baseline.stats import compare
from lightning_nas.errors import ConfigError
from lightning_nas.genotypes import Genotype

__all__ = ["find_genotype", "machine", "random_genotypes", "run_baseline", "search_minutes"]


def machine() -> str:
    """A short description of this machine (CPU and cores)."""
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} CPU cores, {platform.system()}"


def find_genotype(search_dir: str | Path) -> Path:
    """The final ``genotype.yaml`` a search wrote in ``search_dir`` (newest if several)."""
    found = sorted(Path(search_dir).rglob("genotype.yaml"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise ConfigError(f"baseline --search_dir {search_dir}: no genotype.yaml under it")
    return found[-1]


def search_minutes(search_dir: str | Path) -> float | None:
    """Wall-clock minutes of a ``lightning fit`` search run, from its files.

    From the run's ``config.yaml`` (written when the fit starts) to its newest checkpoint; ``None``
    when either is missing.
    """
    root = Path(search_dir)
    configs = list(root.rglob("config.yaml"))
    ckpts = list(root.rglob("*.ckpt"))
    if not configs or not ckpts:
        return None
    start = min(p.stat().st_mtime for p in configs)
    end = max(p.stat().st_mtime for p in ckpts)
    return max(0.0, (end - start) / 60)


def random_genotypes(
    searched: Genotype,
    n: int,
    seed: int,
    out: Path,
    latency: Callable[[Genotype], float] | None = None,
    tolerance: float = 0.1,
) -> list[Path]:
    """Draw ``n`` random genotypes shaped like ``searched`` (never ``searched`` itself).

    Written to ``out/random_NN.yaml``. With ``latency`` only genotypes whose latency is within
    ``tolerance`` of the searched genotype's are kept (latency-matched).
    """
    from lightning_nas.strategies.sampling import random_space_of, sample_genotypes

    space = random_space_of(searched)
    reference = None if latency is None else float(latency(searched))
    drawn = sample_genotypes(space, n, seed=seed, latency=latency, reference=reference,
                             tolerance=tolerance, exclude=[searched])  # fmt: skip
    paths = []
    for k, genotype in enumerate(drawn):
        path = out / f"random_{k:02d}.yaml"
        genotypes.save(genotype, path)
        paths.append(path)
    return paths


def run_baseline(
    genotype: str | Path,
    configs: Sequence[str | Path],
    seeds: Sequence[int] = (0, 1, 2),
    num_random: int = 8,
    random_seed: int = 0,
    overrides: Sequence[str] = (),
    metric: str = "val/mIoU",
    out: str | Path = "runs/baseline",
    storage: str | None = None,
    search_cost: float | None = None,
    latency: Callable[[Genotype], float] | None = None,
    tolerance: float = 0.1,
    genotype_key: str = GENOTYPE_KEY,
    progress: bool = True,
    heartbeat_interval: int = 60,
    printer: Callable[[str], Any] | None = print,
) -> dict[str, Any]:
    """Retrain the searched genotype over ``seeds`` and ``num_random`` random genotypes; compare.

    Every retrain is ``lightning fit -c <configs> --<overrides>`` with only the genotype file,
    the seed and the run directory changed. Random genotype ``k`` is retrained with seed
    ``seeds[k % len(seeds)]``, so both groups see the same seeds. The jobs form an Optuna
    study in ``out`` (:class:`~lightning_nas.baseline.jobs.BaselineStudy`): rerun to resume,
    start more workers on one ``storage`` to split them.

    Args:
        genotype: The searched genotype file.
        configs: The retrain config files (as ``lightning fit -c``).
        seeds: Seeds of the searched genotype's retrains (≥ 1; 3 or more for a spread).
        num_random: Random genotypes to retrain.
        random_seed: Seed of the random genotypes' draw.
        overrides: ``KEY=VALUE`` arguments of every retrain (e.g. ``trainer.max_epochs=10``).
        metric: The logged metric compared (higher is better).
        out: Output directory (study, jobs, genotypes, results).
        storage: Optuna storage URL of the jobs (default: SQLite in ``out``).
        search_cost: Minutes the search took (reported; ``None``: unknown).
        latency: Latency of a genotype (e.g. from a latency table): random genotypes are then
            latency-matched to the searched one within ``tolerance``.
        tolerance: Relative latency band of latency-matched draws.
        genotype_key: Config key of the genotype file in the retrain config.
        progress: Show a progress bar over the jobs.
        heartbeat_interval: Seconds between a running job's heartbeats.
        printer: Where the table goes (``None``: nowhere).

    Returns:
        The results (also in ``out/baseline.json``).
    """
    if not seeds:
        raise ConfigError("baseline --seeds: give at least one seed")
    if num_random < 1:
        raise ConfigError(f"baseline --num_random: expected >= 1, got {num_random}")
    for config in configs:
        if not Path(config).is_file():
            raise ConfigError(f"baseline -c: no such retrain config {config}")
    out = Path(out)
    searched = genotypes.load(genotype)
    searched_path = out / "genotypes" / "searched.yaml"
    genotypes.save(searched, searched_path)
    drawn = random_genotypes(searched, num_random, random_seed, out / "genotypes", latency,
                             tolerance)  # fmt: skip
    jobs = [Job(SEARCHED, SEARCHED, str(searched_path), int(s)) for s in seeds]
    jobs += [Job(RANDOM, p.stem.replace("_", ""), str(p), int(seeds[k % len(seeds)]))
             for k, p in enumerate(drawn)]  # fmt: skip
    evaluator = RetrainEvaluator(configs, jobs, out, overrides, metric, genotype_key)
    study = BaselineStudy(jobs, evaluator, root_dir=str(out), storage=storage,
                          progress=progress, heartbeat_interval=heartbeat_interval)  # fmt: skip
    study.run(report=False)
    scores = study.scores()
    missing = [job.key for job in jobs if job.key not in scores]
    if missing:
        raise ConfigError(f"baseline: jobs without a result (rerun to retry): {missing}")
    rows = []
    for job in jobs:
        s = scores[job.key]
        rows.append({"group": job.group, "label": job.label, "seed": job.seed,
                     "value": s["value"], "params_m": s["params"], "seconds": s["seconds"],
                     "genotype": job.genotype, "run_dir": str(evaluator.job_dir(job))})  # fmt: skip
    comparison = compare(
        metric,
        [r["value"] for r in rows if r["group"] == SEARCHED],
        [r["value"] for r in rows if r["group"] == RANDOM],
    )
    result = {
        "comparison": comparison.to_dict(),
        "searched_genotype": str(genotype),
        "configs": [str(c) for c in configs],
        "overrides": list(overrides),
        "seeds": [int(s) for s in seeds],
        "num_random": num_random,
        "random_seed": random_seed,
        "latency_matched": None if latency is None else f"within ±{tolerance:.0%}",
        "search_minutes": search_cost,
        "machine": machine(),
        "command": shlex.join(sys.argv),
        "runs": rows,
    }
    paths = write_results(out, result, rows, comparison)
    if printer is not None:
        printer(table(result))
        printer(f"results: {paths['json']}, {paths['csv']}, {paths['png']}")
    return result
