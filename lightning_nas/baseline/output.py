"""Write a baseline's results: ``baseline.json``, ``baseline.csv``, ``baseline.png`` and a table."""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning_nas.atomic import write_bytes, write_text
from lightning_nas.baseline.stats import Comparison

__all__ = ["plot", "table", "write_results"]


def table(result: Mapping[str, Any]) -> str:
    """The comparison as a small text table with the verdict line."""
    c = result["comparison"]
    metric = c["metric"]
    n_seeds, n_random = len(c["searched"]), len(c["random"])
    cost = result.get("search_minutes")
    lines = [
        f"{'':26}{metric:>10}",
        f"{f'searched ({n_seeds} seeds)':26}{c['searched_mean']:>10.4f} ± {c['searched_std']:.4f}",
        f"{f'random ({n_random} genotypes)':26}{c['random_mean']:>10.4f} ± {c['random_std']:.4f}"
        f"   min {c['random_min']:.4f}  median {c['random_median']:.4f}  max {c['random_max']:.4f}",
        f"{'percentile of searched':26}{c['percentile']:>10.1f}   (its mean among the random ones)",
    ]
    if cost is not None:
        lines.append(f"{'search cost':26}{cost:>10.1f}   minutes wall-clock ({result['machine']})")
    if result.get("latency_matched"):
        lines.append(f"{'random genotypes':26}   latency-matched: {result['latency_matched']}")
    lines.append(f"verdict: {c['verdict']}")
    return "\n".join(lines)


def plot(comparison: Comparison, title: str | None = None) -> bytes:
    """A strip and box plot of the random scores with the searched seeds, as PNG bytes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.8, 4.0), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    rng = random.Random(0)
    rand, searched = list(comparison.random), list(comparison.searched)
    ax.boxplot([rand], positions=[0], widths=0.5, showfliers=False)
    ax.scatter([rng.uniform(-0.12, 0.12) for _ in rand], rand, color="tab:gray", zorder=3,
               label=f"random genotypes ({len(rand)})")  # fmt: skip
    ax.scatter([1 + rng.uniform(-0.06, 0.06) for _ in searched], searched, color="tab:red",
               zorder=3, label=f"searched, per seed ({len(searched)})")  # fmt: skip
    ax.hlines(comparison.searched_mean, 0.75, 1.25, color="tab:red", label="searched mean")
    ax.set_xticks([0, 1], ["random", "searched"])
    ax.set_xlim(-0.6, 1.6)
    ax.set_ylabel(comparison.metric)
    ax.set_title(title or f"searched at percentile {comparison.percentile:.0f} of random",
                 fontsize=9)  # fmt: skip
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def write_results(
    out: Path, result: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], comparison: Comparison
) -> dict[str, Path]:
    """Write ``baseline.json`` (all), ``baseline.csv`` (a row per job) and ``baseline.png``."""
    paths = {ext: out / f"baseline.{ext}" for ext in ("json", "csv", "png")}
    write_text(paths["json"], json.dumps(result, indent=2) + "\n")
    buffer = io.StringIO()
    fields = ["group", "label", "seed", "value", "params_m", "seconds", "genotype", "run_dir"]
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text(paths["csv"], buffer.getvalue())
    write_bytes(paths["png"], plot(comparison))
    return paths
