"""FeatureCache: a frozen encoder run once over a dataset split, its features kept on disk.

One cache directory per (encoder, input, split) holds::

    <root>/<encoder>-<split>-<key>/features.npy   float16 (num_samples, C, h, w), memory-mapped
    <root>/<encoder>-<split>-<key>/masks.npy      uint8   (num_samples, H, W)
    <root>/<encoder>-<split>-<key>/manifest.json  what was cached, the arrays' shapes, byte sizes
                                                  and SHA-256 digests; written last

``<key>`` hashes everything that changes the cached values (see :meth:`FeatureCache.key`), so a
changed encoder, weight, crop or dataset never reuses a stale cache. A cache is built in a
temporary sibling directory, the manifest written last (temporary file + ``os.replace``) after
the arrays are flushed, and the directory then renamed into place: a killed build leaves no
cache behind (its temporary directory, named with the builder's pid, is removed by the next
build once that process is gone), and a cache damaged afterwards (missing manifest, truncated
or resized array) is detected on the next use, rebuilt, and a :class:`TornCacheWarning` names
its directory.

Caching implies a fixed input: build the cache from a dataset *without* random augmentation
(:func:`~lightning_nas.proxy.datamodule.split_source` uses the DataModule's evaluation
pipeline); :class:`FeatureCache` itself only adds a fixed center crop.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import uuid
import warnings
from collections.abc import Iterable, Mapping, Sequence, Sized
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.lib.format import open_memmap
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lightning_nas.errors import ConfigError
from lightning_nas.weights import load_torch_file

__all__ = [
    "CachedFeatureDataset",
    "FeatureCache",
    "SmpEncoderFeature",
    "TornCacheWarning",
    "check_cache",
    "smp_encoder_feature",
    "state_dict_digest",
]

#: Bumped whenever the layout or the content of a cache changes; part of every key.
CACHE_FORMAT = 1
MANIFEST = "manifest.json"
FEATURES = "features.npy"
MASKS = "masks.npy"
_CHUNK = 64 * 2**20  # bytes hashed at a time when verifying


class TornCacheWarning(UserWarning):
    """A cache directory was incomplete or damaged and is rebuilt; the message names it."""


class SmpEncoderFeature(nn.Module):
    """The last (deepest) feature of a segmentation_models_pytorch encoder, never downloaded.

    Built with ``segmentation_models_pytorch.encoders.get_encoder(name, weights=None,
    output_stride=...)``; ``weights`` is a local checkpoint file or ``None`` (random
    initialisation: seed it, or every process and run caches different features).

    Args:
        name: smp encoder name, e.g. ``"tu-mobilenetv2_100"`` (320 channels, DeepLab's
            MobileNet-v2 feature) or ``"resnet18"``.
        weights: Path of a local checkpoint: a state dict, or a dict holding one under
            ``"state_dict"`` (a Lightning checkpoint). ``None``: random weights.
        output_stride: Output stride of the feature (8, 16 or 32; 8 and 16 dilate the last
            stages).
        prefix: Only the checkpoint keys starting with this prefix are loaded, with the prefix
            removed, e.g. ``"encoder."`` for an smp model's state dict or
            ``"network.encoder."`` for a :class:`~lightning_nas.segmentation.SegmentationModule`
            checkpoint of one.

    Raises:
        ConfigError: If ``weights`` is not a file, or its keys do not match the encoder.

    Example:
        >>> torch.manual_seed(0) and None
        >>> enc = SmpEncoderFeature("tu-mobilenetv2_100", output_stride=16).eval()
        >>> enc.out_channels, tuple(enc(torch.zeros(1, 3, 64, 64)).shape)
        (320, (1, 320, 4, 4))
    """

    def __init__(
        self,
        name: str,
        weights: str | None = None,
        output_stride: int = 16,
        prefix: str = "",
    ) -> None:
        super().__init__()
        from segmentation_models_pytorch.encoders import get_encoder

        self.name = f"{name}-os{output_stride}"
        self.encoder = get_encoder(name, in_channels=3, weights=None, output_stride=output_stride)
        self.out_channels: int = int(self.encoder.out_channels[-1])
        if weights is not None:
            self.encoder.load_state_dict(_read_checkpoint(weights, prefix))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The deepest feature ``(N, out_channels, H / output_stride, W / output_stride)``."""
        return self.encoder(x)[-1]


