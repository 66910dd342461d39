"""The DataModules' DataLoader: deferred, resumable mid-epoch, one-line errors from workers.

:class:`ResumableDataLoader` is a plain ``DataLoader`` (Lightning re-instantiates it with a
``DistributedSampler`` under DDP like any other) with three additions:

* **Deferred iterator.** Creating a DataLoader iterator reads torch's global generator (the
  workers' base seed; the shuffle order at the first index). Lightning creates the iterator of
  the first epoch of a run, fresh or resumed, before ``on_train_epoch_start`` and those of later
  epochs after it. The real iterator is created when the first batch is requested, after that
  hook in every case, so reseeding there fixes the epoch whatever ``num_workers`` is.
* **Resumable mid-epoch** (Lightning's ``state_dict`` / ``load_state_dict`` protocol for
  loaders, saved in the checkpoint under the fit loop's ``combined_loader``). The state of an
  unfinished iterator is the global generator's state just before it was created and the number
  of batches it has yielded. After ``load_state_dict`` the next iterator is created from that
  generator state (in a forked generator, so the global one is untouched) and skips the batches
  already yielded without loading them: the same shuffle order, the same worker seeds, and the
  rest of the epoch's batches. With workers each training item is reseeded from the iterator's
  seed and the item's index (:class:`SeededIndex`), so the augmentations do not depend on which
  worker loads an item or on what it loaded before; without workers items draw their seeds
  from the global generator, which :class:`callbacks.ExactResume` saves and restores. A loader
  whose iterator finished, or never started, has an empty state.
* **Errors and skipped samples.** An :class:`InvalidSampleError` raised in a worker reaches the
  main process as a new one whose message holds the worker's whole traceback; the iterator
  raises the original one-line message instead. The ``"skipped"`` key (``skip_invalid`` mode)
  is taken out of every batch and counted; a warning gives the count when the epoch ends (or
  when the iterator is dropped before its end, as with ``limit_train_batches``).

Not exact: ``persistent_workers=True`` (workers keep their dataset copy and base seed between
epochs, so a resumed epoch cannot recreate them) resumes at the right batch but with other
augmentations.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import torch
from torch.utils.data import DataLoader

from lightning_nas.data._io import InvalidSampleError

__all__ = ["ResumableDataLoader", "SeededIndex", "SkippedSamplesWarning"]


class SkippedSamplesWarning(UserWarning):
    """Invalid samples were skipped (``skip_invalid: true``); the message counts them."""


class SeededIndex(NamedTuple):
    """A dataset index with the seed of its augmentation (training items loaded by workers)."""

    index: int
    seed: int


class _Position:
    """The loader's index sampler, counted from a given batch on and (optionally) seeded.

    Each ``iter()`` gives a :class:`_PositionIterator` that first skips ``skip`` units without
    loading them (set by the loader for each iterator it creates: torch's multi-process iterator
    calls ``iter()`` twice).
    """

    def __init__(self, sampler: Iterable[Any], seeded: bool) -> None:
        self.sampler = sampler
        self.seeded = seeded
        self.skip = 0

    def __iter__(self) -> _PositionIterator:
        return _PositionIterator(self.sampler, self.skip, self.seeded)

    def __len__(self) -> int:
        return len(self.sampler)  # type: ignore[arg-type]


class _PositionIterator:
    def __init__(self, sampler: Iterable[Any], skip: int, seeded: bool) -> None:
        self._sampler = sampler
        self._skip = skip
        self._seeded = seeded
        self._units: Iterator[Any] | None = None
        self._seed = 0

    def prime(self) -> None:
        """Draw what the epoch's order needs from the global generator now (see the module)."""
        if self._units is not None:
            return
        units = iter(self._sampler)
        first = next(units, None)  # RandomSampler draws its seed at the first index
        if self._seeded:
            self._seed = int(torch.randint(2**62, ()).item())
        rest: Iterator[Any] = iter(()) if first is None else _chain_one(first, units)
        for _ in range(self._skip):
            if next(rest, None) is None:
                break
        self._units = rest

    def __iter__(self) -> _PositionIterator:
        return self

    def __next__(self) -> Any:
        self.prime()
        assert self._units is not None
        unit = next(self._units)
        if self._seeded and isinstance(unit, list):
            return [SeededIndex(int(i), self._seed) for i in unit]
        return unit


