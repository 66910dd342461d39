"""SM-NAS's two discrete spaces, sampled through Optuna trials (torch-free).

* :class:`StructuralSpace` (stage 1): encoder × decoder × input size (× output stride for the
  decoders that dilate). Pairs smp 0.6 cannot build are *infeasible*, not errors:
  :meth:`StructuralSpace.constraints` flags them (``trial.set_constraint``) and
  :meth:`~StructuralSpace.constraint_reason` says why.
* :class:`ModularSpace` (stage 2): the decoder and input size of a stage-1 structure with a coded
  ResNet-style encoder (:mod:`~lightning_nas.methods.smnas.code`): base width, blocks per stage
  and where each stage doubles its width, and the decoder's width. Its mutations are SM-NAS's
  (insert a ``1``, remove a ``1``, move the ``2``); :meth:`ModularSpace.seed_from` turns a
  stage-1 genotype into its stage-2 starting point.

Example:
    >>> import optuna
    >>> space = StructuralSpace(encoders=("resnet18",), decoders=("FPN",), input_sizes=((64, 64),))
    >>> g = space.sample(optuna.trial.FixedTrial({"encoder": "resnet18", "decoder": "FPN",
    ...                                             "input_size": "64x64", "output_stride": 16}))
    >>> g.label
    'resnet18+FPN@64x64'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lightning_nas.errors import ConfigError
from lightning_nas.methods.smnas.code import BASE_CODES, BASE_WIDTHS, mutate_code, parse_code
from lightning_nas.methods.smnas.genotype import (
    CODED,
    DECODERS,
    OUTPUT_STRIDES,
    SMNASGenotype,
    dilated_stride,
)
from lightning_nas.strategies.protocols import MutableSpace

if TYPE_CHECKING:
    import optuna

__all__ = ["DILATING", "ModularSpace", "StructuralSpace"]

DILATING = tuple(OUTPUT_STRIDES)
"""Decoders that dilate the encoder (``genotype.OUTPUT_STRIDES`` gives each one's strides)."""
_DEPTH = {"PSPNet": 3}  # smp's PSPNet gives logits of the input size only at depth 3


def _size_key(size: Sequence[int]) -> str:
    return f"{size[0]}x{size[1]}"


def _size(key: str) -> tuple[int, int]:
    h, w = key.split("x")
    return int(h), int(w)


class _Feasibility:
    """Constraints from the structural builder's static rules (one constraint: ``invalid``)."""

    def constraints(self, genotype: SMNASGenotype) -> dict[str, float]:
        """``{"invalid": 1.0}`` when smp 0.6 cannot build the candidate, else 0."""
        return {"invalid": 0.0 if self.constraint_reason(genotype) is None else 1.0}

    def constraint_reason(self, genotype: SMNASGenotype) -> str | None:
        """Why the candidate cannot be built (one line), or ``None``."""
        from lightning_nas.methods.smnas.structural import static_reason

        return static_reason(genotype)


class StructuralSpace(_Feasibility, MutableSpace):
    """Stage 1: encoder × decoder × input size (× output stride of dilating decoders).

    Args:
        encoders: smp encoder names (default: the curated list of ``structural.ENCODERS``).
        decoders: smp architectures (default: every one of :data:`DECODERS`).
        input_sizes: ``(H, W)`` choices.
        output_strides: Output strides of the dilating decoders (:data:`DILATING`).
        encoder_depth: Encoder depth of every candidate.
    """

    def __init__(
        self,
        encoders: Sequence[str] | None = None,
        decoders: Sequence[str] = DECODERS,
        input_sizes: Sequence[Sequence[int]] = ((512, 1024), (768, 1536), (1024, 2048)),
        output_strides: Sequence[int] = (16, 8),
        encoder_depth: int = 5,
    ) -> None:
        if encoders is None:
            from lightning_nas.methods.smnas.structural import ENCODERS

            encoders = ENCODERS
        unknown = [d for d in decoders if d not in DECODERS]
        if unknown:
            raise ConfigError(f"StructuralSpace.decoders: unknown {unknown}; expected {DECODERS}")
        if not encoders or not decoders or not input_sizes:
            raise ConfigError(
                "StructuralSpace: encoders, decoders and input_sizes must be non-empty"
            )
        self.encoders = tuple(encoders)
        self.decoders = tuple(decoders)
        self.input_sizes = tuple(_size_key(s) for s in input_sizes)
        self.output_strides = tuple(output_strides)
        self.encoder_depth = encoder_depth

    def _choices(self) -> dict[str, tuple]:
        return {
            "encoder": self.encoders,
            "decoder": self.decoders,
            "input_size": self.input_sizes,
            "output_stride": self.output_strides,
        }

    def sample(self, trial: optuna.Trial) -> SMNASGenotype:
        """One categorical per decision (the output stride applies to dilating decoders only)."""
        p = {k: trial.suggest_categorical(k, v) for k, v in self._choices().items()}
        decoder = p["decoder"]
        return SMNASGenotype(
            encoder=p["encoder"],
            decoder=decoder,
            input_size=_size(p["input_size"]),
            encoder_depth=_DEPTH.get(decoder, self.encoder_depth),
            output_stride=dilated_stride(decoder, p["output_stride"]),
        )

    def params(self, genotype: SMNASGenotype) -> dict[str, object]:
        """The trial parameters of ``genotype``."""
        return {
            "encoder": genotype.encoder,
            "decoder": genotype.decoder,
            "input_size": _size_key(genotype.input_size),
            "output_stride": (
                genotype.output_stride
                if genotype.output_stride in self.output_strides
                else self.output_strides[0]
            ),
        }

    def mutate(self, genotype: SMNASGenotype, rng: Any) -> SMNASGenotype:
        """Change one of encoder, decoder, input size (SM-NAS's one-module mutation)."""
        params = self.params(genotype)
        keys = [
            k
            for k, v in self._choices().items()
            if len(v) > 1 and (k != "output_stride" or genotype.decoder in DILATING)
        ]
        key = rng.choice(keys)
        params[key] = rng.choice([c for c in self._choices()[key] if c != params[key]])
        return self.sample(_Fixed(params))


class ModularSpace(_Feasibility, MutableSpace):
    """Stage 2: a coded encoder (width, blocks, doublings) for a structure's decoder and input.

    Parameters per trial: ``decoder``, ``input_size`` (as in stage 1; a stage-2 study starts from
    enqueued stage-1 structures), ``base_width``, per stage ``s<i>_blocks`` (1..``max_blocks``)
    and ``s<i>_double`` (the block that doubles the width, ``-1`` none; stages 2–4 double at
    most once, as every ResNet code does), and ``decoder_channels``.

    Args:
        decoders: Decoder choices.
        input_sizes: ``(H, W)`` choices.
        base_widths: Base width choices (SM-NAS: 48, 56, 64, 72).
        decoder_channels: Decoder width choices (SM-NAS: 128, 256, 512).
        max_blocks: Blocks per stage at most.
        norm: ``gn_ws`` (GroupNorm + Weight Standardisation: training from scratch) or ``bn``.
        output_stride: Output stride of dilating decoders.
    """

    def __init__(
        self,
        decoders: Sequence[str] = DECODERS,
        input_sizes: Sequence[Sequence[int]] = ((512, 1024), (768, 1536), (1024, 2048)),
        base_widths: Sequence[int] = BASE_WIDTHS,
        decoder_channels: Sequence[int] = (128, 256, 512),
        max_blocks: int = 8,
        norm: str = "gn_ws",
        output_stride: int = 16,
    ) -> None:
        self.decoders = tuple(decoders)
        self.input_sizes = tuple(_size_key(s) for s in input_sizes)
        self.base_widths = tuple(base_widths)
        self.decoder_channels = tuple(decoder_channels)
        self.max_blocks = max_blocks
        self.norm = norm
        self.output_stride = output_stride

    def sample(self, trial: optuna.Trial) -> SMNASGenotype:
        """One categorical per decision."""
        decoder = trial.suggest_categorical("decoder", self.decoders)
        size = trial.suggest_categorical("input_size", self.input_sizes)
        base = trial.suggest_categorical("base_width", self.base_widths)
        stages = []
        for i in range(1, 5):
            blocks = trial.suggest_categorical(f"s{i}_blocks", tuple(range(1, self.max_blocks + 1)))
            double = trial.suggest_categorical(f"s{i}_double", tuple(range(-1, self.max_blocks)))
            stage = ["1"] * blocks
            if 0 <= double < blocks:
                stage[double] = "2"
            stages.append("".join(stage))
        channels = trial.suggest_categorical("decoder_channels", self.decoder_channels)
        return SMNASGenotype(
            encoder=CODED,
            decoder=decoder,
            input_size=_size(size),
            encoder_depth=_DEPTH.get(decoder, 5),
            output_stride=dilated_stride(decoder, self.output_stride),
            base_width=base,
            code="-".join(stages),
            decoder_channels=channels,
            norm=self.norm,
        )

    def params(self, genotype: SMNASGenotype) -> dict[str, object]:
        """The trial parameters of a coded genotype (at most one ``2`` per stage)."""
        if genotype.code is None:
            raise ConfigError(f"ModularSpace: {genotype.label} has no encoder code")
        out: dict[str, object] = {
            "decoder": genotype.decoder,
            "input_size": _size_key(genotype.input_size),
            "base_width": genotype.base_width,
        }
        for i, stage in enumerate(parse_code(genotype.code), start=1):
            if stage.count(2) > 1 or len(stage) > self.max_blocks:
                raise ConfigError(
                    f"ModularSpace: code {genotype.code!r} stage {i} is not in the space (at most "
                    f"{self.max_blocks} blocks and one doubling)"
                )
            out[f"s{i}_blocks"] = len(stage)
            out[f"s{i}_double"] = stage.index(2) if 2 in stage else -1
        out["decoder_channels"] = genotype.decoder_channels or self.decoder_channels[0]
        return out

    def mutate(self, genotype: SMNASGenotype, rng: Any) -> SMNASGenotype:
        """SM-NAS's code mutation (insert / remove a ``1``, move the ``2``), kept in the space."""
        for _ in range(50):
            code = mutate_code(genotype.code or "", rng)
            if all(len(s) <= self.max_blocks for s in parse_code(code)):
                params = {**self.params(genotype), **_stage_params(code)}
                return self.sample(_Fixed(params))
        raise ConfigError(f"ModularSpace: no mutation of {genotype.code!r} fits the space")

    def seed_from(self, genotype: SMNASGenotype) -> SMNASGenotype:
        """The stage-2 start of a stage-1 structure.

        Its decoder and input size, the ResNet code of its encoder's family (ResNet-18's for
        other encoders) at base width 64.
        """
        code = BASE_CODES.get(genotype.encoder, BASE_CODES["resnet18"])
        if any(len(s) > self.max_blocks for s in parse_code(code)):
            code = BASE_CODES["resnet18"]
        base = 64 if 64 in self.base_widths else self.base_widths[0]
        return self.sample(
            _Fixed(
                {
                    "decoder": genotype.decoder,
                    "input_size": _size_key(genotype.input_size),
                    "base_width": base,
                    **_stage_params(code),
                    "decoder_channels": 256 if 256 in self.decoder_channels
                    else self.decoder_channels[0],
                }
            )
        )  # fmt: skip


def _stage_params(code: str) -> dict[str, int]:
    out = {}
    for i, stage in enumerate(parse_code(code), start=1):
        out[f"s{i}_blocks"] = len(stage)
        out[f"s{i}_double"] = stage.index(2) if 2 in stage else -1
    return out


class _Fixed:
    """A stand-in trial that answers ``suggest_categorical`` from fixed parameters."""

    def __init__(self, params: dict[str, object]) -> None:
        self.params = params

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        value = self.params[name]
        if value not in choices:
            raise ConfigError(f"parameter {name}={value!r} is not among the choices {choices}")
        return value
