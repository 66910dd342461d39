"""How well a proxy task ranks candidates: proxy scores against end-to-end scores.

``lightning-nas study fidelity`` takes N finished trials of a (proxy) study, trains each
candidate again with a second evaluator (end to end: e.g. the whole network, backbone included),
and reports the rank agreement: Spearman ρ with a bootstrap 95 % interval, Kendall τ, the top-k
overlap, and a scatter plot. DPC's paper reports ρ = 0.36–0.47 for its proxies.

Results are written as they come (``fidelity.json`` in the output folder): a rerun skips the
candidates already scored.
"""

from __future__ import annotations

import json
import math
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lightning_nas import genotypes
from lightning_nas.atomic import save_figure, write_text
from lightning_nas.errors import ConfigError
from lightning_nas.strategies.protocols import Evaluator

__all__ = ["FidelityCheck", "add_fidelity_arguments", "fidelity_statistics", "run_fidelity"]


class FidelityCheck:
    """Settings of a proxy-fidelity check (the ``fidelity:`` key of the config).

    Args:
        evaluator: The end-to-end evaluator (its first objective is compared with the study's).
        candidates: How many finished trials to re-score.
        select: ``random`` (uniform over the finished trials, seeded: unbiased) or ``top``.
        top_k: ``k`` of the top-k overlap (default: a quarter of the candidates, at least 1).
        bootstrap: Bootstrap resamples of the Spearman interval.
        seed: Seed of the selection and the bootstrap.
        out: Output folder (default ``<root_dir>/fidelity``).
    """

    def __init__(
        self,
        evaluator: Evaluator,
        candidates: int = 8,
        select: Literal["random", "top"] = "random",
        top_k: int | None = None,
        bootstrap: int = 2000,
        seed: int = 0,
        out: str | None = None,
    ) -> None:
        if candidates < 3:
            raise ConfigError(f"fidelity.candidates: expected >= 3, got {candidates}")
        self.evaluator = evaluator
        self.candidates = candidates
        self.select = select
        self.top_k = top_k
        self.bootstrap = bootstrap
        self.seed = seed
        self.out = out


def add_fidelity_arguments(parser: Any) -> None:
    """Add the ``fidelity`` group (:class:`FidelityCheck`) to a jsonargparse parser."""
    parser.add_class_arguments(FidelityCheck, "fidelity", fail_untyped=False)


def _ranks(x: Sequence[float]) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(np.asarray(x, dtype=float))


