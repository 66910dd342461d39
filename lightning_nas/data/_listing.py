"""Listing a split: pairing images with labels, and reporting files without a partner."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lightning_nas.data._io import InvalidSampleError

__all__ = ["existing_pairs", "match_pairs"]


def match_pairs(
    image_dir: str | Path,
    label_dir: str | Path,
    image_suffix: str = ".png",
    label_suffix: str = ".png",
    problems: list[str] | None = None,
) -> list[tuple[Path, Path]]:
    """Pair every ``*image_suffix`` file under ``image_dir`` with its label under ``label_dir``.

    The label of ``image_dir/a/b_leftImg8bit.png`` with suffixes ``("_leftImg8bit.png",
    "_gtFine_labelIds.png")`` is ``label_dir/a/b_gtFine_labelIds.png``: same relative folder,
    suffix swapped. Pairs come sorted by image path. An image without its label, or a
    ``*label_suffix`` file under ``label_dir`` without its image, is a problem: it is described
    (naming both paths) in ``problems`` and left out, or, when ``problems`` is ``None``, raised.

    Args:
        image_dir: Folder searched recursively for images.
        label_dir: Folder mirroring ``image_dir`` with the labels.
        image_suffix: End of image file names.
        label_suffix: End of label file names, replacing ``image_suffix``.
        problems: Collects one line per unmatched file; ``None`` raises on the first.

    Returns:
        The sorted ``(image_path, label_path)`` pairs.

    Raises:
        FileNotFoundError: If ``image_dir`` holds no matching image.
        InvalidSampleError: On an unmatched file when ``problems`` is ``None``.
    """
    image_dir, label_dir = Path(image_dir), Path(label_dir)
    images = sorted(image_dir.rglob(f"*{image_suffix}"))
    if not images:
        raise FileNotFoundError(f"no '*{image_suffix}' images under '{image_dir}'")
    labels = set(label_dir.rglob(f"*{label_suffix}")) if label_dir.is_dir() else set()
    pairs, found = [], []
    for image in images:
        rel = image.relative_to(image_dir)
        label = label_dir / rel.parent / (image.name[: -len(image_suffix)] + label_suffix)
        if label in labels:
            labels.discard(label)
            pairs.append((image, label))
        else:
            found.append(f"image '{image}' has no label (expected '{label}')")
    for label in sorted(labels):
        rel = label.relative_to(label_dir)
        image = image_dir / rel.parent / (label.name[: -len(label_suffix)] + image_suffix)
        found.append(f"label '{label}' has no image (expected '{image}')")
    _report(found, problems)
    return pairs


def existing_pairs(
    pairs: Sequence[tuple[Path, Path]], problems: list[str] | None = None
) -> list[tuple[Path, Path]]:
    """Keep the pairs whose image and label both exist (for datasets listed by id files).

    Args:
        pairs: Candidate ``(image_path, label_path)`` pairs, e.g. from a list of ids.
        problems: Collects one line per incomplete pair; ``None`` raises on the first.

    Returns:
        The complete pairs, in the given order.

    Raises:
        InvalidSampleError: On an incomplete pair when ``problems`` is ``None``.
    """
    kept, found = [], []
    for image, label in pairs:
        has_image, has_label = Path(image).is_file(), Path(label).is_file()
        if has_image and has_label:
            kept.append((image, label))
        elif has_image:
            found.append(f"image '{image}' has no label (expected '{label}')")
        elif has_label:
            found.append(f"label '{label}' has no image (expected '{image}')")
        else:
            found.append(f"neither image '{image}' nor label '{label}' exists")
    _report(found, problems)
    return kept


def _report(found: list[str], problems: list[str] | None) -> None:
    if problems is not None:
        problems.extend(found)
    elif found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise InvalidSampleError(f"{found[0]}{more}")
