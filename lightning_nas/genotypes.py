"""Derived architectures: frozen, versioned dataclasses with a validated YAML round trip.

Every architecture kind is a frozen dataclass subclassing :class:`Genotype`, defined in its
method's ``genotype.py`` (:mod:`lightning_nas.methods`). It declares its ``kind`` (the ``kind:``
key of its YAML file), its schema ``version`` and the import path of its ``network`` class;
defining the subclass registers the kind, and the built-in kinds are found on demand (one index
line per method in :data:`lightning_nas.methods.BUILTIN`), so :func:`load` and :func:`from_dict`
find the class from the file alone. Genotypes are plain data: this module and every
``genotype.py`` import no torch. :func:`build_network` turns any genotype (or the path of its YAML
file) into the discrete network that is retrained and exported.

Every validation problem raises :class:`GenotypeError` with one line naming the source, the
key, the bad value and what was expected.

Example:
    >>> from lightning_nas.genotypes import DartsGenotype, from_dict
    >>> g = DartsGenotype(
    ...     normal=(("sep_conv_3x3", 0), ("skip_connect", 1)),
    ...     normal_concat=(2,),
    ...     reduce=(("max_pool_3x3", 0), ("max_pool_3x3", 1)),
    ...     reduce_concat=(2,),
    ... )
    >>> g.to_dict()["normal"]
    [['sep_conv_3x3', 0], ['skip_connect', 1]]
    >>> from_dict(g.to_dict()) == g
    True
    >>> from_dict({**g.to_dict(), "normal": [["conv_9x9", 0], ["skip_connect", 1]]})
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lightning_nas.genotypes.GenotypeError: <dict>: normal[0][0]: unknown op 'conv_9x9'; expected...
"""

from __future__ import annotations

import dataclasses
import importlib
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import yaml

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "Genotype",
    "GenotypeError",
    "build_network",
    "field_error",
    "from_dict",
    "kinds",
    "load",
    "save",
    "type_name",
    "value_repr",
]


class GenotypeError(ValueError):
    """A genotype (file or dict) that does not validate; the message is one line."""


def field_error(source: str, key: str, message: str) -> GenotypeError:
    """The one-line error ``"<source>: <key>: <message>"`` of a field that does not validate."""
    return GenotypeError(f"{source}: {key}: {message}")


def type_name(value: object) -> str:
    """The type name of ``value``, for error messages."""
    return type(value).__name__


_REPR = reprlib.Repr()
_REPR.maxlevel = 2
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxfrozenset = 8
_REPR.maxdict = 4
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlong = 40


def value_repr(value: object) -> str:
    r"""A bounded one-line ``repr`` of ``value``, for error messages.

    As :func:`repr` for the small values a genotype holds; long strings, big integers and long
    or deeply nested (or self-referencing) containers are elided with ``...``, so a file of
    junk (or a YAML alias bomb) gives a short message, quickly.

    Example:
        >>> value_repr(["sep_conv_3x3", 0]), value_repr("a\nb")
        ("['sep_conv_3x3', 0]", "'a\\nb'")
        >>> value_repr(list(range(100)))
        '[0, 1, 2, 3, 4, 5, 6, 7, ...]'
    """
    return _REPR.repr(value)


def _key_name(key: object) -> str:
    """``key`` as written in a message: plain if a printable string, else its bounded repr."""
    if isinstance(key, str) and key.isprintable() and key.strip() and len(key) <= 60:
        return key
    return value_repr(key)


_REGISTRY: dict[str, type[Genotype]] = {}


