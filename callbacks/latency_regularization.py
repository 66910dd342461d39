"""LatencyRegularization: add λ · (expected latency) to the architecture loss.

The term is FasterSeg's decoupled, fine-grained latency loss when the search space reports
several latency components, and the plain expected latency (ProxylessNAS/FBNet style) when it
reports one, as DARTS does. The maths lives in two pure functions, :func:`decoupled_latency` and
:func:`adapt_weight`; the callback loads the table once, checks it covers the space, adds the term
through the :class:`~lightning_nas.loss_terms.LossTerm` protocol and keeps the adaptive λ in its
checkpointed state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from lightning_nas.errors import ConfigError
from lightning_nas.latency.table import LatencyTable
from lightning_nas.loss_terms import LossTerm

__all__ = [
    "FASTERSEG_COMPONENT_WEIGHTS",
    "LatencyRegularization",
    "adapt_weight",
    "decoupled_latency",
]

FASTERSEG_COMPONENT_WEIGHTS: dict[str, float] = {
    "operators": 1 / 500,
    "strides": 497 / 500,
    "expansion": 2 / 500,
}
"""FasterSeg's decoupled weights as released (``search/architect.py``: r0 = 1/500 for the
operators α, r1 = 497/500 for the downsampling β, r2 = 2/500 for the widths γ)."""


def decoupled_latency(
    components: Mapping[str, torch.Tensor], weights: Mapping[str, float]
) -> torch.Tensor:
    """Σ_k w̃_k · L_k, with the weights normalised over the components present.

    A single component gets weight 1 whatever its name. With several, each needs a weight;
    normalising over the present ones reproduces FasterSeg's two-term ratios (1/500, 499/500)
    when the widths are not searched.

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


def adapt_weight(weight: float, fps: float, fps_window: tuple[float, float]) -> float:
    """FasterSeg's controller: halve λ at or above the max FPS, double it at or below the min.

    Example:
        >>> adapt_weight(0.01, fps=200.0, fps_window=(155.0, 175.0))
        0.005
        >>> adapt_weight(0.01, fps=100.0, fps_window=(155.0, 175.0))
        0.02
        >>> adapt_weight(0.01, fps=160.0, fps_window=(155.0, 175.0))
        0.01
    """
    low, high = fps_window
    if fps >= high:
        return weight / 2
    if fps <= low:
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

    The table is read once at setup and never changed. Logged each training step: the module
    logs the term as ``train/arch_loss/LatencyRegularization``; this callback logs
    ``latency/expected_ms``, ``latency/<component>_ms`` (several components),
    ``latency/derived_ms`` (when available) and ``latency/lambda``.

    Args:
        table: Path of the latency table (``lightning-nas latency build``).
        weight: λ, the initial weight of the term (FasterSeg: 0.01).
        component_weights: Weights of the latency components by name (normalised over the
            components the space reports); default: FasterSeg's released
            :data:`FASTERSEG_COMPONENT_WEIGHTS`.
        target_ms: Penalise only while the current latency is above this many ms (the term is
            zero otherwise); ``None``: always.
        fps_window: ``(min_fps, max_fps)``: at each training-epoch end λ is halved if the
            current FPS (``1000 · table batch size / current ms``) is at or above ``max_fps`` and
            doubled if at or below ``min_fps`` (FasterSeg: (155, 175)); ``None``: constant λ.
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
    ) -> None:
        if not isinstance(table, str) or not table:
            raise ConfigError(f"LatencyRegularization: table must be a file path, got {table!r}")
        if not weight >= 0:
            raise ConfigError(f"LatencyRegularization: weight must be >= 0, got {weight!r}")
        weights = dict(
            FASTERSEG_COMPONENT_WEIGHTS if component_weights is None else component_weights
        )
        bad = {k: v for k, v in weights.items() if not v >= 0}
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
        self.table_path = table
        self.weight = float(weight)
        self.component_weights = weights
        self.target_ms = target_ms
        self.fps_window = fps_window
        self.input_size = None if input_size is None else (int(input_size[0]), int(input_size[1]))
        self.device = device
        self.dtype = dtype
        self.allow_mismatch = allow_mismatch
        self.table: LatencyTable | None = None

    # ----------------------------------------------------------------- setup
    @staticmethod
    def _space(pl_module: pl.LightningModule) -> Any:
        space = getattr(pl_module, "space", None)
        if space is None:
            raise ConfigError(
                f"LatencyRegularization: {type(pl_module).__name__} has no search space (a "
                "`space` attribute); latency regularisation applies to a search"
            )
        if not callable(getattr(space, "expected_latency", None)):
            raise ConfigError(
                f"LatencyRegularization: the search space {type(space).__name__} has no "
                "expected_latency(table) method, so its latency cannot be regularised"
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
        configs = getattr(space, "latency_configs", None)
        if callable(configs):
            self.table.require(configs(size), context=f"{type(space).__name__} at {size}")
        with torch.no_grad():
            decoupled_latency(self._components(space), self.component_weights)

    def _size(self) -> tuple[int, int]:
        if self.table is None:
            raise RuntimeError("LatencyRegularization: the table is loaded at setup")
        return self.input_size or self.table.input_size

    # ----------------------------------------------------------------- latency
    def _components(self, space: Any) -> dict[str, torch.Tensor]:
        fn = getattr(space, "latency_components", None)
        if callable(fn):
            return dict(fn(self.table, self._size()))
        return {"expected": space.expected_latency(self.table, self._size())}

    def current_latency(self, space: Any) -> float:
        """The latency (ms) the target and the FPS window are checked against.

        The table estimate of the currently derived network when the space has
        ``derived_latency(table)``, else its expected latency.
        """
        derived = getattr(space, "derived_latency", None)
        if callable(derived):
            return float(derived(self.table, input_size=self._size()))
        with torch.no_grad():
            return float(space.expected_latency(self.table, self._size()))

    @override
    def arch_loss(
        self, module: pl.LightningModule, logits: torch.Tensor, batch: dict[str, Any]
    ) -> torch.Tensor | None:
        space = self._space(module)
        term = decoupled_latency(self._components(space), self.component_weights)
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
        if callable(getattr(space, "derived_latency", None)):
            metrics["latency/derived_ms"] = self.current_latency(space)
        metrics["latency/lambda"] = self.weight
        pl_module.log_dict(metrics, on_step=True, on_epoch=False)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.fps_window is None or self.table is None:
            return
        ms = self.current_latency(self._space(pl_module))
        fps = 1000.0 * self.table.batch_size / ms if ms > 0 else float("inf")
        self.weight = adapt_weight(self.weight, fps, self.fps_window)

    # ----------------------------------------------------------------- state
    @override
    def state_dict(self) -> dict[str, Any]:
        return {"weight": self.weight}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.weight = float(state_dict["weight"])
