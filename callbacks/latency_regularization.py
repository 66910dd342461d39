"""LatencyRegularization: add λ · (expected latency) to the architecture loss.

The term is FasterSeg's decoupled, fine-grained latency loss when the search space reports
several latency components, and the plain expected latency (ProxylessNAS/FBNet style) when it
reports one, as DARTS does. The maths lives in two pure functions, :func:`decoupled_latency` and
:func:`adapt_weight`; the callback loads the table once, checks it covers the space, adds the term
through the :class:`~lightning_nas.loss_terms.LossTerm` protocol and keeps the adaptive λ in its
checkpointed state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from lightning_nas.errors import ConfigError
from lightning_nas.latency.protocols import (
    DerivedCandidates,
    DerivedLatency,
    LatencyAware,
    LatencyComponents,
)
from lightning_nas.latency.table import LatencyTable
from lightning_nas.loss_terms import LossTerm

__all__ = ["LatencyRegularization", "adapt_weight", "decoupled_latency"]


def decoupled_latency(
    components: Mapping[str, torch.Tensor], weights: Mapping[str, float]
) -> torch.Tensor:
    """Σ_k w̃_k · L_k, with the weights normalised over the components present.

    A single component gets weight 1 whatever its name. With several, each needs a weight; they
    are normalised over the present ones (the release's sets already sum to 1, see
    ``lightning_nas.methods.fasterseg.latency.release_component_weights``).

    Args:
        components: Latency terms (ms) by name, e.g. ``{"operators": ..., "strides": ...}``.
        weights: Weight by component name (needs not sum to 1).

    Raises:
        ConfigError: If there is no component, a component has no weight, or the weights of
            the present components sum to 0.

    Example:
        >>> comps = {"operators": torch.tensor(10.0), "strides": torch.tensor(20.0)}
        >>> float(decoupled_latency(comps, {"operators": 1.0, "strides": 3.0}))
        17.5
        >>> float(decoupled_latency({"operators": torch.tensor(4.0)}, {}))
        4.0
    """
    if not components:
        raise ConfigError("LatencyRegularization: the search space reported no latency component")
    if len(components) == 1:
        return next(iter(components.values()))
    absent = [k for k in components if k not in weights]
    if absent:
        raise ConfigError(
            f"LatencyRegularization: no weight for latency component(s) {absent}; set "
            f"component_weights (the space reports {sorted(components)})"
        )
    total = sum(float(weights[k]) for k in components)
    if total <= 0:
        raise ConfigError(
            f"LatencyRegularization: component_weights of {sorted(components)} sum to {total}"
        )
    return sum(float(weights[k]) / total * v for k, v in components.items())  # type: ignore[return-value]


def adapt_weight(
    weight: float, fps: float | Sequence[float], fps_window: tuple[float, float]
) -> float:
    """FasterSeg's controller: halve λ if any FPS ≥ max, else double it if any FPS ≤ min.

    As ``search/train_search.py``, where either branch pair decides.

    Args:
        weight: The current λ.
        fps: The current FPS, or one per candidate (FasterSeg: the two branch pairs).
        fps_window: ``(min_fps, max_fps)``.

    Example:
        >>> adapt_weight(0.01, fps=200.0, fps_window=(155.0, 175.0))
        0.005
        >>> adapt_weight(0.01, fps=100.0, fps_window=(155.0, 175.0))
        0.02
        >>> adapt_weight(0.01, fps=160.0, fps_window=(155.0, 175.0))
        0.01
        >>> adapt_weight(0.01, fps=[160.0, 180.0], fps_window=(155.0, 175.0))  # either pair
        0.005
        >>> adapt_weight(0.01, fps=[100.0, 180.0], fps_window=(155.0, 175.0))  # halving first
        0.005
    """
    values = [float(f) for f in np.atleast_1d(np.asarray(fps, dtype=float))]
    low, high = fps_window
    if any(f >= high for f in values):
        return weight / 2
    if any(f <= low for f in values):
        return weight * 2
    return weight


class LatencyRegularization(LossTerm):
    """Add ``λ · L_lat`` to the architecture loss, L_lat from the space and a latency table.

    The module's search space (its ``space`` attribute) must expose
    ``expected_latency(table) -> Tensor`` (ms, differentiable); if it also exposes
    ``latency_components(table) -> dict[str, Tensor]`` the term is FasterSeg's decoupled form
    ``Σ w̃_k L_k`` (see :func:`decoupled_latency`); if it exposes ``latency_configs(input_size)``
    the table is checked to cover the space at setup; if it exposes ``derived_latency(table)``
    (the table estimate of the network it would derive now), that is the "current latency" of
    the target and the FPS window, else the expected latency is.

    **Units.** λ multiplies milliseconds of the table's device. FasterSeg's λ = 0.01 is per
    millisecond of its 1080Ti/TensorRT table, where its student runs in 6.4 ms; on a device
    where the same network takes 85× longer the same λ pushes 85× harder against the task loss.
    ``latency_unit_ms`` (or ``reference_genotype`` + ``reference_latency_ms``, which measure it)
    expresses every latency in reference milliseconds, ``L / latency_unit_ms``: the term, the
    target and the FPS window then mean what they mean in the release on any device.

    The table is read once at setup and never changed. Logged each training step: the module
    logs the term as ``train/arch_loss/LatencyRegularization``; this callback logs
    ``latency/expected_ms``, ``latency/<component>_ms`` (several components),
    ``latency/derived_ms`` (when available), all in table milliseconds, ``latency/lambda``,
    ``latency/unit_ms`` and ``latency/term_ratio`` (the latency term over the task term of the
    architecture loss, the balance that λ sets).

    Args:
        table: Path of the latency table (``lightning-nas latency build``).
        weight: λ, the initial weight of the term (FasterSeg: 0.01).
        component_weights: Weights of the latency components by name (normalised over the
            components the space reports); default: the space's own
            (``latency_component_weights()`` of
            :class:`~lightning_nas.latency.protocols.LatencyComponents`; FasterSeg: the
            release's 1/500, 497/500, 2/500 with widths, 1/500, 499/500 without).
        target_ms: Penalise only while the current latency is above this many (reference) ms
            (the term is zero otherwise); ``None``: always.
        fps_window: ``(min_fps, max_fps)``: at the end of each training epoch with
            architecture updates λ is halved if a current FPS (``1000 · table batch size /
            current reference ms``) is at or above ``max_fps``, else doubled if one is at or
            below ``min_fps`` (FasterSeg: (155, 175), over both branch pairs when the space
            has them); ``None``: constant λ. Warm-up epochs before the module's
            ``arch_start_epoch`` never adapt λ (the architecture does not move).
        latency_unit_ms: Table milliseconds per reference millisecond: every latency is divided
            by it (the term, ``target_ms``, ``fps_window``). ``None``: 1, or measured from
            ``reference_genotype``.
        reference_genotype: A genotype file whose latency on the reference device is
            ``reference_latency_ms``: ``latency_unit_ms`` = its table estimate (the space's
            ``derived_latency``) / ``reference_latency_ms``, computed at setup. FasterSeg's
            recipe: the published student, 6.414 ms in the release's table.
        reference_latency_ms: The reference genotype's latency in reference milliseconds.
        input_size: Network input ``(H, W)`` the latency is estimated for; the table must have
            been built for it. Default: the table's.
        device: If set (``"cuda"``, ``"cpu"``), the table must have been measured on this
            device's hardware. Default: any (a table is usually built for the deployment target,
            which need not be the device the search runs on).
        dtype: If set, the table's dtype must be this one.
        allow_mismatch: Accept a table built for another device, dtype or input size.

    Raises:
        ConfigError: If an argument is out of range (at construction), or at setup if the table
            does not load, does not cover the space, or the space has no ``expected_latency``.

    Example:
        >>> cb = LatencyRegularization("tables/cpu.json", weight=0.01, fps_window=(155, 175))
        >>> cb.state_dict()
        {'weight': 0.01}
    """

    def __init__(
        self,
        table: str,
        weight: float = 0.01,
        component_weights: dict[str, float] | None = None,
        target_ms: float | None = None,
        fps_window: tuple[float, float] | None = None,
        input_size: tuple[int, int] | None = None,
        device: str | None = None,
        dtype: str | None = None,
        allow_mismatch: bool = False,
        latency_unit_ms: float | None = None,
        reference_genotype: str | None = None,
        reference_latency_ms: float | None = None,
    ) -> None:
        if not isinstance(table, str) or not table:
            raise ConfigError(f"LatencyRegularization: table must be a file path, got {table!r}")
        if not weight >= 0:
            raise ConfigError(f"LatencyRegularization: weight must be >= 0, got {weight!r}")
        weights = None if component_weights is None else dict(component_weights)
        bad = {k: v for k, v in (weights or {}).items() if not v >= 0}
        if bad:
            raise ConfigError(f"LatencyRegularization: component_weights must be >= 0, got {bad}")
        if target_ms is not None and not target_ms > 0:
            raise ConfigError(f"LatencyRegularization: target_ms must be > 0, got {target_ms!r}")
        if fps_window is not None:
            if len(fps_window) != 2 or not 0 < fps_window[0] < fps_window[1]:
                raise ConfigError(
                    "LatencyRegularization: fps_window must be (min_fps, max_fps) with "
                    f"0 < min_fps < max_fps, got {fps_window!r}"
                )
            fps_window = (float(fps_window[0]), float(fps_window[1]))
        if latency_unit_ms is not None and not latency_unit_ms > 0:
            raise ConfigError(
                f"LatencyRegularization: latency_unit_ms must be > 0, got {latency_unit_ms!r}"
            )
        if (reference_genotype is None) != (reference_latency_ms is None):
            raise ConfigError(
                "LatencyRegularization: reference_genotype and reference_latency_ms go together "
                f"(got reference_genotype={reference_genotype!r}, "
                f"reference_latency_ms={reference_latency_ms!r})"
            )
        if reference_genotype is not None and latency_unit_ms is not None:
            raise ConfigError(
                "LatencyRegularization: give latency_unit_ms or reference_genotype + "
                "reference_latency_ms, not both"
            )
        if reference_latency_ms is not None and not reference_latency_ms > 0:
            raise ConfigError(
                "LatencyRegularization: reference_latency_ms must be > 0, got "
                f"{reference_latency_ms!r}"
            )
        self.table_path = table
        self.weight = float(weight)
        self.component_weights = weights
        self.target_ms = target_ms
        self.fps_window = fps_window
        self.input_size = None if input_size is None else (int(input_size[0]), int(input_size[1]))
        self.device = device
        self.dtype = dtype
        self.allow_mismatch = allow_mismatch
        self.latency_unit_ms = 1.0 if latency_unit_ms is None else float(latency_unit_ms)
        self.reference_genotype = reference_genotype
        self.reference_latency_ms = reference_latency_ms
        self.table: LatencyTable | None = None

    # ----------------------------------------------------------------- setup
    @staticmethod
    def _space(pl_module: pl.LightningModule) -> LatencyAware:
        space = getattr(pl_module, "space", None)
        if space is None:
            raise ConfigError(
                f"LatencyRegularization: {type(pl_module).__name__} has no search space (a "
                "`space` attribute); latency regularisation applies to a search"
            )
        if not isinstance(space, LatencyAware):
            raise ConfigError(
                f"LatencyRegularization: the search space {type(space).__name__} is not latency "
                "aware (lightning_nas.latency.LatencyAware: latency_configs, latency_op, "
                "expected_latency), so its latency cannot be regularised"
            )
        return space

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        space = self._space(pl_module)
        if self.table is None:
            self.table = LatencyTable.load(
                self.table_path,
                device=self.device,
                dtype=self.dtype,
                input_size=self.input_size,
                allow_mismatch=self.allow_mismatch,
            )
            rank_zero_info(
                f"LatencyRegularization: {self.table} from {self.table_path} "
                f"(digest {self.table.digest[:12]})"
            )
        size = self._size()
        self.table.require(space.latency_configs(size), context=f"{type(space).__name__} at {size}")
        with torch.no_grad():
            components = self._components(space)
            decoupled_latency(components, self._weights(space))
        if self.reference_genotype is not None and self.reference_latency_ms is not None:
            self.latency_unit_ms = self._measure_unit(space)
            rank_zero_info(
                f"LatencyRegularization: {self.reference_genotype} is "
                f"{self.latency_unit_ms * self.reference_latency_ms:.3f} table ms = "
                f"{self.reference_latency_ms} reference ms: latency unit "
                f"{self.latency_unit_ms:.4g} table ms"
            )

    def _measure_unit(self, space: Any) -> float:
        from lightning_nas import genotypes

        if not isinstance(space, DerivedLatency):
            raise ConfigError(
                f"LatencyRegularization: reference_genotype needs the space's derived_latency "
                f"(table, genotype); {type(space).__name__} has none"
            )
        try:
            genotype = genotypes.load(self.reference_genotype)
        except FileNotFoundError:
            raise ConfigError(
                f"LatencyRegularization: reference_genotype file {self.reference_genotype} not "
                "found"
            ) from None
        ms = float(space.derived_latency(self.table, genotype, input_size=self._size()))
        if not ms > 0:
            raise ConfigError(
                f"LatencyRegularization: reference_genotype {self.reference_genotype} has a "
                f"table latency of {ms} ms (expected > 0)"
            )
        return ms / float(self.reference_latency_ms)  # type: ignore[arg-type]

    def _weights(self, space: Any) -> dict[str, float]:
        if self.component_weights is not None:
            return self.component_weights
        if isinstance(space, LatencyComponents):
            return space.latency_component_weights()
        return {}

    def _size(self) -> tuple[int, int]:
        if self.table is None:
            raise RuntimeError("LatencyRegularization: the table is loaded at setup")
        return self.input_size or self.table.input_size

    # ----------------------------------------------------------------- latency
    def _components(self, space: Any) -> dict[str, torch.Tensor]:
        if isinstance(space, LatencyComponents):
            return dict(space.latency_components(self.table, self._size()))
        return {"expected": space.expected_latency(self.table, self._size())}

    def current_latency(self, space: Any) -> float:
        """The latency (reference ms) the target and the FPS window are checked against.

        The table estimate of the currently derived network when the space has
        ``derived_latency(table)``, else its expected latency; divided by ``latency_unit_ms``.
        """
        if isinstance(space, DerivedLatency):
            derived = space.derived_latency(self.table, input_size=self._size())
            return float(derived) / self.latency_unit_ms
        with torch.no_grad():
            return float(space.expected_latency(self.table, self._size())) / self.latency_unit_ms

    def candidate_latencies(self, space: Any) -> list[float]:
        """The latencies (reference ms) the FPS window is checked against.

        One per candidate when the space may end with several derived networks
        (:class:`~lightning_nas.latency.protocols.DerivedCandidates`; FasterSeg: the release
        adapts λ on either branch pair), else :meth:`current_latency`.
        """
        if isinstance(space, DerivedCandidates) and isinstance(space, DerivedLatency):
            return [
                float(space.derived_latency(self.table, genotype, self._size()))
                / self.latency_unit_ms
                for genotype in space.derive_candidates().values()
            ]
        return [self.current_latency(space)]

    @override
    def arch_loss(
        self, module: pl.LightningModule, logits: torch.Tensor, batch: dict[str, Any]
    ) -> torch.Tensor | None:
        space = self._space(module)
        components = self._components(space)
        term = decoupled_latency(components, self._weights(space))
        term = term / self.latency_unit_ms
        if self.target_ms is not None and self.current_latency(space) <= self.target_ms:
            return term * 0.0
        return self.weight * term

    # ----------------------------------------------------------------- hooks
    @override
    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        space = self._space(pl_module)
        with torch.no_grad():
            components = self._components(space)
            if len(components) == 1:
                expected = next(iter(components.values()))
            else:
                expected = space.expected_latency(self.table, self._size())
        metrics = {"latency/expected_ms": float(expected)}
        if len(components) > 1:
            metrics.update({f"latency/{k}_ms": float(v) for k, v in components.items()})
        if isinstance(space, DerivedLatency):
            metrics["latency/derived_ms"] = self.current_latency(space) * self.latency_unit_ms
        metrics["latency/lambda"] = self.weight
        metrics["latency/unit_ms"] = self.latency_unit_ms
        logged = trainer.callback_metrics
        term, task = (logged.get(f"train/arch_loss/{k}") for k in (self.name, "task"))
        if term is not None and task is not None and float(task) != 0.0:
            metrics["latency/term_ratio"] = float(term) / float(task)
        pl_module.log_dict(metrics, on_step=True, on_epoch=False)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.fps_window is None or self.table is None:
            return
        if pl_module.current_epoch < getattr(pl_module, "arch_start_epoch", 0):
            return  # a warm-up epoch: the architecture did not move (the release: update_arch)
        fps = [
            1000.0 * self.table.batch_size / ms if ms > 0 else float("inf")
            for ms in self.candidate_latencies(self._space(pl_module))
        ]
        self.weight = adapt_weight(self.weight, fps, self.fps_window)

    # ----------------------------------------------------------------- state
    @override
    def state_dict(self) -> dict[str, Any]:
        return {"weight": self.weight}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.weight = float(state_dict["weight"])