def smp_encoder_feature(
    name: str, weights: str | Path | None = None, output_stride: int = 16
) -> SmpEncoderFeature:
    """A module mapping images ``(N, 3, H, W)`` to an smp encoder's last feature.

    See :class:`SmpEncoderFeature` (its class path is what a YAML config names).
    """
    return SmpEncoderFeature(name, None if weights is None else str(weights), output_stride)


def _read_checkpoint(path: str, prefix: str) -> dict[str, torch.Tensor]:
    if not Path(path).is_file():
        raise ConfigError(f"encoder weights: '{path}' is not a file (nothing is downloaded)")
    state = load_torch_file(path, "encoder weights")
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ConfigError(f"encoder weights: '{path}' holds no state dict")
    selected = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not selected:
        raise ConfigError(f"encoder weights: no key of '{path}' starts with prefix {prefix!r}")
    return selected


class CachedFeatureDataset(Dataset):
    """The samples of one cache directory: ``{"image": features, "mask": mask}``.

    ``image`` is the cached feature as float32 ``(C, h, w)``, ``mask`` the label at the input
    size as int64 ``(H, W)``. The arrays are memory-mapped when first read in each process (the
    dataset pickles into DataLoader workers without copying them).

    Args:
        path: A cache directory (as :meth:`FeatureCache.build` returns it).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.manifest: dict[str, Any] = json.loads((self.path / MANIFEST).read_text())
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def feature_channels(self) -> int:
        """Number of channels ``C`` of the features."""
        return int(self.manifest["features"]["shape"][1])

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The read-only memory-mapped ``(features, masks)`` arrays."""
        if self._arrays is None:
            self._arrays = (
                np.load(self.path / FEATURES, mmap_mode="r"),
                np.load(self.path / MASKS, mmap_mode="r"),
            )
        return self._arrays

    def __len__(self) -> int:
        return int(self.manifest["num_samples"])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        features, masks = self.arrays()
        return {
            "image": torch.from_numpy(np.asarray(features[index], dtype=np.float32)),
            "mask": torch.from_numpy(np.asarray(masks[index], dtype=np.int64)),
        }

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arrays": None}


