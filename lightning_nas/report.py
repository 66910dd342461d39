r"""``lightning-nas report RUN_DIR``: one self-contained HTML page of a search run.

    lightning-nas report runs/demo/search            # writes runs/demo/search/report.html

The page (inline PNG images, no server, no network) holds: the run's config; its metric curves
(validation, training losses, architecture entropy ratios, latency) from the CSV log; the
architecture-weight heatmaps of the first and last epochs (``ArchitectureLogger``); the final
genotype, its drawing and its parameters and Multi-Adds; and the searched-versus-random
comparison of ``lightning-nas baseline`` when a ``baseline.json`` lies under the run. A search
whose architecture never left uniform is flagged.
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import inspect
import io
import json
import math
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from lightning_nas.atomic import write_text
from lightning_nas.errors import ConfigError

__all__ = ["UNIFORM_RATIO", "build_report", "report_main", "uniform_warning"]

UNIFORM_RATIO = 0.99
"""Final entropy ratio at or above which the architecture is said never to have left uniform."""
_UNIFORM = (
    "the derived architecture is a random draw: search longer or raise the architecture "
    "learning rate"
)


def uniform_warning(ratios: dict[str, float]) -> str | None:
    """The warning for final entropy ratios that are all ≥ :data:`UNIFORM_RATIO`, else None.

    Example:
        >>> uniform_warning({"alphas_normal": 0.999}) is not None
        True
        >>> uniform_warning({"alphas_normal": 0.999, "alphas_reduce": 0.8}) is None
        True
    """
    if not ratios or any(r < UNIFORM_RATIO for r in ratios.values()):
        return None
    shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(ratios.items()))
    return f"architecture entropy ratio {shown} (1 = uniform): {_UNIFORM}"


def _newest(paths: list[Path]) -> Path | None:
    return max(paths, key=lambda p: p.stat().st_mtime) if paths else None


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(data: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _file_img(path: Path) -> str:
    return _img(base64.b64encode(path.read_bytes()).decode("ascii"), path.name)


def read_metrics(path: Path) -> dict[str, list[tuple[float, float]]]:
    """A CSV log's columns as ``(x, value)`` series (x: epoch for val/arch keys, else step)."""
    series: dict[str, list[tuple[float, float]]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if key in ("epoch", "step") or not value:
                    continue
                try:
                    y = float(value)
                except ValueError:
                    continue
                by_epoch = key.startswith(("val", "arch")) and row.get("epoch")
                x = row.get("epoch") if by_epoch else row.get("step") or row.get("epoch")
                if x and math.isfinite(y):
                    series.setdefault(key, []).append((float(x), y))
    return series


_GROUPS = (
    ("validation", lambda k: k.startswith("val/")),
    ("training losses", lambda k: k.startswith("train/") and "loss" in k),
    ("architecture entropy ratio", lambda k: k.startswith("arch/") and k.endswith("entropy_ratio")),
    ("latency", lambda k: "latency" in k and not k.startswith("arch/")),
)


def curves(series: dict[str, list[tuple[float, float]]]) -> str | None:
    """The metric curves as one base64 PNG (``None`` when nothing is logged)."""
    from matplotlib.figure import Figure

    groups = [(t, sorted(k for k in series if pick(k))) for t, pick in _GROUPS]
    groups = [(t, keys) for t, keys in groups if keys]
    if not groups:
        return None
    fig = Figure(figsize=(5.0 * len(groups), 3.6))
    for i, (title, keys) in enumerate(groups):
        ax = fig.add_subplot(1, len(groups), i + 1)
        for key in keys[:12]:
            xs, ys = zip(*series[key], strict=True)
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=key)
        ax.set_title(title, fontsize=10)
        by_epoch = title in ("validation", "architecture entropy ratio")
        ax.set_xlabel("epoch" if by_epoch else "step")
        ax.legend(fontsize=6)
    fig.tight_layout()
    return _png(fig)


def final_ratios(series: dict[str, list[tuple[float, float]]]) -> dict[str, float]:
    """The last logged entropy ratio of each architecture parameter."""
    out = {}
    for key, values in series.items():
        m = re.fullmatch(r"arch/(.+)/entropy_ratio", key)
        if m and values:
            out[m.group(1)] = values[-1][1]
    return out


def _heatmaps(arch_dir: Path | None) -> list[Path]:
    """First and last epoch's image of each name in ``arch_dir`` (``<name>_epoch=NNN.png``)."""
    if arch_dir is None or not arch_dir.is_dir():
        return []
    by_name: dict[str, list[Path]] = {}
    for path in sorted(arch_dir.glob("*_epoch=*.png")):
        by_name.setdefault(path.stem.rsplit("_epoch=", 1)[0], []).append(path)
    picked = []
    for name, paths in sorted(by_name.items()):
        picked += [paths[-1]] if name == "genotype" or len(paths) == 1 else [paths[0], paths[-1]]
    return picked


def _cost(genotype: Any, config: dict) -> str | None:
    """Parameters and Multi-Adds of the genotype's network, sized by the run's space config."""
    from lightning_nas._config import import_object
    from lightning_nas.summary import format_summary, summarize_genotype

    space = (((config.get("model") or {}).get("init_args") or {}).get("space") or {}).get(
        "init_args"
    ) or {}
    data = (config.get("data") or {}).get("init_args") or {}
    size: Any = next((v for v in (data.get("crop_size"), data.get("image_size"))
                      if isinstance(v, int | list | tuple)), 64)  # fmt: skip
    size = tuple(size) if isinstance(size, list | tuple) else (size, size)
    try:
        network = import_object(type(genotype).network)
        accepted = inspect.signature(network).parameters
        kwargs = {k: v for k, v in space.items() if k in accepted and k != "num_classes"}
        summary = summarize_genotype(genotype, num_classes=int(data.get("num_classes") or 19),
                                     input_size=size, **kwargs)  # fmt: skip
    except Exception as err:  # noqa: BLE001 - the report still renders
        return f"(not measured: {type(err).__name__}: {err})"
    return format_summary(summary)