def fidelity_statistics(
    proxy: Sequence[float],
    end_to_end: Sequence[float],
    top_k: int | None = None,
    bootstrap: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Rank agreement of two score lists (higher is better in both).

    Args:
        proxy: Proxy score per candidate.
        end_to_end: End-to-end score per candidate (same order).
        top_k: ``k`` of the top-k overlap (default ``max(1, n // 4)``).
        bootstrap: Resamples (with replacement, of candidates) for the Spearman interval.
        seed: Bootstrap seed.

    Returns:
        ``n``, ``spearman``, ``spearman_ci`` (2.5 and 97.5 percentiles), ``kendall``,
        ``top_k``, ``top_k_overlap`` (fraction of the proxy's top k in the end-to-end top k).

    Example:
        >>> s = fidelity_statistics([1, 2, 3, 4], [10, 20, 40, 30], top_k=2, bootstrap=200)
        >>> round(s["spearman"], 3), round(s["kendall"], 3), s["top_k_overlap"]
        (0.8, 0.667, 1.0)
    """
    from scipy.stats import kendalltau, spearmanr

    p = np.asarray(proxy, dtype=float)
    e = np.asarray(end_to_end, dtype=float)
    if p.shape != e.shape or p.ndim != 1 or len(p) < 3:
        raise ValueError(f"fidelity_statistics: need two equal lists of >= 3 scores, got {p.shape}")
    n = len(p)
    rho = float(spearmanr(p, e).statistic)
    tau = float(kendalltau(p, e).statistic)
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(bootstrap):
        idx = rng.integers(0, n, n)
        if len(set(p[idx])) < 2 or len(set(e[idx])) < 2:
            continue  # a constant resample has no rank correlation
        samples.append(float(spearmanr(p[idx], e[idx]).statistic))
    lo, hi = np.percentile(samples, [2.5, 97.5]).tolist() if samples else [math.nan] * 2
    k = top_k or max(1, n // 4)
    top_p = set(np.argsort(-p, kind="stable")[:k].tolist())
    top_e = set(np.argsort(-e, kind="stable")[:k].tolist())
    return {
        "n": n,
        "spearman": rho,
        "spearman_ci": [lo, hi],
        "kendall": tau,
        "top_k": k,
        "top_k_overlap": len(top_p & top_e) / k,
    }


def scatter_plot(
    proxy: Sequence[float],
    end_to_end: Sequence[float],
    labels: Sequence[str],
    stats: dict[str, Any],
    path: Path,
    names: tuple[str, str] = ("proxy", "end to end"),
) -> Path:
    """Write the proxy-vs-end-to-end scatter plot (PNG) with the statistics in the title."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.subplots()
    ax.scatter(proxy, end_to_end, s=24)
    for x, y, label in zip(proxy, end_to_end, labels):
        ax.annotate(label, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    lo, hi = stats["spearman_ci"]
    ax.set_title(
        f"Spearman ρ = {stats['spearman']:.2f} [{lo:.2f}, {hi:.2f}], Kendall τ = "
        f"{stats['kendall']:.2f}, top-{stats['top_k']} overlap {stats['top_k_overlap']:.2f}",
        fontsize=8,
    )
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    return path


def run_fidelity(search: Any, init: Any) -> int:
    """The ``fidelity`` command: re-score trials end to end, write the report, print it."""
    from optuna.trial import TrialState

    check: FidelityCheck = init.fidelity
    study = search.load()
    done = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.values and math.isfinite(t.values[0]) and "genotype" in t.user_attrs
    ]
    if len(done) < check.candidates:
        raise ConfigError(
            f"fidelity.candidates: {check.candidates} asked, the study has {len(done)} finished "
            "trials; run more trials first"
        )
    if check.select == "top":
        sign = -1.0 if search.directions[0] == "maximize" else 1.0
        chosen = sorted(done, key=lambda t: (sign * t.values[0], t.number))[: check.candidates]
    else:
        chosen = random.Random(check.seed).sample(done, check.candidates)
    out = Path(check.out) if check.out else search.root_dir / "fidelity"
    out.mkdir(parents=True, exist_ok=True)
    record_path = out / "fidelity.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    for i, trial in enumerate(chosen, start=1):
        key = str(trial.number)
        if key in record:
            continue
        genotype = genotypes.from_dict(trial.user_attrs["genotype"], f"trial {trial.number}")
        value = float(check.evaluator(genotype, out / f"trial{trial.number:05d}")[0])
        record[key] = {"proxy": trial.values[0], "end_to_end": value}
        write_text(record_path, json.dumps(record, indent=1))
        print(
            f"[{i}/{len(chosen)}] trial {trial.number}: proxy {trial.values[0]:.4g}, end to end "
            f"{value:.4g}",
            file=sys.stderr,
            flush=True,
        )
    keys = [str(t.number) for t in chosen]
    proxy = [record[k]["proxy"] for k in keys]
    e2e = [record[k]["end_to_end"] for k in keys]
    if search.directions[0] == "minimize":
        proxy, e2e = [-v for v in proxy], [-v for v in e2e]
    stats = fidelity_statistics(proxy, e2e, check.top_k, check.bootstrap, check.seed)
    write_text(out / "statistics.json", json.dumps(stats, indent=1))
    rows = ["trial,proxy,end_to_end"] + [
        f"{k},{p:.6g},{e:.6g}" for k, p, e in zip(keys, proxy, e2e)
    ]
    write_text(out / "scores.csv", "\n".join(rows) + "\n")
    png = scatter_plot(proxy, e2e, keys, stats, out / "fidelity.png")
    lo, hi = stats["spearman_ci"]
    print(
        f"fidelity over {stats['n']} candidates: Spearman rho {stats['spearman']:.3f} "
        f"(95% bootstrap CI {lo:.3f} to {hi:.3f}), Kendall tau {stats['kendall']:.3f}, "
        f"top-{stats['top_k']} overlap {stats['top_k_overlap']:.2f}; {png}"
    )
    return 0