class FeatureCache:
    """Run a frozen encoder once over a dataset split and keep the features on disk.

    The encoder maps images ``(N, 3, H, W)`` to one feature ``(N, C, h, w)`` (a list or tuple of
    features, as smp encoders return, gives its last one; see :class:`SmpEncoderFeature`). It
    runs in eval mode under ``torch.inference_mode()`` in float32; its training flag and device
    are restored afterwards. Its weights must not change while the cache object is used (their
    digest is computed once).

    The dataset yields dicts with ``"image"`` float ``(3, H, W)`` and ``"mask"`` integer
    ``(H, W)`` (values 0..255, e.g. train ids and 255 = ignore) and must be deterministic:
    no random augmentation. Every sample must reach the encoder at the same size; ``crop_size``
    takes a fixed center crop of every sample, padding (bottom / right) with 0 in the image,
    the mean colour of a normalised image, and ``ignore_index`` in the mask.

    Args:
        encoder: The frozen encoder.
        root: Folder of the cache directories.
        encoder_name: Readable name in the directory names; default the encoder's ``name``
            attribute or class name. Only a label: the key hashes the encoder's class,
            architecture (``repr``) and weights.
        crop_size: Fixed center crop ``(height, width)`` or an int; ``None``: samples as they are.
        ignore_index: Mask value of padded pixels.
        batch_size: Samples per encoder call while building.
        num_workers: DataLoader workers reading the dataset while building.
        device: Where the encoder runs while building; default CUDA if available, else CPU.
        progress: Show a progress bar (rich) while building.
        verify_checksum: When reusing a cache, also re-hash the arrays against the manifest's
            SHA-256 digests (reads the whole cache; the default checks sizes and shapes).

    Example:
        >>> import tempfile
        >>> torch.manual_seed(0) and None
        >>> encoder = nn.Conv2d(3, 4, kernel_size=4, stride=4)
        >>> data = [{"image": torch.rand(3, 8, 8), "mask": torch.zeros(8, 8)} for _ in range(5)]
        >>> root = tempfile.mkdtemp()
        >>> cache = FeatureCache(encoder, root, progress=False)
        >>> split = cache.build(data, {"split": "train"})
        >>> split.path.name
        'Conv2d-train-...'
        >>> len(split), tuple(split[0]["image"].shape), tuple(split[0]["mask"].shape)
        (5, (4, 2, 2), (8, 8))
        >>> cache.build(data, {"split": "train"}).path == split.path  # reused, not rebuilt
        True
        >>> shutil.rmtree(root)
    """

    def __init__(
        self,
        encoder: nn.Module,
        root: str | Path,
        encoder_name: str | None = None,
        crop_size: int | tuple[int, int] | None = None,
        ignore_index: int = 255,
        batch_size: int = 8,
        num_workers: int = 0,
        device: str | torch.device | None = None,
        progress: bool = True,
        verify_checksum: bool = False,
    ) -> None:
        if batch_size < 1 or num_workers < 0:
            raise ConfigError(
                f"FeatureCache: need batch_size >= 1 and num_workers >= 0, got {batch_size}, "
                f"{num_workers}"
            )
        self.encoder = encoder
        self.root = Path(root)
        self.encoder_name = encoder_name or str(
            getattr(encoder, "name", None) or type(encoder).__name__
        )
        self.crop_size = _pair(crop_size)
        self.ignore_index = ignore_index
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.device = device
        self.progress = progress
        self.verify_checksum = verify_checksum
        self._encoder_digest: dict[str, str] | None = None

    # --- keys -------------------------------------------------------------------------------

    def encoder_fingerprint(self) -> dict[str, str]:
        """Class, architecture digest (of its ``repr``) and weight digest of the encoder.

        The weight digest hashes every tensor of the ``state_dict`` (parameters and buffers,
        e.g. BatchNorm statistics) with its name, dtype and shape. Computed once.
        """
        if self._encoder_digest is None:
            cls = type(self.encoder)
            self._encoder_digest = {
                "class": f"{cls.__module__}.{cls.__qualname__}",
                "architecture": hashlib.sha256(repr(self.encoder).encode()).hexdigest(),
                "weights": state_dict_digest(self.encoder),
            }
        return self._encoder_digest

    def key_material(self, dataset: Sized, source: Mapping[str, Any]) -> dict[str, Any]:
        """Everything that changes the cached values (hashed by :meth:`key`).

        Args:
            dataset: The dataset (its class and length are added to ``source``).
            source: JSON-serialisable description of the data: dataset root, split, the
                settings of its transform that change pixels, label mapping, a fingerprint of
                the files (:func:`~lightning_nas.proxy.datamodule.split_source` writes one for a
                DataModule). Its ``"split"`` appears in the directory name.
        """
        cls = type(dataset)
        return {
            "format": CACHE_FORMAT,
            "encoder": {"name": self.encoder_name, **self.encoder_fingerprint()},
            "crop": None
            if self.crop_size is None
            else {"size": list(self.crop_size), "ignore_index": self.ignore_index},
            "source": {
                **source,
                "dataset_class": f"{cls.__module__}.{cls.__qualname__}",
                "num_samples": len(dataset),
            },
        }

    def key(self, dataset: Sized, source: Mapping[str, Any]) -> str:
        """The cache directory name: ``<encoder>-<split>-<16 hex digits of the key's hash>``."""
        material = json.dumps(self.key_material(dataset, source), sort_keys=True, default=str)
        digest = hashlib.sha256(material.encode()).hexdigest()[:16]
        return f"{_slug(self.encoder_name)}-{_slug(str(source.get('split', 'data')))}-{digest}"

    def path(self, dataset: Sized, source: Mapping[str, Any]) -> Path:
        """The cache directory of ``dataset`` (it may not exist yet)."""
        return self.root / self.key(dataset, source)

    # --- reading and building ---------------------------------------------------------------

    def open(self, dataset: Sized, source: Mapping[str, Any]) -> CachedFeatureDataset:
        """The cache of ``dataset``, checked, without building it.

        Raises:
            FileNotFoundError: If the cache is missing or damaged (call :meth:`build`).
        """
        path = self.path(dataset, source)
        problem = check_cache(path, verify_checksum=self.verify_checksum)
        if problem is not None:
            raise FileNotFoundError(
                f"no valid feature cache at '{path}' ({problem}); build it first (the "
                "DataModule's prepare_data does, on local rank 0). A different key on this "
                "process? Randomly initialised encoders must be seeded alike everywhere."
            )
        return CachedFeatureDataset(path)

    def build(self, dataset: Dataset, source: Mapping[str, Any]) -> CachedFeatureDataset:
        """The cache of ``dataset``: reused when valid, else (re)built.

        A damaged cache directory is removed and rebuilt with a :class:`TornCacheWarning`
        naming it.

        Args:
            dataset: Deterministic dataset of ``{"image", "mask"}`` dicts (see the class).
            source: Description of the data (see :meth:`key_material`).

        Raises:
            ValueError: If samples differ in size, a mask value is outside 0..255, the encoder
                does not return a 4-D feature, or a feature overflows float16.
        """
        material = self.key_material(dataset, source)
        path = self.path(dataset, source)
        if path.exists():
            problem = check_cache(path, verify_checksum=self.verify_checksum)
            if problem is None:
                return CachedFeatureDataset(path)
            warnings.warn(
                f"feature cache '{path}' is incomplete or damaged ({problem}); rebuilding it",
                TornCacheWarning,
                stacklevel=2,
            )
            shutil.rmtree(path)
        self.root.mkdir(parents=True, exist_ok=True)
        _remove_orphans(self.root, path.name)
        tmp = self.root / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            self._write(dataset, material, tmp, path)
            _install(tmp, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return CachedFeatureDataset(path)

    def _write(self, dataset: Dataset, material: dict[str, Any], tmp: Path, final: Path) -> None:
        """Encode every sample into ``tmp``: arrays first, flushed; the manifest last."""
        num = len(dataset)  # type: ignore[arg-type]
        if num < 1:
            raise ValueError(f"FeatureCache: the dataset for '{final}' is empty")
        tmp.mkdir()
        device = torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        start = time.perf_counter()
        digests = self._encode(dataset, num, tmp, device, final.name)
        files = {name: _describe(tmp / name, digest) for name, digest in digests.items()}
        shape = files[FEATURES]["shape"]
        manifest = {
            "format": CACHE_FORMAT,
            "key": final.name,
            "num_samples": num,
            "features": files[FEATURES],
            "masks": files[MASKS],
            "input_size": files[MASKS]["shape"][1:],
            "feature_size": shape[2:],
            "feature_channels": shape[1],
            "bytes_per_sample": int(np.prod(shape[1:])) * 2,
            "build_seconds": round(time.perf_counter() - start, 3),
            "built_on": str(device),
            "torch": torch.__version__,
            "material": material,
        }
        _write_json_atomic(tmp / MANIFEST, manifest)

    def _encode(
        self, dataset: Dataset, num: int, tmp: Path, device: torch.device, name: str
    ) -> dict[str, Any]:
        """Fill, flush and sync ``features.npy`` and ``masks.npy``; their SHA-256 digests."""
        loader = DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=partial(_collate, crop=self.crop_size, ignore_index=self.ignore_index),
        )
        batches: Iterable[tuple[torch.Tensor, torch.Tensor]] = loader
        if self.progress:
            from rich.progress import track

            batches = track(loader, total=len(loader), description=f"Caching features: {name}")
        encoder = self.encoder
        first = next(iter(encoder.parameters()), None)
        home = first.device if first is not None else torch.device("cpu")
        was_training = encoder.training
        features = masks = None
        digests = {FEATURES: hashlib.sha256(), MASKS: hashlib.sha256()}
        done = 0
        encoder.eval().to(device)
        try:
            with torch.inference_mode():
                for image, mask in batches:
                    feat = _last_feature(encoder(image.to(device, torch.float32)))
                    feat_np = feat.to(torch.float16).cpu().numpy()
                    if features is None or masks is None:
                        features = open_memmap(
                            tmp / FEATURES, "w+", np.float16, (num, *feat_np.shape[1:])
                        )
                        masks = open_memmap(tmp / MASKS, "w+", np.uint8, (num, *mask.shape[1:]))
                    _check_batch(features, masks, feat_np, mask.numpy(), done)
                    mask_np = mask.numpy().astype(np.uint8)
                    features[done : done + len(feat_np)] = feat_np
                    masks[done : done + len(mask_np)] = mask_np
                    digests[FEATURES].update(feat_np.tobytes())
                    digests[MASKS].update(mask_np.tobytes())
                    done += len(feat_np)
        finally:
            encoder.train(was_training).to(home)
        if features is None or masks is None or done != num:
            raise ValueError(f"FeatureCache: the dataset yielded {done} of {num} samples")
        features.flush()
        masks.flush()
        del features, masks
        for file in (FEATURES, MASKS):
            with open(tmp / file, "rb+") as handle:
                os.fsync(handle.fileno())
        return digests


