"""Measure the latency of operations and networks on the current device.

:func:`measure_module` is the single timing routine, used for table entries and for end-to-end
network measurements alike, so estimates and measurements are taken the same way: eval mode,
``torch.inference_mode()``, warm-up calls, then the median of timed repeats with the device
synchronised before and after each one. :class:`OpTimer` times an
:class:`~lightning_nas.latency.config.OpConfig`, built by
:func:`~lightning_nas.latency.blocks.build_op` (the shared blocks, then the builders it is
given: a latency-aware space's ``latency_op``).

Example:
    >>> from lightning_nas.latency import OpConfig, OpTimer
    >>> OpTimer("cpu", warmup=0, repeats=1)(OpConfig("sep_conv_3x3", 4, 4, 8, 8, 2)) >= 0.0
    True
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from lightning_nas.latency.blocks import OpBuilder, build_op
from lightning_nas.latency.config import OpConfig

__all__ = [
    "OpConfig",
    "OpTimer",
    "build_op",
    "device_name",
    "dtype_name",
    "measure_module",
]


# ----------------------------------------------------------------------------- devices
def dtype_name(dtype: torch.dtype | str) -> str:
    """``torch.float32`` or ``"float32"`` → ``"float32"``.

    Raises:
        ValueError: If ``dtype`` is not a torch dtype name.
    """
    name = str(dtype).removeprefix("torch.")
    if not isinstance(getattr(torch, name, None), torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}")
    return name


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def device_name(device: torch.device | str) -> str:
    """The hardware behind ``device``: the GPU's name for CUDA, the CPU model for ``cpu``.

    Example:
        >>> isinstance(device_name("cpu"), str)
        True
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return _cpu_name()
    return device.type


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# ----------------------------------------------------------------------------- timing
def measure_module(
    module: nn.Module | Callable[..., object],
    inputs: Sequence[torch.Tensor],
    warmup: int = 10,
    repeats: int = 30,
    number: int = 1,
) -> float:
    """Median latency in milliseconds of ``module(*inputs)``.

    The module is put in eval mode (its previous mode is restored afterwards) and called under
    ``torch.inference_mode()``: ``warmup`` untimed calls, then ``repeats`` timed samples of
    ``number`` calls each, the device synchronised before and after every sample (CUDA, MPS).

    Args:
        module: The module (or any callable) to time; it must already be on the inputs' device.
        inputs: Its positional inputs.
        warmup: Untimed calls first (cuDNN autotuning, allocator, caches).
        repeats: Timed samples; the median is returned.
        number: Calls per sample (the sample time is divided by it).

    Returns:
        The median time of one call, in milliseconds.

    Raises:
        ValueError: If ``repeats`` or ``number`` is below 1 or ``warmup`` is negative.
    """
    if repeats < 1 or number < 1 or warmup < 0:
        raise ValueError(
            f"measure_module: need repeats >= 1, number >= 1, warmup >= 0; got repeats={repeats}, "
            f"number={number}, warmup={warmup}"
        )
    device = inputs[0].device if inputs else torch.device("cpu")
    was_training = module.training if isinstance(module, nn.Module) else None
    if isinstance(module, nn.Module):
        module.eval()
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                module(*inputs)
            samples = []
            for _ in range(repeats):
                _synchronize(device)
                start = time.perf_counter()
                for _ in range(number):
                    module(*inputs)
                _synchronize(device)
                samples.append((time.perf_counter() - start) / number)
    finally:
        if isinstance(module, nn.Module) and was_training is not None:
            module.train(was_training)
    return statistics.median(samples) * 1e3


class OpTimer:
    """Time an :class:`OpConfig` on a device: the default measuring callable of a table build.

    Args:
        device: Where to run (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...).
        dtype: Parameter and input dtype.
        batch_size: Batch size of the random inputs.
        warmup: Untimed calls before timing.
        repeats: Timed samples (median).
        number: Calls per timed sample.
        seed: Seed of the random weights and inputs.
        builders: Op builders tried before the shared blocks (a latency-aware space's
            ``latency_op``), see :func:`~lightning_nas.latency.blocks.build_op`.

    Example:
        >>> timer = OpTimer("cpu", warmup=1, repeats=3)
        >>> timer(OpConfig("skip_connect", 4, 4, 8, 8)) >= 0.0
        True
    """

    def __init__(
        self,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | str = torch.float32,
        batch_size: int = 1,
        warmup: int = 10,
        repeats: int = 30,
        number: int = 1,
        seed: int = 0,
        builders: Sequence[OpBuilder] = (),
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"OpTimer: batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.dtype: torch.dtype = getattr(torch, dtype_name(dtype))
        self.batch_size = batch_size
        self.warmup = warmup
        self.repeats = repeats
        self.number = number
        self.seed = seed
        self.builders = tuple(builders)

    def __call__(self, config: OpConfig) -> float:
        """Median latency of ``config`` in milliseconds."""
        generator = torch.Generator().manual_seed(self.seed)
        with torch.random.fork_rng(devices=[]):  # weight init leaves the global RNG alone
            torch.manual_seed(self.seed)
            module, shapes = build_op(config, self.builders)
        module = module.to(self.device, self.dtype)
        inputs = [
            torch.randn((self.batch_size, *s), generator=generator).to(self.device, self.dtype)
            for s in shapes
        ]
        return measure_module(
            module, inputs, warmup=self.warmup, repeats=self.repeats, number=self.number
        )
