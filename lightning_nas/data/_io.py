"""Reading image and label files: fast, and loud about missing, truncated or unreadable ones.

Files are read into memory once and decoded from there (OpenCV for images and plain label
PNGs, Pillow for palette PNGs, whose indices OpenCV would expand to colours). Every failure
(missing, empty, truncated or undecodable file) raises :class:`InvalidSampleError` naming the
file, in one line.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

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
    if not data:
        raise InvalidSampleError(f"{what} '{path}' is empty (0 bytes)")
    if data.startswith(_PNG) and b"IEND" not in data[-64:]:
        raise InvalidSampleError(f"{what} '{path}' is truncated (PNG without its IEND chunk)")
    if data.startswith(_JPEG) and b"\xff\xd9" not in data[-64:]:
        raise InvalidSampleError(f"{what} '{path}' is truncated (JPEG without its end marker)")
    return data


def read_image(path: str) -> np.ndarray:
    """Decode ``path`` as an RGB uint8 image ``(H, W, 3)``.

    Any channel count is read on purpose: grey images (ADE20K has some) are expanded to RGB, an
    alpha channel is dropped, 16-bit images are reduced to 8 bits (OpenCV's ``IMREAD_COLOR``).

    Raises:
        InvalidSampleError: Naming the file, if it is missing, empty, truncated or not an image.
    """
    image = _decode(_read_bytes(path, "image"), cv2.IMREAD_COLOR, path, "image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_label(path: str) -> np.ndarray:
    """Decode ``path`` unchanged (label ids as stored: uint8 or uint16, one channel expected).

    Raises:
        InvalidSampleError: Naming the file, if it is missing, empty, truncated or not an image.
    """
    return _decode(_read_bytes(path, "label"), cv2.IMREAD_UNCHANGED, path, "label")


def _decode(data: bytes, flags: int, path: str, what: str) -> np.ndarray:
    try:
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error:
        decoded = None
    if decoded is None:
        raise InvalidSampleError(f"cannot decode {what} '{path}' (corrupt or not an image)")
    return decoded


def read_palette_label(path: str) -> np.ndarray:
    """Decode a palette ("P") or grey ("L") PNG into its indices ``(H, W)`` uint8, with Pillow.

    OpenCV converts palette PNGs to BGR colours; Pillow keeps the indices, which are the
    labels of VOC's ``SegmentationClass`` (and ``SegmentationClassAug``, stored as grey).

    Raises:
        InvalidSampleError: Naming the file, if it is missing, empty, truncated, not an image,
            or in a mode other than "P" / "L".
    """
    data = _read_bytes(path, "label")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.mode not in ("P", "L"):
                raise InvalidSampleError(
                    f"label '{path}' has mode {image.mode} ({len(image.getbands())} channels); "
                    "expected palette (P) or grey (L) indices"
                )
            return np.array(image)
    except InvalidSampleError:
        raise
    except UnidentifiedImageError:
        message = f"cannot decode label '{path}' (corrupt or not an image)"
        raise InvalidSampleError(message) from None
    except (OSError, ValueError, SyntaxError) as err:
        raise InvalidSampleError(f"cannot decode label '{path}': {err}") from None