def check_cache(path: str | Path, verify_checksum: bool = False) -> str | None:
    """Why the cache directory ``path`` cannot be used, or ``None`` if it can.

    Checks that the manifest exists, parses, has this format and names this directory, and
    that each array file has the manifest's byte size, shape and dtype (and, with
    ``verify_checksum``, its SHA-256 digest of the data).
    """
    path = Path(path)
    if not path.is_dir():
        return "no such directory"
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        return f"no {MANIFEST}"
    except (OSError, ValueError) as err:
        return f"unreadable {MANIFEST}: {err}"
    if not isinstance(manifest, dict) or manifest.get("format") != CACHE_FORMAT:
        return f"{MANIFEST} is not of cache format {CACHE_FORMAT}"
    if manifest.get("key") != path.name:
        return f"{MANIFEST} belongs to '{manifest.get('key')}'"
    for name, entry in ((FEATURES, manifest.get("features")), (MASKS, manifest.get("masks"))):
        file = path / name
        if not isinstance(entry, dict) or not file.is_file():
            return f"no {name}"
        size = file.stat().st_size
        if size != entry.get("bytes"):
            return f"{name} has {size} bytes, the manifest says {entry.get('bytes')}"
        try:
            array = np.load(file, mmap_mode="r")
        except (OSError, ValueError) as err:
            return f"unreadable {name}: {err}"
        if list(array.shape) != entry.get("shape") or str(array.dtype) != entry.get("dtype"):
            return (
                f"{name} is {array.dtype} {list(array.shape)}, the manifest says "
                f"{entry.get('dtype')} {entry.get('shape')}"
            )
        if array.shape[0] != manifest.get("num_samples"):
            return f"{name} holds {array.shape[0]} samples, not {manifest.get('num_samples')}"
        if verify_checksum and _array_digest(array) != entry.get("sha256"):
            return f"{name} does not match its SHA-256 digest"
    return None