@dataclass(frozen=True)
class Genotype:
    """Base class of every derived architecture.

    Subclasses are frozen dataclasses that set the class attributes ``kind`` (unique name, the
    ``kind:`` key in YAML), ``version`` (schema version, bumped on incompatible changes) and
    ``network`` (import path of the network class :func:`build_network` builds, called as
    ``Network(genotype, num_classes=..., **kwargs)``), and override ``_convert`` / ``_validate``;
    defining one registers it. Fields hold tuples (not lists) so genotypes are hashable.

    Optional class attributes (import paths, resolved on demand): ``drawing``, a function
    ``draw(genotype) -> matplotlib.figure.Figure`` (``lightning-nas draw``), and
    ``random_space``, a function ``random_space(genotype) -> DiscreteSpace`` giving the discrete
    space of genotypes shaped like this one (random baselines, ``lightning-nas baseline``).
    """

    kind: ClassVar[str]
    version: ClassVar[int]
    network: ClassVar[str]
    drawing: ClassVar[str | None] = None
    random_space: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Register the subclass under its ``kind``."""
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind")
        if kind is None:
            return
        previous = _REGISTRY.get(kind)
        if previous is not None and previous.__qualname__ != cls.__qualname__:
            raise TypeError(
                f"genotype kind {kind!r} is already registered by {previous.__qualname__}"
            )
        _REGISTRY[kind] = cls

    def __post_init__(self) -> None:
        """Convert lists to tuples and validate the fields of a directly built genotype."""
        source = f"<{type(self).__name__}>"
        fields = self._convert(
            {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, source
        )
        self._validate(fields, source)
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    @classmethod
    def _validate(cls, fields: Mapping[str, Any], source: str) -> None:
        """Check field values (already converted to tuples); raise :class:`GenotypeError`."""
        return None

    @classmethod
    def _convert(cls, fields: dict[str, Any], source: str) -> dict[str, Any]:
        """Turn YAML values (lists) into field values (tuples), checking their types."""
        return fields

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML-able dict (lists, not tuples) with the ``kind`` and ``version`` keys."""

        def plain(value: Any) -> Any:
            if isinstance(value, tuple | list):
                return [plain(v) for v in value]
            return value

        out: dict[str, Any] = {"kind": self.kind, "version": self.version}
        for f in dataclasses.fields(self):
            out[f.name] = plain(getattr(self, f.name))
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "<dict>") -> Genotype:
        """Validate ``d`` (as written by :meth:`to_dict`) and build the genotype it describes.

        Called on :class:`Genotype` itself, dispatches on ``d["kind"]``.

        Args:
            d: Mapping with ``kind``, ``version`` and one key per field.
            source: Name of where ``d`` came from (a file path), used in error messages.

        Returns:
            The genotype.

        Raises:
            GenotypeError: On an unknown kind, a missing or extra key, a newer version, a value
                of the wrong type or an invalid architecture.
        """
        if not isinstance(d, Mapping):
            raise field_error(source, "<root>", f"got {type_name(d)}; expected a mapping")
        if "kind" not in d:
            raise field_error(source, "kind", f"missing key; expected one of {', '.join(kinds())}")
        kind = d["kind"]
        target = _lookup(kind) if isinstance(kind, str) else None
        if target is None:
            raise field_error(
                source,
                "kind",
                f"unknown genotype kind {value_repr(kind)}; expected one of {', '.join(kinds())}",
            )
        if cls is not Genotype and not issubclass(target, cls):
            raise field_error(source, "kind", f"got {value_repr(kind)}; expected {cls.kind!r}")

        if "version" not in d:
            raise field_error(source, "version", f"missing key; expected {target.version}")
        version = d["version"]
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise field_error(
                source,
                "version",
                f"got {value_repr(version)}; expected an integer 1..{target.version}",
            )
        if version > target.version:
            raise field_error(
                source,
                "version",
                f"version {version} is newer than supported; expected at most "
                f"{target.version} (upgrade lightning_nas)",
            )

        names = [f.name for f in dataclasses.fields(target)]
        extra = [k for k in d if k not in ("kind", "version", *names)]
        if extra:
            raise field_error(
                source,
                _key_name(extra[0]),
                f"unexpected key for kind {kind!r}; expected only kind, version, "
                + ", ".join(names),
            )
        missing = [n for n in names if n not in d]
        if missing:
            raise field_error(source, missing[0], f"missing key for kind {kind!r}")

        fields = target._convert({n: d[n] for n in names}, source)
        target._validate(fields, source)
        return target(**fields)


