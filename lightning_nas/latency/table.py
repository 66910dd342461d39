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
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch

from lightning_nas.errors import ConfigError
from lightning_nas.latency.blocks import OpBuilder
from lightning_nas.latency.config import OpConfig
from lightning_nas.latency.measure import OpTimer, device_name, dtype_name

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
    "created",
)


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
    ) -> LatencyTable:
        """Measure every configuration once (duplicates are measured once).

        Args:
            configs: What to measure, e.g. ``space.latency_configs(input_size)``.
            device: Device to measure on (recorded in the table).
            dtype: Dtype of weights and inputs.
            input_size: ``(H, W)`` of the network input the configurations were made for.
            batch_size: Batch size of the measurements.
            warmup: Untimed calls before timing each entry.
            repeats: Timed samples per entry (the median is kept).
            measure: ``config -> ms``; default :class:`~lightning_nas.latency.measure.OpTimer`
                on ``device`` with ``builders``. Inject a fake timer in tests.
            progress: Show a progress bar (rich).
            builders: Op builders of the default timer (a latency-aware space's
                ``latency_op``), see :func:`~lightning_nas.latency.blocks.build_op`.

        Returns:
            The table.
        """
        device = torch.device(device)
        unique: dict[str, OpConfig] = {}
        for c in configs:
            if not isinstance(c, OpConfig):
                raise TypeError(f"LatencyTable.build: expected OpConfig, got {type(c).__name__}")
            unique.setdefault(c.key, c)
        if measure is None:
            measure = OpTimer(
                device, dtype, batch_size, warmup=warmup, repeats=repeats, builders=builders
            )
        name = device_name(device)
        items: Iterable[OpConfig] = unique.values()
        if progress:
            from rich.progress import track

            items = track(
                list(items), description=f"Measuring {len(unique)} ops on {name}", transient=False
            )
        entries = {c.key: float(measure(c)) for c in items}
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