def state_dict_digest(module: nn.Module) -> str:
    """SHA-256 of a module's ``state_dict``: every tensor's name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _describe(file: Path, digest: Any) -> dict[str, Any]:
    array = np.load(file, mmap_mode="r")
    return {
        "shape": list(array.shape),
        "dtype": str(array.dtype),
        "bytes": file.stat().st_size,
        "sha256": digest.hexdigest(),
    }


def _array_digest(array: np.ndarray) -> str:
    digest = hashlib.sha256()
    flat = array.reshape(array.shape[0], -1)
    rows = max(1, _CHUNK // max(1, flat.shape[1] * flat.itemsize))
    for start in range(0, len(flat), rows):
        digest.update(np.ascontiguousarray(flat[start : start + rows]).tobytes())
    return digest.hexdigest()


def _collate(
    items: Sequence[Mapping[str, Any]], crop: tuple[int, int] | None, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor]:
    images, masks = [], []
    for item in items:
        image = torch.as_tensor(item["image"], dtype=torch.float32)
        mask = torch.as_tensor(item["mask"]).long()
        if crop is not None:
            image, mask = _center_crop(image, mask, crop, ignore_index)
        if images and (image.shape != images[0].shape or mask.shape != masks[0].shape):
            raise ValueError(
                f"FeatureCache: samples differ in size ({tuple(images[0].shape)} vs "
                f"{tuple(image.shape)}); one cache needs one input size: set crop_size (or "
                "the DataModule's long_side)"
            )
        images.append(image)
        masks.append(mask)
    return torch.stack(images), torch.stack(masks)


def _center_crop(
    image: torch.Tensor, mask: torch.Tensor, size: tuple[int, int], ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Center crop of at most ``size``, then pad at the bottom / right to ``size``."""
    height, width = image.shape[-2:]
    top, left = max(0, (height - size[0]) // 2), max(0, (width - size[1]) // 2)
    image = image[:, top : top + size[0], left : left + size[1]]
    mask = mask[top : top + size[0], left : left + size[1]]
    pad = (0, size[1] - image.shape[-1], 0, size[0] - image.shape[-2])
    if any(pad):
        image = F.pad(image, pad, value=0.0)
        mask = F.pad(mask, pad, value=ignore_index)
    return image, mask


def _last_feature(out: Any) -> torch.Tensor:
    if isinstance(out, (list, tuple)):
        out = out[-1]
    if not isinstance(out, torch.Tensor) or out.ndim != 4:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"FeatureCache: the encoder must return (N, C, h, w), got {shape}")
    return out