def _chain_one(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    while True:  # not ``yield from``: it would call iter() again, which restarts some samplers
        try:
            unit = next(rest)
        except StopIteration:
            return
        yield unit


class ResumableDataLoader(DataLoader):
    """A DataLoader with a deferred, resumable iterator (see the module docstring)."""

    @property
    def _index_sampler(self) -> Any:  # torch's DataLoader reads this to build its iterator
        base = self.batch_sampler if self.batch_sampler is not None else self.sampler
        position = self.__dict__.get("_position")
        if position is None or position.sampler is not base:  # (Lightning re-wraps samplers)
            dataset = self.dataset
            seeded = (
                self.num_workers > 0
                and self.batch_sampler is not None
                and getattr(dataset, "seeded_items", False)
                and getattr(dataset, "seed_from_torch", False)
            )
            position = _Position(base, seeded)
            self.__dict__["_position"] = position
        return position

    def __iter__(self) -> _DeferredIterator:
        description = getattr(self.dataset, "description", type(self.dataset).__name__)
        # a state loaded before the first batch applies, also to an iterator created earlier
        iterator = _DeferredIterator(
            lambda: self._create(self.__dict__.pop("_pending", None)), description
        )
        # a weak reference: the loader must not keep a finished epoch's workers alive
        self.__dict__["_latest"] = weakref.ref(iterator)
        return iterator

    def _create(self, pending: dict[str, Any] | None) -> tuple[Iterator[Any], Any, int]:
        if pending is None:
            self._index_sampler.skip = 0
            rng = torch.get_rng_state()
            return DataLoader.__iter__(self), rng, 0
        skip = int(pending["yielded"])
        self._index_sampler.skip = skip
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(pending["rng"])
            iterator = DataLoader.__iter__(self)
            sampler_iterator = getattr(iterator, "_sampler_iter", None)
            if isinstance(sampler_iterator, _PositionIterator):
                sampler_iterator.prime()  # the order's draws come from the saved state too
        return iterator, pending["rng"], skip

    def state_dict(self) -> dict[str, Any]:
        """Where the current iterator is: ``{}`` unless it started and has batches left."""
        ref = self.__dict__.get("_latest")
        latest = ref() if ref is not None else None
        if latest is None or latest.rng is None or latest.yielded >= len(self):
            return {}
        return {"rng": latest.rng, "yielded": latest.yielded}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Make the next iterator continue where the saved one stopped (``{}``: start afresh)."""
        if state_dict:
            self.__dict__["_pending"] = dict(state_dict)
        else:
            self.__dict__.pop("_pending", None)

    def discard_resume(self) -> None:
        """Forget a loaded state: the next iterator starts a new epoch."""
        self.__dict__.pop("_pending", None)


class _DeferredIterator:
    def __init__(
        self, make: Callable[[], tuple[Iterator[Any], Any, int]], description: str = "loader"
    ) -> None:
        self._make: Callable[[], tuple[Iterator[Any], Any, int]] | None = make
        self._iterator: Iterator[Any] | None = None
        self._description = description
        self._skipped: list[str] = []
        self.rng: torch.Tensor | None = None  # global generator state before the creation
        self.yielded = 0  # batches of the epoch yielded so far (skipped ones included)

    def __iter__(self) -> _DeferredIterator:
        return self

    def __next__(self) -> Any:
        if self._iterator is None:
            assert self._make is not None
            self._iterator, self.rng, self.yielded = self._make()
            self._make = None
        try:
            batch = next(self._iterator)
        except StopIteration:
            self._warn()
            raise
        except InvalidSampleError as err:
            message = _unwrap_worker_error(str(err))
            if message is None:
                raise
            raise InvalidSampleError(message) from err
        self.yielded += 1
        if isinstance(batch, dict) and "skipped" in batch:
            self._skipped += [line for text in batch.pop("skipped") for line in text.splitlines()]
        return batch

    def _warn(self) -> None:
        skipped, self._skipped = self._skipped, []
        if skipped:
            more = f"; and {len(skipped) - 1} more" if len(skipped) > 1 else ""
            warnings.warn(
                f"{self._description}: skipped {len(skipped)} invalid sample(s) this epoch "
                f"(skip_invalid: true): {skipped[0]}{more}",
                SkippedSamplesWarning,
                stacklevel=2,
            )

    def __del__(self) -> None:
        self._warn()


def _unwrap_worker_error(text: str) -> str | None:
    r"""The original message of an error torch re-raised from a DataLoader worker, else ``None``.

    Example:
        >>> _unwrap_worker_error("Caught InvalidSampleError in DataLoader worker process 0.\n"
        ...     "Original Traceback (most recent call last):\n  File ...\n"
        ...     "lightning_nas.data._io.InvalidSampleError: image 'a.png' is empty (0 bytes)\n")
        "image 'a.png' is empty (0 bytes)"
    """
    lines = text.rstrip().splitlines()
    if not lines or not lines[0].startswith("Caught InvalidSampleError"):
        return None
    for line in reversed(lines):
        _, found, message = line.partition("InvalidSampleError: ")
        if found and not line.startswith(" "):
            return message
    return None
