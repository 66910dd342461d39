"""Label lookup tables: raw label values -> train ids, rejecting values a dataset does not have."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["LabelLUT", "identity_lut"]


class LabelLUT:
    """Map raw label values to train ids through a lookup table, rejecting unknown values.

    A plain object rather than a closure so that it pickles into DataLoader workers. Raw values
    beyond the table, or whose entry is ``-1``, are not labels of the dataset: they raise
    ``ValueError`` (which the dataset turns into an :class:`InvalidSampleError` naming the file)
    instead of being trained on as garbage.

    Args:
        lut: ``lut[raw_value] = train_id`` (``ignore_index`` for values that are not trained,
            ``-1`` for values that must not occur).

    Example:
        >>> LabelLUT([255, 0, 1])(np.array([[0, 1], [2, 2]], np.uint8)).tolist()
        [[255, 0], [1, 1]]
        >>> LabelLUT([0, -1, 1])(np.array([[0, 1]], np.uint8))
        Traceback (most recent call last):
        ...
        ValueError: values [1] are not labels of this dataset (valid: 0, 2)
    """

    def __init__(self, lut: Sequence[int] | np.ndarray) -> None:
        """Store ``lut`` as a uint8 array and the invalid entries as a mask."""
        table = np.asarray(lut, dtype=np.int64)
        invalid = table < 0
        self.lut = np.where(invalid, 255, table).astype(np.uint8)
        self.invalid = invalid if invalid.any() else None
        self.valid = _ranges(np.flatnonzero(~invalid))

    def __call__(self, label: np.ndarray) -> np.ndarray:
        """Return the train ids of ``label`` (same shape, uint8).

        Raises:
            ValueError: If ``label`` holds values that are not in the table.
        """
        if label.size and int(label.max()) >= len(self.lut):
            self._reject(label, label >= len(self.lut))
        if self.invalid is not None:
            bad = self.invalid[label]
            if bad.any():
                self._reject(label, bad)
        return self.lut[label]

    def _reject(self, label: np.ndarray, bad: np.ndarray) -> None:
        values = np.unique(label[bad]).tolist()
        shown = values[:10] + (["..."] if len(values) > 10 else [])
        shown_text = str(shown).replace("'", "")
        raise ValueError(
            f"values {shown_text} are not labels of this dataset (valid: {self.valid})"
        )


def _ranges(values: np.ndarray) -> str:
    """``[0, 1, 2, 5]`` -> ``"0..2, 5"``."""
    parts: list[str] = []
    start = prev = None
    for v in [*values.tolist(), None]:
        if v is not None and prev is not None and v == prev + 1:
            prev = v
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}..{prev}")
        start = prev = v
    return ", ".join(parts)


def identity_lut(num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """Table for labels that already are train ids: ``0..num_classes-1`` and ``ignore_index``.

    Every other value is marked ``-1`` (rejected by :class:`LabelLUT`).

    Example:
        >>> identity_lut(3, ignore_index=5).tolist()
        [0, 1, 2, -1, -1, 5]
    """
    lut = np.full(max(num_classes, ignore_index + 1), -1, np.int64)
    lut[:num_classes] = np.arange(num_classes)
    lut[ignore_index] = ignore_index
    return lut