def _check_batch(
    features: np.ndarray, masks: np.ndarray, feat: np.ndarray, mask: np.ndarray, done: int
) -> None:
    if not np.isfinite(feat).all():
        raise ValueError(
            f"FeatureCache: features of samples {done}..{done + len(feat) - 1} overflow "
            "float16 (|x| > 65504) or are not finite"
        )
    if feat.shape[1:] != features.shape[1:] or mask.shape[1:] != masks.shape[1:]:
        raise ValueError(
            f"FeatureCache: sample {done} gives a feature {feat.shape[1:]} / mask "
            f"{mask.shape[1:]}, earlier ones {features.shape[1:]} / {masks.shape[1:]}"
        )
    if mask.size and (mask.min() < 0 or mask.max() > 255):
        raise ValueError(
            f"FeatureCache: mask values of samples {done}..{done + len(mask) - 1} are outside "
            "0..255 (masks are cached as uint8)"
        )


def _remove_orphans(root: Path, name: str) -> None:
    """Remove the temporary folders of builds of ``name`` whose process has died (kill -9).

    A temporary folder is named ``.<name>.tmp-<pid>-<random>``; one whose process no longer
    exists on this machine can never be finished. (On a filesystem shared between machines a
    pid may be another machine's: such folders are left alone unless that pid is unused here
    too, which costs at most one rebuild's disk space.)
    """
    for tmp in root.glob(f".{name}.tmp-*"):
        pid = tmp.name.rsplit(".tmp-", 1)[1].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _install(tmp: Path, path: Path) -> None:
    """Rename the finished ``tmp`` into place, keeping a valid cache another process installed."""
    try:
        os.rename(tmp, path)
    except OSError:
        if check_cache(path) is None:
            return  # built concurrently by another process: keep theirs
        shutil.rmtree(path, ignore_errors=True)
        os.rename(tmp, path)


def _write_json_atomic(path: Path, content: Mapping[str, Any]) -> None:
    part = path.with_name(f"{path.name}.part")
    with open(part, "w") as handle:
        handle.write(json.dumps(content, indent=2, sort_keys=True, default=str) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(part, path)


def _pair(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if height < 1 or width < 1:
        raise ConfigError(f"FeatureCache: crop_size must be positive, got {size!r}")
    return int(height), int(width)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.-") or "x"