def _baseline(run_dir: Path) -> str:
    found = _newest(list(run_dir.rglob("baseline.json")))
    if found is None:
        return (
            "<p>No baseline yet: <code>lightning-nas baseline --search_dir "
            f"{html.escape(str(run_dir))} -c RETRAIN.yaml</code> compares the searched genotype "
            "with random ones under the same recipe.</p>"
        )
    from lightning_nas.baseline.output import table

    result = json.loads(found.read_text())
    parts = [f"<p>From <code>{html.escape(str(found))}</code>:</p>",
             f"<pre>{html.escape(table(result))}</pre>"]  # fmt: skip
    png = found.with_suffix(".png")
    if png.is_file():
        parts.append(_file_img(png))
    return "\n".join(parts)


def build_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the HTML report of the search run in ``run_dir``; return its path.

    Args:
        run_dir: A ``lightning fit`` run directory (its ``default_root_dir``, or any folder
            above its CSV log and checkpoints).
        out: The HTML file (default ``<run_dir>/report.html``).
    """
    from lightning_nas import genotypes

    run = Path(run_dir)
    if not run.is_dir():
        raise ConfigError(f"report: no such run directory {run}")
    config_path = _newest(list(run.rglob("config.yaml")))
    metrics_path = _newest(list(run.rglob("metrics.csv")))
    genotype_path = _newest(list(run.rglob("genotype.yaml")))
    if config_path is None and metrics_path is None and genotype_path is None:
        raise ConfigError(
            f"report: {run} holds no config.yaml, metrics.csv or genotype.yaml (is it the "
            "default_root_dir of a lightning fit run?)"
        )
    config = yaml.safe_load(config_path.read_text()) if config_path else {}
    series = read_metrics(metrics_path) if metrics_path else {}
    sections = []
    ratios = final_ratios(series)
    warning = uniform_warning(ratios)
    if warning:
        sections.append(f'<p class="warn">Warning: {html.escape(warning)}</p>')
    elif ratios:
        shown = ", ".join(f"{k} {v:.3f}" for k, v in sorted(ratios.items()))
        sections.append(f"<p>Final architecture entropy ratio (1 = uniform): {shown}</p>")
    final = {k: v[-1][1] for k, v in series.items() if k.startswith("val/") and v}
    if final:
        rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>"
                       for k, v in sorted(final.items()))  # fmt: skip
        sections.append(f"<h2>Final validation</h2><table>{rows}</table>")
    chart = curves(series)
    if chart:
        sections.append("<h2>Metric curves</h2>" + _img(chart, "metric curves"))
    if genotype_path is not None:
        genotype = genotypes.load(genotype_path)
        where, text = html.escape(str(genotype_path)), html.escape(genotype_path.read_text())
        sections.append(f"<h2>Final genotype</h2><p><code>{where}</code></p><pre>{text}</pre>")
        try:
            from lightning_nas.draw import figure

            sections.append(_img(_png(figure(genotype)), "final genotype"))
        except Exception as err:  # noqa: BLE001 - a kind without a drawing
            sections.append(f"<p>(no drawing: {html.escape(str(err))})</p>")
        cost = _cost(genotype, config)
        if cost:
            sections.append(f"<h3>Parameters and Multi-Adds</h3><pre>{html.escape(cost)}</pre>")
    images = _heatmaps(genotype_path.parent / "arch" if genotype_path else None)
    if images:
        sections.append("<h2>Architecture weights (first and last epoch)</h2>")
        sections += [f"<figure>{_file_img(p)}<figcaption>{html.escape(p.name)}</figcaption>"
                     "</figure>" for p in images]  # fmt: skip
    sections.append("<h2>Searched versus random</h2>" + _baseline(run))
    if config_path is not None:
        sections.append(f"<h2>Config</h2><p><code>{html.escape(str(config_path))}</code></p>"
                        f"<pre>{html.escape(config_path.read_text())}</pre>")  # fmt: skip
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>lightning_nas report: {html.escape(str(run))}</title><style>"
        "body{font-family:sans-serif;max-width:1200px;margin:auto}img{max-width:100%}"
        "pre{background:#f4f4f4;padding:8px;overflow-x:auto}.warn{color:#a00;font-weight:bold}"
        "figure{display:inline-block;margin:4px}td{padding:2px 12px}</style></head><body>"
        f"<h1>Search report: {html.escape(str(run))}</h1>" + "\n".join(sections) + "</body></html>"
    )
    path = Path(out) if out is not None else run / "report.html"
    write_text(path, page)
    return path


def report_main(argv: Sequence[str] | None = None) -> int:
    """Run ``lightning-nas report`` with ``argv``; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="lightning-nas report", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("run_dir", help="the search run's directory (its default_root_dir)")
    parser.add_argument("-o", "--out", help="the HTML file (default <run_dir>/report.html)")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        path = build_report(args.run_dir, args.out)
    except (ConfigError, FileNotFoundError) as err:
        if os.environ.get("LIGHTNING_NAS_TRACEBACK"):
            raise
        print(f"error: {type(err).__name__}: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0
