"""Atomic file writes: a temporary sibling file, then ``os.replace``.

A reader (or a crash, or a kill) never sees a half-written file: either the previous content or
the new. Concurrent writers of the same content (several workers saving one genotype) are safe.
Every file the package writes for users goes through here: genotype YAMLs, drawings, reports,
baseline results, study fronts and leaderboards, exports (latency tables and feature caches
have their own temporary-then-rename writers).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["replacing", "replacing_dir", "save_figure", "write_bytes", "write_text"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix) that replaces ``path`` on success.

    Write to the yielded path inside the ``with`` block; on an exception the temporary file is
    removed and ``path`` is left as it was. Parent folders are created.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "a.txt"
        >>> with replacing(target) as tmp:
        ...     _ = tmp.write_text("new")
        >>> target.read_text()
        'new'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}",
                                dir=path.parent)  # fmt: skip
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make the file private
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def replacing_dir(path: str | Path) -> Iterator[Path]:
    """A temporary folder whose files replace same-named files beside ``path``, ``path`` last.

    For writers that produce several files named after their target (an ONNX model and its
    external data): write ``<yielded folder>/<path.name>`` and its companions; on success each
    companion is moved beside ``path`` and then ``path`` itself, each with ``os.replace``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        files = sorted(p for p in tmp.iterdir() if p.name != path.name)
        for f in [*files, tmp / path.name]:
            if f.exists():
                os.chmod(f, 0o666 & ~_umask())
                os.replace(f, path.parent / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (parent folders are created); return the path."""
    path = Path(path)
    with replacing(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; return the path."""
    return write_bytes(path, text.encode("utf-8"))


def save_figure(fig: Any, path: str | Path, **kwargs: Any) -> Path:
    """``fig.savefig`` to ``path`` atomically (the format from the suffix); return the path."""
    path = Path(path)
    kwargs.setdefault("format", path.suffix.lstrip(".").lower() or "png")
    with replacing(path) as tmp:
        fig.savefig(tmp, **kwargs)
    return path
