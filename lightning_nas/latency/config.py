"""What a latency table is keyed by: one operation at one shape (torch-free).

Example:
    >>> cfg = OpConfig("sep_conv_3x3", C_in=4, C_out=4, H=8, W=8, stride=2)
    >>> cfg.key
    'sep_conv_3x3|Cin=4|Cout=4|H=8|W=8|stride=2'
    >>> OpConfig.from_key(cfg.key) == cfg
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["OpConfig"]

_INT_FIELDS = ("C_in", "C_out", "H", "W", "stride")
_KEY_NAMES = {"Cin": "C_in", "Cout": "C_out", "H": "H", "W": "W", "stride": "stride"}


@dataclass(frozen=True)
class OpConfig:
    """One operation at one shape: the key of a latency-table entry.

    Args:
        op: Operation name (:func:`~lightning_nas.latency.blocks.build_op` builds the shared
            names; a method's ``latency_op`` its own).
        C_in: Input channels.
        C_out: Output channels.
        H: Input height (for upsampling blocks: the output height, see
            :func:`~lightning_nas.latency.blocks.build_op`).
        W: Input width (likewise).
        stride: Spatial stride (1 or 2 for the candidate operations).
        expansion: Expansion or width ratio where the operation has one (``None`` otherwise);
            stored as a float.

    Raises:
        ValueError: If a field is out of range or ``op`` contains ``|`` or ``=``.
    """

    op: str
    C_in: int
    C_out: int
    H: int
    W: int
    stride: int = 1
    expansion: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.op, str) or not self.op or "|" in self.op or "=" in self.op:
            raise ValueError(
                f"OpConfig: op must be a non-empty name without '|' or '=', got {self.op!r}"
            )
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"OpConfig: {name} must be an integer >= 1, got {value!r}")
        if self.expansion is not None:
            value = float(self.expansion)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"OpConfig: expansion must be > 0 or None, got {self.expansion!r}")
            object.__setattr__(self, "expansion", value)

    @property
    def key(self) -> str:
        """The stable string key, e.g. ``'skip_connect|Cin=8|Cout=8|H=16|W=16|stride=1'``.

        ``|expansion=<float>`` is appended only when ``expansion`` is set.
        """
        key = (
            f"{self.op}|Cin={self.C_in}|Cout={self.C_out}|H={self.H}|W={self.W}"
            f"|stride={self.stride}"
        )
        if self.expansion is not None:
            key += f"|expansion={self.expansion!r}"
        return key

    def __str__(self) -> str:
        return self.key

    @classmethod
    def from_key(cls, key: str) -> OpConfig:
        """Parse a key written by :attr:`key`.

        Raises:
            ValueError: If ``key`` is not a canonical key.
        """
        if not isinstance(key, str):
            raise ValueError(f"latency key must be a string, got {type(key).__name__}")
        op, *parts = key.split("|")
        fields: dict[str, object] = {}
        try:
            for part in parts:
                name, sep, value = part.partition("=")
                if not sep or name in fields:
                    raise ValueError(part)
                if name == "expansion":
                    fields["expansion"] = float(value)
                elif name in _KEY_NAMES:
                    fields[_KEY_NAMES[name]] = int(value)
                else:
                    raise ValueError(part)
            config = cls(op=op, **fields)  # type: ignore[arg-type]
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"malformed latency key {key!r} (expected e.g. "
                f"'sep_conv_3x3|Cin=16|Cout=16|H=32|W=32|stride=1'): {err}"
            ) from None
        if config.key != key:
            raise ValueError(f"non-canonical latency key {key!r}; expected {config.key!r}")
        return config
