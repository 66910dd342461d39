"""Reading image and label files: fast, and loud about missing, truncated or unreadable ones.

Files are read into memory once and decoded from there (OpenCV for images and plain label
PNGs, Pillow for palette PNGs, whose indices OpenCV would expand to colours). Every failure
raises :class:`InvalidSampleError` naming the file.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

__all__ = ["InvalidSampleError", "read_image", "read_label", "read_palette_label"]

_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8"


class InvalidSampleError(OSError):
    """An image or label file that cannot be read or does not fit its partner."""


def _read_bytes(path: str, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise InvalidSampleError(f"cannot read {what} '{path}' (no such file)") from None
    except OSError as err:
        raise InvalidSampleError(f"cannot read {what} '{path}': {err.strerror or err}") from None
    if data.startswith(_PNG) and b"IEND" not in data[-64:]:
        raise InvalidSampleError(f"{what} '{path}' is truncated (PNG without its IEND chunk)")
    if data.startswith(_JPEG) and b"\xff\xd9" not in data[-64:]:
        raise InvalidSampleError(f"{what} '{path}' is truncated (JPEG without its end marker)")
    return data


def read_image(path: str) -> np.ndarray:
    """Decode ``path`` as an RGB uint8 image ``(H, W, 3)`` (grey images are expanded).

    Raises:
        InvalidSampleError: Naming the file, if it is missing, truncated or not an image.
    """
    data = _read_bytes(path, "image")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise InvalidSampleError(f"cannot decode image '{path}' (corrupt or not an image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_label(path: str) -> np.ndarray:
    """Decode ``path`` unchanged (label ids as stored: uint8 or uint16, one channel expected).

    Raises:
        InvalidSampleError: Naming the file, if it is missing, truncated or not an image.
    """
    data = _read_bytes(path, "label")
    label = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise InvalidSampleError(f"cannot decode label '{path}' (corrupt or not an image)")
    return label


def read_palette_label(path: str) -> np.ndarray:
    """Decode a palette ("P") or grey ("L") PNG into its indices ``(H, W)`` uint8, with Pillow.

    OpenCV converts palette PNGs to BGR colours; Pillow keeps the indices, which are the
    labels of VOC's ``SegmentationClass`` (and ``SegmentationClassAug``, stored as grey).

    Raises:
        InvalidSampleError: Naming the file, if it is missing, truncated, not an image, or in
            a mode other than "P" / "L".
    """
    data = _read_bytes(path, "label")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.mode not in ("P", "L"):
                raise InvalidSampleError(
                    f"label '{path}' is a {image.mode} image; expected palette (P) or grey (L) "
                    "indices"
                )
            return np.array(image)
    except InvalidSampleError:
        raise
    except (OSError, ValueError, SyntaxError) as err:
        raise InvalidSampleError(f"cannot decode label '{path}': {err}") from None
