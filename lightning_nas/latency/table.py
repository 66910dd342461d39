"""Latency lookup tables: built ahead of a search, versioned, read back with validation.

A :class:`LatencyTable` maps :class:`~lightning_nas.latency.measure.OpConfig` keys to
milliseconds measured on one device, in one dtype, for one network input size and batch size.
It is written as a JSON file that records all of these plus the torch version, the thread count
and the date. A table is never filled lazily: a lookup of a configuration it lacks raises a
:class:`MissingLatencyError` naming the configuration and the file — rebuild the table with
``lightning-nas latency build``.

Example:
    >>> from lightning_nas.latency import LatencyTable, OpConfig
    >>> configs = [OpConfig("skip_connect", 4, 4, 8, 8), OpConfig("sep_conv_3x3", 4, 4, 8, 8)]
    >>> table = LatencyTable.build(configs, input_size=(8, 8), progress=False,
    ...                            measure=lambda c: 0.5 if c.op == "skip_connect" else 2.0)
    >>> len(table), table[configs[1]], table.total(configs)
    (2, 2.0, 2.5)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import torch

from lightning_nas.atomic import write_text
from lightning_nas.errors import ConfigError
from lightning_nas.latency.blocks import OpBuilder
from lightning_nas.latency.config import OpConfig
from lightning_nas.latency.measure import OpTimer, allocator_note, device_name, dtype_name

__all__ = ["SCHEMA_VERSION", "LatencyTable", "LatencyTableError", "MissingLatencyError"]

SCHEMA_VERSION = 1
"""Version of the table file format this code writes and reads."""

_KIND = "lightning_nas.latency_table"
_FIELDS = (
    "kind",
    "schema_version",
    "unit",
    "device",
    "device_name",
    "dtype",
    "input_size",
    "batch_size",
    "torch_version",
    "num_threads",
    "warmup",
    "repeats",
    "timing",
    "created",
)
_PARTIAL_KIND = "lightning_nas.latency_table.partial"
_STATS: dict[str, Callable[[Sequence[float]], float]] = {"median": statistics.median, "min": min}


def _timing(
    rounds: int,
    stat: str,
    min_run_time: float | None,
    repeats: int,
    clock: str = "wall",
    default_timer: bool = True,
) -> str:
    """How an entry was measured, in words (the table's ``timing`` field)."""
    if not default_timer:
        return f"{stat} over {rounds} interleaved round(s) of a custom measure"
    per_round = (
        f"median of Timer.blocked_autorange blocks ({min_run_time:g} s)"
        if min_run_time is not None
        else f"median of {repeats} samples"
    )
    clock_note = "; thread CPU-time clock" if clock == "cpu" else ""
    return (
        f"{stat} over {rounds} interleaved round(s) of the {per_round}{clock_note}"
        f"{allocator_note()}"
    )


def _is_ms(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


class _PartialBuild:
    """The per-round values of a build so far, kept in a file (see ``LatencyTable.build``)."""

    def __init__(self, path: str | Path, setup: dict[str, Any], unique: Mapping[str, Any]):
        self.path = Path(path)
        self.setup = setup
        self.values: dict[str, list[float]] = {k: [] for k in unique}
        self._last = -math.inf
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            warnings.warn(f"{self.path}: unreadable partial build ignored ({err})", stacklevel=3)
            return
        if (
            not isinstance(data, dict)
            or data.get("kind") != _PARTIAL_KIND
            or data.get("setup") != setup
            or not isinstance(data.get("values"), dict)
            or set(data["values"]) != set(unique)
        ):
            warnings.warn(
                f"{self.path}: partial build of another setup or space ignored (measuring anew)",
                stacklevel=3,
            )
            return
        for key, vals in data["values"].items():
            if isinstance(vals, list) and all(_is_ms(v) for v in vals):
                self.values[key] = [float(v) for v in vals]

    def save(self, throttle: bool = False) -> None:
        """Write the values atomically (with ``throttle``: at most once a second)."""
        now = time.monotonic()
        if throttle and now - self._last < 1.0:
            return
        data = {"kind": _PARTIAL_KIND, "setup": self.setup, "values": self.values}
        write_text(self.path, json.dumps(data, separators=(",", ":")) + "\n")
        self._last = now


class LatencyTableError(ConfigError):
    """A latency-table file that cannot be used: unreadable, invalid, or built for another setup."""


class MissingLatencyError(KeyError, ConfigError):
    """A configuration the latency table has no entry for (a ``KeyError`` and a ``ConfigError``)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _as_size(value: Any, what: str) -> tuple[int, int]:
    try:
        h, w = value
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be [H, W], got {value!r}") from None
    for v in (h, w):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{what} must be two positive integers, got {value!r}")
    return int(h), int(w)


class LatencyTable:
    """Op latencies (ms) of one device, dtype, network input size and batch size.

    Build one with :meth:`build`, write it with :meth:`save`, read it with :meth:`load`. Look up
    with ``table[config]`` (or a key string); :meth:`require` checks up front that every
    configuration a search needs is present.

    Args:
        entries: Key → milliseconds.
        device: Device type the entries were measured on (``"cpu"``, ``"cuda"``).
        device_name: The hardware (GPU or CPU model name).
        dtype: Dtype name, e.g. ``"float32"``.
        input_size: ``(H, W)`` of the network input the table was built for.
        batch_size: Batch size of the measurements.
        torch_version: The torch version that measured them.
        created: ISO-8601 date of the build.
        num_threads: ``torch.get_num_threads()`` during the build.
        warmup: Untimed calls before timing each entry (``None``: unknown).
        repeats: Timed samples per entry (``None``: unknown).
        timing: How the entries were timed, in words (``None``: unknown; tables before it).
        source: The file the table was read from (for error messages).

    Raises:
        ValueError: If an entry or a metadata field is invalid.
    """

    def __init__(
        self,
        entries: Mapping[str, float],
        device: str,
        device_name: str,
        dtype: str,
        input_size: tuple[int, int],
        batch_size: int = 1,
        torch_version: str = torch.__version__,
        created: str | None = None,
        num_threads: int | None = None,
        warmup: int | None = None,
        repeats: int | None = None,
        source: str | None = None,
        timing: str | None = None,
    ) -> None:
        checked: dict[str, float] = {}
        for key, ms in entries.items():
            OpConfig.from_key(key)  # raises on a malformed key
            if isinstance(ms, bool) or not isinstance(ms, int | float) or not math.isfinite(ms):
                raise ValueError(f"entry {key!r}: latency must be a finite number, got {ms!r}")
            if ms < 0:
                raise ValueError(f"entry {key!r}: latency must be >= 0 ms, got {ms!r}")
            checked[key] = float(ms)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self._entries = MappingProxyType(checked)
        self.device = str(device)
        self.device_name = str(device_name)
        self.dtype = dtype_name(dtype)
        self.input_size = _as_size(input_size, "input_size")
        self.batch_size = batch_size
        self.torch_version = str(torch_version)
        self.created = created or datetime.now(UTC).isoformat(timespec="seconds")
        self.num_threads = num_threads
        self.warmup = warmup
        self.repeats = repeats
        self.timing = timing
        self.source = source
        self._digest: str | None = None

    # ------------------------------------------------------------------ lookup
    @property
    def entries(self) -> Mapping[str, float]:
        """Key → milliseconds (read-only)."""
        return self._entries

    @property
    def digest(self) -> str:
        """SHA-256 of the entries and the setup they were measured in (not the date or file).

        Identifies a table's contents: log it with a search to record which table it used.
        """
        if self._digest is None:
            meta = self.metadata()
            del meta["created"]
            text = json.dumps([meta, sorted(self._entries.items())], separators=(",", ":"))
            self._digest = hashlib.sha256(text.encode()).hexdigest()
        return self._digest

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, config: object) -> bool:
        key = config.key if isinstance(config, OpConfig) else config
        return key in self._entries

    def _where(self) -> str:
        return f"latency table {self.source}" if self.source else "the latency table"

    def __getitem__(self, config: OpConfig | str) -> float:
        """Latency of ``config`` in ms.

        Raises:
            MissingLatencyError: If the table has no entry for it (tables are never filled lazily).
        """
        key = config.key if isinstance(config, OpConfig) else config
        try:
            return self._entries[key]
        except KeyError:
            raise MissingLatencyError(
                f"{self._where()} has no entry for {key!r} (device {self.device_name!r}, input "
                f"size {list(self.input_size)}); rebuild it for this search space with "
                "`lightning-nas latency build`"
            ) from None

    def latency(self, config: OpConfig | str) -> float:
        """Same as ``table[config]``."""
        return self[config]

    def total(self, configs: Iterable[OpConfig | str]) -> float:
        """Sum of the latencies of ``configs`` (repeats counted each time)."""
        return sum(self[c] for c in configs)

    def missing(self, configs: Iterable[OpConfig]) -> list[OpConfig]:
        """The configurations of ``configs`` without an entry, in order, without repeats."""
        seen: dict[str, OpConfig] = {}
        for c in configs:
            if c.key not in self._entries:
                seen.setdefault(c.key, c)
        return list(seen.values())

    def require(self, configs: Iterable[OpConfig], context: str = "") -> None:
        """Raise unless every configuration of ``configs`` has an entry.

        Args:
            configs: What is about to be looked up.
            context: Who needs them, for the message (e.g. ``"DartsSpace at 64×64"``).

        Raises:
            MissingLatencyError: Listing (the first few) missing configurations.
        """
        missing = self.missing(configs)
        if not missing:
            return
        shown = ", ".join(repr(c.key) for c in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        who = f" needed by {context}" if context else ""
        raise MissingLatencyError(
            f"{self._where()} lacks {len(missing)} configuration(s){who}: {shown}{more}; rebuild "
            "it for this search space and input size with `lightning-nas latency build`"
        )

    # ------------------------------------------------------------------ build
    @classmethod
    def build(
        cls,
        configs: Iterable[OpConfig],
        device: torch.device | str = "cpu",
        dtype: torch.dtype | str = torch.float32,
        input_size: tuple[int, int] = (224, 224),
        batch_size: int = 1,
        warmup: int = 10,
        repeats: int = 30,
        measure: Callable[[OpConfig], float] | None = None,
        progress: bool = True,
        builders: Sequence[OpBuilder] = (),
        rounds: int = 1,
        stat: Literal["median", "min"] = "median",
        min_run_time: float | None = None,
        partial: str | Path | None = None,
        clock: Literal["wall", "cpu"] = "wall",
    ) -> LatencyTable:
        """Measure every configuration (duplicates once), in ``rounds`` interleaved rounds.

        Each round measures every configuration once, in order; an entry is the ``stat`` of its
        per-round values. Interleaving spreads a burst of load from other processes over many
        entries instead of concentrating it on a few.

        With ``partial``, the per-round values measured so far are kept in that file, written
        atomically (:func:`lightning_nas.atomic.write_text`) after the first value, then at
        most every second, and at the end; a build started again with the same
        configurations and setup (a killed build rerun) reuses them and measures only the rest.
        A partial file of another setup is ignored (and replaced). The caller removes the file
        once the table is saved (``lightning-nas latency build`` does).

        Args:
            configs: What to measure, e.g. ``space.latency_configs(input_size)``.
            device: Device to measure on (recorded in the table).
            dtype: Dtype of weights and inputs.
            input_size: ``(H, W)`` of the network input the configurations were made for.
            batch_size: Batch size of the measurements.
            warmup: Untimed calls before timing each entry.
            repeats: Timed samples per entry and round (the median is kept) when
                ``min_run_time`` is ``None``.
            measure: ``config -> ms``; default :class:`~lightning_nas.latency.measure.OpTimer`
                on ``device`` with ``builders`` and ``min_run_time``. Inject a fake in tests.
            progress: Show a progress bar (rich).
            builders: Op builders of the default timer (a latency-aware space's
                ``latency_op``), see :func:`~lightning_nas.latency.blocks.build_op`.
            rounds: Interleaved measurement rounds.
            stat: How the rounds' values of an entry are combined (``min``: robust to load from
                other processes, which only ever adds time).
            min_run_time: Seconds of ``blocked_autorange`` per entry and round (default timer;
                ``None``: ``repeats`` samples), see
                :func:`~lightning_nas.latency.measure.measure_module`.
            partial: File keeping the values measured so far (resumable build).
            clock: Clock of the default timer: ``"wall"``, or ``"cpu"`` (the measuring thread's
                CPU time: one CPU thread only; see
                :func:`~lightning_nas.latency.measure.measure_module`).

        Returns:
            The table.
        """
        device = torch.device(device)
        if rounds < 1:
            raise ValueError(f"LatencyTable.build: rounds must be >= 1, got {rounds}")
        if stat not in _STATS:
            raise ValueError(
                f"LatencyTable.build: stat must be one of {list(_STATS)}, got {stat!r}"
            )
        unique: dict[str, OpConfig] = {}
        for c in configs:
            if not isinstance(c, OpConfig):
                raise TypeError(f"LatencyTable.build: expected OpConfig, got {type(c).__name__}")
            unique.setdefault(c.key, c)
        timing = _timing(rounds, stat, min_run_time, repeats, clock, measure is None)
        if measure is None:
            measure = OpTimer(
                device,
                dtype,
                batch_size,
                warmup=warmup,
                repeats=repeats,
                builders=builders,
                min_run_time=min_run_time,
                clock=clock,
            )
        name = device_name(device)
        setup = {
            "device": device.type,
            "device_name": name,
            "dtype": dtype_name(dtype),
            "input_size": list(input_size),
            "batch_size": batch_size,
            "torch_version": torch.__version__,
            "num_threads": torch.get_num_threads(),
            "warmup": warmup,
            "repeats": repeats,
            "timing": timing,
            "keys": hashlib.sha256("\n".join(sorted(unique)).encode()).hexdigest(),
        }
        samples = _PartialBuild(partial, setup, unique) if partial is not None else None
        values: dict[str, list[float]] = samples.values if samples else {k: [] for k in unique}
        todo = [(r, c) for r in range(rounds) for c in unique.values() if len(values[c.key]) <= r]
        items: Iterable[tuple[int, OpConfig]] = todo
        if progress:
            from rich.progress import track

            items = track(
                todo,
                description=f"Measuring {len(unique)} ops × {rounds} rounds on {name}",
                transient=False,
            )
        for _, c in items:
            values[c.key].append(float(measure(c)))
            if samples is not None:
                samples.save(throttle=True)
        if samples is not None:
            samples.save()
        combine = _STATS[stat]
        entries = {k: combine(v[:rounds]) for k, v in values.items()}
        return cls(
            entries,
            device=device.type,
            device_name=name,
            dtype=dtype_name(dtype),
            input_size=input_size,
            batch_size=batch_size,
            num_threads=torch.get_num_threads(),
            warmup=warmup,
            repeats=repeats,
            timing=timing,
        )

    # ------------------------------------------------------------------ files
    def metadata(self) -> dict[str, Any]:
        """Everything but the entries, as written to the file."""
        return {
            "kind": _KIND,
            "schema_version": SCHEMA_VERSION,
            "unit": "ms",
            "device": self.device,
            "device_name": self.device_name,
            "dtype": self.dtype,
            "input_size": list(self.input_size),
            "batch_size": self.batch_size,
            "torch_version": self.torch_version,
            "num_threads": self.num_threads,
            "warmup": self.warmup,
            "repeats": self.repeats,
            "timing": self.timing,
            "created": self.created,
        }

    def save(self, path: str | Path) -> Path:
        """Write the table as JSON (entries sorted by key); the file is replaced atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {**self.metadata(), "entries": dict(sorted(self._entries.items()))}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1)
                f.write("\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
        input_size: tuple[int, int] | None = None,
        batch_size: int | None = None,
        allow_mismatch: bool = False,
    ) -> LatencyTable:
        """Read and validate a table file.

        Args:
            path: The JSON file.
            device: If given, the table must have been measured on this device's hardware
                (same device type and name, e.g. the same GPU model).
            dtype: If given, the table's dtype must be this one.
            input_size: If given, the table's network input size must be this ``(H, W)``.
            batch_size: If given, the table's batch size must be this one.
            allow_mismatch: Accept a table whose device, dtype, input size or batch size differ
                from the ones asked for.

        Raises:
            LatencyTableError: If the file is missing, unreadable, of another schema version,
                has an invalid entry, or does not match the requested setup.
        """
        path = Path(path)

        def fail(message: str) -> LatencyTableError:
            return LatencyTableError(f"latency table {path}: {message}")

        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise fail("no such file (build it with `lightning-nas latency build`)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise fail(f"not a readable JSON file: {err}") from None
        if not isinstance(data, dict) or data.get("kind") != _KIND:
            raise fail(f"not a lightning_nas latency table (expected kind {_KIND!r})")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise fail(
                f"schema version {version!r}, this lightning_nas reads version {SCHEMA_VERSION}; "
                "rebuild the table"
            )
        required = ("device", "device_name", "dtype", "input_size", "batch_size", "entries")
        absent = [k for k in required if k not in data]
        if absent:
            raise fail(f"missing field(s) {', '.join(absent)}")
        if not isinstance(data["entries"], dict):
            raise fail("'entries' must be a mapping of key -> ms")
        unknown = set(data) - {*_FIELDS, "entries"}
        if unknown:
            raise fail(f"unknown field(s) {', '.join(sorted(unknown))}")
        try:
            table = cls(
                data["entries"],
                device=data["device"],
                device_name=data["device_name"],
                dtype=data["dtype"],
                input_size=data["input_size"],
                batch_size=data["batch_size"],
                torch_version=data.get("torch_version", "unknown"),
                created=data.get("created"),
                num_threads=data.get("num_threads"),
                warmup=data.get("warmup"),
                repeats=data.get("repeats"),
                timing=data.get("timing"),
                source=str(path),
            )
        except ValueError as err:
            raise fail(str(err)) from None

        if allow_mismatch:
            return table
        hint = "rebuild the table for it, or pass allow_mismatch=True"
        if device is not None:
            dev = torch.device(device)
            want = device_name(dev)
            if (dev.type, want) != (table.device, table.device_name):
                raise fail(
                    f"built on {table.device} {table.device_name!r}, not on {dev.type} "
                    f"{want!r}; {hint}"
                )
        if dtype is not None and dtype_name(dtype) != table.dtype:
            raise fail(f"built for dtype {table.dtype}, not {dtype_name(dtype)}; {hint}")
        if input_size is not None and _as_size(input_size, "input_size") != table.input_size:
            raise fail(
                f"built for input size {list(table.input_size)}, not {list(input_size)}; {hint}"
            )
        if batch_size is not None and batch_size != table.batch_size:
            raise fail(f"built for batch size {table.batch_size}, not {batch_size}; {hint}")
        return table

    def __getstate__(self) -> dict[str, Any]:  # picklable (ddp_spawn, deepcopy)
        state = self.__dict__.copy()
        state["_entries"] = dict(self._entries)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state["_entries"] = MappingProxyType(state["_entries"])
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return (
            f"LatencyTable({len(self)} entries, {self.device} {self.device_name!r}, {self.dtype}, "
            f"input {self.input_size[0]}x{self.input_size[1]}, batch {self.batch_size})"
        )