def _import_builtin_kinds() -> None:
    """Import every built-in method's ``genotype`` module (torch-free), registering its kinds."""
    from lightning_nas.methods import BUILTIN

    for package in BUILTIN.values():
        importlib.import_module(f"{package}.genotype")


def _lookup(kind: str) -> type[Genotype] | None:
    if kind not in _REGISTRY:
        _import_builtin_kinds()
    return _REGISTRY.get(kind)


def kinds() -> list[str]:
    """Every registered genotype kind (the built-in ones included), sorted."""
    _import_builtin_kinds()
    return sorted(_REGISTRY)


def __getattr__(name: str) -> Any:
    """Lazy access to the built-in genotype classes (``lightning_nas.genotypes.DartsGenotype``)."""
    from lightning_nas.methods import lookup

    obj = lookup(name)
    if isinstance(obj, type) and issubclass(obj, Genotype):
        return obj
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def from_dict(d: Mapping[str, Any], source: str = "<dict>") -> Genotype:
    """Build the genotype described by ``d``, dispatching on ``d["kind"]``.

    Args:
        d: Mapping with ``kind``, ``version`` and the fields of that kind.
        source: Where ``d`` came from, used in error messages.

    Returns:
        The genotype.

    Raises:
        GenotypeError: If ``d`` does not validate.
    """
    return Genotype.from_dict(d, source=source)


def save(genotype: Genotype, path: str | Path) -> None:
    """Write ``genotype`` as readable YAML (parent folders are created), atomically.

    Args:
        genotype: The genotype.
        path: Destination file.
    """
    from lightning_nas.atomic import write_text

    path = Path(path)
    body = yaml.safe_dump(genotype.to_dict(), sort_keys=False, default_flow_style=None)
    header = (
        f"# lightning_nas genotype (kind {genotype.kind}, schema version {genotype.version}).\n"
        "# Read with lightning_nas.genotypes.load; build with lightning_nas.build_network.\n"
    )
    write_text(path, header + body)


def load(path: str | Path) -> Genotype:
    """Read and validate a genotype YAML file written by :func:`save` (or by hand).

    Args:
        path: The file.

    Returns:
        The genotype, of the class its ``kind`` names.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        GenotypeError: If the file is not valid YAML or does not validate.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"genotype file not found: {path}")
    try:
        # bytes: PyYAML decodes them itself, so a file that is not UTF-8 is a YAMLError too
        data = yaml.safe_load(path.read_bytes())
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f"line {where.line + 1}" if where is not None else "<root>"
        problem = getattr(err, "problem", None) or (str(err).strip().splitlines() or ["?"])[0]
        problem = " ".join(str(problem).split())[:200]  # one line, bounded
        raise field_error(str(path), line, f"invalid YAML ({problem}); expected a mapping") from err
    except RecursionError:
        raise field_error(
            str(path), "<root>", "invalid YAML (nested too deeply); expected a mapping"
        ) from None
    return from_dict(data, source=str(path))


def build_network(genotype: Genotype | str | Path, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build the discrete network of ``genotype`` (or of the genotype file at that path).

    Args:
        genotype: A genotype, or the path of its YAML file.
        num_classes: Number of output classes.
        **kwargs: Keyword arguments of the genotype kind's network class (its ``network``).

    Returns:
        The network.

    Example:
        >>> import torch
        >>> from lightning_nas.genotypes import build_network
        >>> net = build_network("experiments/genotypes/darts_v2.yaml", num_classes=5, C=4, layers=3)
        >>> tuple(net(torch.randn(2, 3, 32, 32)).shape)
        (2, 5, 32, 32)
    """
    if isinstance(genotype, str | Path):
        genotype = load(genotype)
    if not isinstance(genotype, Genotype):
        raise TypeError(f"build_network: expected a Genotype or a path, got {type_name(genotype)}")
    from lightning_nas._config import import_object

    network = import_object(type(genotype).network)
    return network(genotype, num_classes=num_classes, **kwargs)
