"""Measure the latency of operations and networks on the current device.

:func:`measure_module` is the single timing routine, used for table entries and for end-to-end
network measurements alike, so estimates and measurements are taken the same way: eval mode,
``torch.inference_mode()``, warm-up calls, then either the median of blocks of calls timed by
``torch.utils.benchmark.Timer.blocked_autorange`` (``min_run_time`` given: what the table
builds and the correlation benchmark use) or the median of ``repeats`` single samples, the
device synchronised around every timed block; ``clock="cpu"`` reads the measuring thread's CPU
time instead of the wall clock (one CPU thread: steady on a shared machine).
:func:`steady_allocator` keeps glibc from handing large buffers back to the kernel between calls
(each call would otherwise page-fault its activations afresh, a bimodal cost that no table
captures). :class:`OpTimer` times an
:class:`~lightning_nas.latency.config.OpConfig`, built by
:func:`~lightning_nas.latency.blocks.build_op` (the shared blocks, then the builders it is
given: a latency-aware space's ``latency_op``).

Example:
    >>> from lightning_nas.latency import OpConfig, OpTimer
    >>> OpTimer("cpu", warmup=0, repeats=1)(OpConfig("sep_conv_3x3", 4, 4, 8, 8, 2)) >= 0.0
    True
"""

from __future__ import annotations

import ctypes
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

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
    "steady_allocator",
]

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
_STEADY_BYTES = 1 << 30
_steady = False


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


def steady_allocator() -> bool:
    """Keep freed memory in the process (glibc): steady CPU timings of large activations.

    By default glibc serves buffers above a (dynamic) threshold with ``mmap`` and returns freed
    heap tops to the kernel, so a timed call can page-fault and zero its activations afresh, on
    some calls and not others: on the 2-core CI box a FasterSeg stem at 256×512 measured 4.0 ms
    or 4.7–8.2 ms from one run to the next. Raising the mmap and trim thresholds to 1 GiB
    (``mallopt``, as ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` would at start-up)
    lets freed buffers be reused, as a caching allocator (jemalloc, tcmalloc, CUDA's) does.
    Process-wide and irreversible: call it from an entry point (``lightning-nas latency build``,
    the benchmarks), before measuring, never from library code.

    Returns:
        Whether the thresholds were set (``False`` off Linux / glibc).
    """
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    global _steady
    trim = libc.mallopt(_M_TRIM_THRESHOLD, _STEADY_BYTES)
    mmap = libc.mallopt(_M_MMAP_THRESHOLD, _STEADY_BYTES)
    _steady = bool(trim and mmap)
    return _steady


