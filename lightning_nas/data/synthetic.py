"""A procedurally generated segmentation dataset, rendered to disk in a real layout.

The scenes are built so that a search has something to find: the class of an object depends on
its *scale* (small vs large disc), its *texture* (striped vs dotted square) and, for the two
large regions, on context (smooth sky above a textured ground). Colours are random everywhere,
so colour alone never gives the class.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lightning_nas.data.base import SegmentationDataModule, match_pairs
from lightning_nas.errors import ConfigError

__all__ = ["SyntheticDataModule", "render_dataset", "render_scene"]

#: Bumped whenever the renderer's output changes; part of ``meta.json``.
GENERATOR_VERSION = 1
_GENERATOR = "lightning_nas.data.synthetic"
_SPLITS = ("train", "val")

CLASS_NAMES = ("ground", "sky", "small_disc", "large_disc", "striped_square", "dotted_square")
PALETTE = (
    (140, 100, 60),
    (90, 160, 230),
    (230, 70, 70),
    (140, 20, 20),
    (70, 200, 70),
    (20, 110, 20),
)
GROUND, SKY, SMALL_DISC, LARGE_DISC, STRIPED_SQUARE, DOTTED_SQUARE = range(6)
IGNORE_INDEX = 255

# Object sizes as fractions of the image side (at 64 px: radius 3-5 / 9-14, side 11-18).
_SMALL_RADIUS = (0.045, 0.075)
_LARGE_RADIUS = (0.14, 0.22)
_SQUARE_HALF_SIDE = (0.09, 0.14)
_OUTLINE = 0.5  # half-width in pixels of the ignored band on object outlines
# Small discs are drawn twice as often as each other object class: they cover few pixels.
_OBJECT_CLASSES = (SMALL_DISC, LARGE_DISC, STRIPED_SQUARE, DOTTED_SQUARE)
_OBJECT_PROBS = (0.4, 0.2, 0.2, 0.2)


def render_scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Render one scene.

    Sky (smooth vertical gradient between two random colours) over ground (random colour with
    coarse blotches and fine noise) split by a wavy horizon; then 3-7 objects of random class
    (small discs twice as likely), position and size, drawn in order (later ones occlude earlier
    ones), each filled with random colours. A band about one pixel wide on every visible object
    outline is labelled 255.

    Args:
        rng: Source of all randomness.
        size: Side of the square image in pixels.

    Returns:
        ``(image, label)``: RGB uint8 ``(size, size, 3)`` and uint8 ``(size, size)`` label ids.
    """
    s = float(size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)

    horizon = rng.uniform(0.35, 0.6) * s + rng.uniform(0.0, 0.06) * s * np.sin(
        2 * np.pi * rng.uniform(0.5, 2.0) * xx / s + rng.uniform(0, 2 * np.pi)
    )
    sky = yy < horizon
    label = np.where(sky, SKY, GROUND).astype(np.uint8)

    top, bottom = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    t = (yy / s)[..., None]
    image = top * (1 - t) + bottom * t
    coarse = cv2.resize(
        rng.normal(0, 1, (max(size // 8, 2),) * 2).astype(np.float32),
        (size, size),
        interpolation=cv2.INTER_LINEAR,
    )
    ground = (
        rng.uniform(0, 255, 3).astype(np.float32)
        + coarse[..., None] * rng.uniform(20, 45, 3).astype(np.float32)
        + rng.normal(0, 22, (size, size, 1)).astype(np.float32)
    )
    image = np.where(sky[..., None], image, ground)

    for _ in range(int(rng.integers(3, 8))):
        cls = int(rng.choice(_OBJECT_CLASSES, p=_OBJECT_PROBS))
        cx, cy = rng.uniform(0, s, 2)
        colour, second = rng.uniform(0, 255, (2, 3)).astype(np.float32)
        dx, dy = xx - cx, yy - cy
        if cls in (SMALL_DISC, LARGE_DISC):
            radius = rng.uniform(*(_SMALL_RADIUS if cls == SMALL_DISC else _LARGE_RADIUS)) * s
            dist = np.sqrt(dx * dx + dy * dy) - radius
            fill = np.broadcast_to(colour, image.shape)
        else:
            dist = np.maximum(np.abs(dx), np.abs(dy)) - rng.uniform(*_SQUARE_HALF_SIDE) * s
            period = rng.uniform(3.5, 5.0) * s / 64
            angle = rng.uniform(0, np.pi)
            u = dx * np.cos(angle) + dy * np.sin(angle)
            if cls == STRIPED_SQUARE:
                pattern = np.mod(u, period) < period / 2
            else:
                v = -dx * np.sin(angle) + dy * np.cos(angle)
                du = np.mod(u, period) - period / 2
                dv = np.mod(v, period) - period / 2
                pattern = du * du + dv * dv < (0.3 * period) ** 2
            fill = np.where(pattern[..., None], second, colour)
        inside = dist < 0
        image = np.where(inside[..., None], fill + rng.normal(0, 12, (size, size, 1)), image)
        label[inside] = cls
        label[np.abs(dist) < _OUTLINE] = IGNORE_INDEX

    image += rng.normal(0, 3, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).round().astype(np.uint8), label


def _meta(num_train: int, num_val: int, image_size: int, seed: int) -> dict[str, Any]:
    return {
        "generator": _GENERATOR,
        "version": GENERATOR_VERSION,
        "seed": seed,
        "num_train": num_train,
        "num_val": num_val,
        "image_size": image_size,
        "class_names": list(CLASS_NAMES),
        "palette": [list(c) for c in PALETTE],
        "ignore_index": IGNORE_INDEX,
    }


def _read_meta(root: Path) -> dict[str, Any] | None:
    try:
        return json.loads((root / "meta.json").read_text())
    except (OSError, ValueError):
        return None


def render_dataset(
    root: str | Path, num_train: int, num_val: int, image_size: int, seed: int
) -> None:
    """Render the dataset into ``root`` atomically, replacing an older synthetic tree there.

    Everything is written into a temporary sibling folder, ``meta.json`` last, which is then
    renamed into place. If another process installs the same dataset first, its tree is kept
    and ours discarded; so neither several processes nor a crash leave a half-written tree.
    Image ``i`` of a split depends only on ``(seed, split, i)``.

    Args:
        root: Target folder (its parent is created if needed).
        num_train: Number of training scenes.
        num_val: Number of validation scenes.
        image_size: Side of the square images.
        seed: Seed of the scenes.

    Raises:
        FileExistsError: If ``root`` exists, is not empty and is not a synthetic dataset.
    """
    root = Path(root)
    meta = _meta(num_train, num_val, image_size, seed)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        for split_id, (split, num) in enumerate(zip(_SPLITS, (num_train, num_val), strict=True)):
            (tmp / "images" / split).mkdir(parents=True)
            (tmp / "labels" / split).mkdir(parents=True)
            for i in range(num):
                image, label = render_scene(np.random.default_rng([seed, split_id, i]), image_size)
                name = f"{split}_{i:05d}.png"
                cv2.imwrite(str(tmp / "images" / split / name), image[..., ::-1])
                cv2.imwrite(str(tmp / "labels" / split / name), label)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        _install(tmp, root, meta)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _install(tmp: Path, root: Path, meta: dict[str, Any]) -> None:
    for _ in range(10):
        try:
            os.rename(tmp, root)  # atomic; replaces an empty folder, fails on a non-empty one
            return
        except OSError:
            current = _read_meta(root)
            if current == meta:
                return  # another process installed the same dataset first
            if root.exists() and (current is None or current.get("generator") != _GENERATOR):
                if root.is_dir() and not any(root.iterdir()):
                    continue  # emptied by a concurrent replacement: retry the rename
                raise FileExistsError(
                    f"'{root}' exists and is not a synthetic dataset (no meta.json from "
                    f"{_GENERATOR}); refusing to overwrite it: choose another root"
                ) from None
            trash = root.with_name(f".{root.name}.old-{uuid.uuid4().hex}")
            try:
                os.rename(root, trash)  # move the outdated tree aside, then retry
            except FileNotFoundError:
                continue
            shutil.rmtree(trash, ignore_errors=True)
    raise RuntimeError(f"could not install the synthetic dataset at '{root}' (concurrent writers?)")


class SyntheticDataModule(SegmentationDataModule):
    """Procedural scenes of 6 classes, rendered to ``root`` and read back like a real dataset.

    The embedded default dataset for ``make demo`` and the tests. Layout::

        <root>/images/{train,val}/<split>_<i>.png   RGB scenes
        <root>/labels/{train,val}/<split>_<i>.png   uint8 label ids 0..5, 255 = ignore
        <root>/meta.json                            generator version, seed, sizes, classes, palette

    :meth:`prepare_data` renders the tree when it is missing or when ``meta.json`` does not
    match the arguments (240 scenes of 64 px take well under a second); rendering is
    deterministic from ``seed`` and atomic (see :func:`render_dataset`).

    Classes: ``ground`` (large textured bottom region), ``sky`` (large smooth gradient on top),
    ``small_disc`` / ``large_disc`` (identical colours and texture, told apart only by size,
    which needs receptive field), ``striped_square`` / ``dotted_square`` (identical colours and
    sizes, told apart only by texture). About 3 % of pixels (object outlines) are 255.
    Always predicting the majority class (``ground``) scores mIoU 0.070 on the default val split
    (``MulticlassJaccardIndex(6, ignore_index=255, average="macro")``).

    Defaults of the shared arguments (of :class:`SegmentationDataModule`, passed on with
    ``**kwargs``): ``root: data/synthetic``, ``num_workers: 0``, ``pin_memory: false``,
    ``crop_size: auto`` or ``null``: ``image_size`` (crop = whole image), no random scale
    (``scale_range`` and ``scales`` ``null`` mean ``[1.0, 1.0]`` here: scaling would change the
    apparent size the disc classes depend on), horizontal flips on, ``long_side: auto`` (the
    size on disk), ``eval_batch_size: auto`` (``batch_size``), ``predict_split: null`` (val;
    or train).

    Args:
        num_train: Number of training scenes.
        num_val: Number of validation scenes.
        image_size: Side of the square scenes in pixels (at least 16).
        seed: Seed of the scenes (not of the augmentations).
        **kwargs: The shared arguments (see above).

    Raises:
        ValueError: On non-positive sizes.

    Example:
        >>> import shutil, tempfile
        >>> root = tempfile.mkdtemp()
        >>> dm = SyntheticDataModule(root=root, num_train=8, num_val=4, batch_size=4)
        >>> dm.num_classes, dm.class_names[:2]
        (6, ['ground', 'sky'])
        >>> dm.prepare_data()
        >>> dm.setup("fit")
        >>> batch = next(iter(dm.train_dataloader()))
        >>> tuple(batch["image"].shape), tuple(batch["mask"].shape), batch["mask"].dtype
        ((4, 3, 64, 64), (4, 64, 64), torch.int64)
        >>> shutil.rmtree(root)
    """

    CLASS_NAMES = CLASS_NAMES
    PALETTE = PALETTE
    ignore_index = IGNORE_INDEX
    source = (
        "It is rendered by SyntheticDataModule.prepare_data() (Lightning calls it before setup)."
    )
    default_root = "data/synthetic"
    default_scale_range = (1.0, 1.0)

    def __init__(
        self,
        *,
        num_train: int = 192,
        num_val: int = 48,
        image_size: int = 64,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        """Validate and store the arguments (see the class docstring)."""
        if num_train < 1 or num_val < 1 or image_size < 16:
            raise ConfigError(
                f"need num_train >= 1, num_val >= 1, image_size >= 16; "
                f"got {num_train}, {num_val}, {image_size}"
            )
        super().__init__(**kwargs)
        if self.crop_size is None:  # "auto" and null: the whole scene
            self.crop_size = image_size
        self.num_train = num_train
        self.num_val = num_val
        self.image_size = image_size
        self.seed = seed

    @property
    def meta(self) -> dict[str, Any]:
        """The ``meta.json`` content these arguments produce."""
        return _meta(self.num_train, self.num_val, self.image_size, self.seed)

    def prepare_data(self) -> None:
        """Render the dataset unless ``root`` already holds exactly this one."""
        if _read_meta(Path(self.root)) != self.meta:
            render_dataset(self.root, self.num_train, self.num_val, self.image_size, self.seed)

    def list_pairs(self, split: str) -> list[tuple[Path, Path]]:
        """The scenes of ``split`` ("train" or "val"), after checking ``meta.json``."""
        root = Path(self.root)
        image_dir = self.require_dir(root / "images" / split)
        label_dir = self.require_dir(root / "labels" / split)
        if _read_meta(root) != self.meta:
            raise RuntimeError(
                f"'{root / 'meta.json'}' does not match the requested synthetic dataset; "
                "call prepare_data() to re-render it"
            )
        return match_pairs(image_dir, label_dir, problems=self.listing_problems)