def allocator_note() -> str:
    """``"; glibc steady allocator"`` once :func:`steady_allocator` succeeded, else ``""``."""
    return "; glibc steady allocator" if _steady else ""


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
    min_run_time: float | None = None,
    clock: Literal["wall", "cpu"] = "wall",
) -> float:
    """Median latency in milliseconds of ``module(*inputs)``.

    The module is put in eval mode (its previous mode is restored afterwards) and called under
    ``torch.inference_mode()``: ``warmup`` untimed calls, then

    * with ``min_run_time`` (seconds): ``torch.utils.benchmark.Timer.blocked_autorange`` —
      blocks of calls, the block size grown until the timer's own overhead is negligible,
      repeated for at least ``min_run_time`` seconds, the accelerator synchronised around each
      block; the median block time per call is returned (``repeats`` and ``number`` unused). The
      current ``torch.get_num_threads()`` is kept (the Timer's default would be 1);
    * otherwise ``repeats`` timed samples of ``number`` calls each, the device synchronised
      before and after every sample (CUDA, MPS); their median.

    ``clock="cpu"`` times with the calling thread's CPU time (``time.thread_time``) instead of
    the wall clock: on a CPU with one intra-op thread, where all the work runs on the calling
    thread, it is the latency minus the time the OS gave the core to other processes — what the
    wall clock of an idle machine reads, measured on a shared one. It still sees what other
    processes do to the shared caches and memory bandwidth.

    Args:
        module: The module (or any callable) to time; it must already be on the inputs' device.
        inputs: Its positional inputs.
        warmup: Untimed calls first (cuDNN autotuning, allocator, caches).
        repeats: Timed samples; the median is returned.
        number: Calls per sample (the sample time is divided by it).
        min_run_time: Seconds of timed blocks (``blocked_autorange``); ``None``: ``repeats``
            samples instead.
        clock: ``"wall"`` (``time.perf_counter``) or ``"cpu"`` (``time.thread_time``; CPU
            inputs and ``torch.get_num_threads() == 1`` only).

    Returns:
        The median time of one call, in milliseconds.

    Raises:
        ValueError: If ``repeats`` or ``number`` is below 1, ``warmup`` is negative,
            ``min_run_time`` is not positive, or ``clock="cpu"`` is asked for where the calling
            thread does not do all the work.
    """
    if repeats < 1 or number < 1 or warmup < 0:
        raise ValueError(
            f"measure_module: need repeats >= 1, number >= 1, warmup >= 0; got repeats={repeats}, "
            f"number={number}, warmup={warmup}"
        )
    if min_run_time is not None and not min_run_time > 0:
        raise ValueError(f"measure_module: min_run_time must be > 0 s, got {min_run_time!r}")
    device = inputs[0].device if inputs else torch.device("cpu")
    clock_fn = _clock(clock, device)
    was_training = module.training if isinstance(module, nn.Module) else None
    if isinstance(module, nn.Module):
        module.eval()
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                module(*inputs)
            if min_run_time is not None:
                return _blocked_median(module, inputs, min_run_time, clock_fn) * 1e3
            samples = []
            for _ in range(repeats):
                _synchronize(device)
                start = clock_fn()
                for _ in range(number):
                    module(*inputs)
                _synchronize(device)
                samples.append((clock_fn() - start) / number)
    finally:
        if isinstance(module, nn.Module) and was_training is not None:
            module.train(was_training)
    return statistics.median(samples) * 1e3


def _clock(clock: str, device: torch.device) -> Callable[[], float]:
    if clock == "wall":
        return time.perf_counter
    if clock != "cpu":
        raise ValueError(f"measure_module: clock must be 'wall' or 'cpu', got {clock!r}")
    if device.type != "cpu" or torch.get_num_threads() != 1:
        raise ValueError(
            "measure_module: clock='cpu' times the calling thread: it needs CPU inputs and "
            f"torch.get_num_threads() == 1 (device {device.type}, "
            f"{torch.get_num_threads()} threads)"
        )
    return time.thread_time


def _blocked_median(
    module: nn.Module | Callable[..., object],
    inputs: Sequence[torch.Tensor],
    min_run_time: float,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Median seconds per call of ``Timer.blocked_autorange`` (the caller sets the modes)."""
    from torch.utils.benchmark import Timer

    kwargs: dict[str, Any] = {}
    if clock is not time.perf_counter:
        kwargs["timer"] = clock
    timer = Timer(
        stmt="module(*inputs)",
        globals={"module": module, "inputs": list(inputs)},
        num_threads=torch.get_num_threads(),
        **kwargs,
    )
    return float(timer.blocked_autorange(min_run_time=min_run_time).median)


class OpTimer:
    """Time an :class:`OpConfig` on a device: the default measuring callable of a table build.

    Args:
        device: Where to run (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...).
        dtype: Parameter and input dtype.
        batch_size: Batch size of the random inputs.
        warmup: Untimed calls before timing.
        repeats: Timed samples (median).
        number: Calls per timed sample.
        min_run_time: Seconds of ``blocked_autorange`` blocks per measurement instead of
            ``repeats`` samples (see :func:`measure_module`).
        clock: ``"wall"`` or ``"cpu"`` (the thread's CPU time), see :func:`measure_module`.
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
        min_run_time: float | None = None,
        clock: Literal["wall", "cpu"] = "wall",
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
        self.min_run_time = min_run_time
        self.clock: Literal["wall", "cpu"] = clock

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
            module,
            inputs,
            warmup=self.warmup,
            repeats=self.repeats,
            number=self.number,
            min_run_time=self.min_run_time,
            clock=self.clock,
        )
