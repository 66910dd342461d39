"""A small discrete space and a closed-form evaluator: the engine's tests run real Optuna
studies on them without training networks (DPC's real study is tested in tests/methods/dpc).

The genotype is a chain of ``length`` choices from ``OPS``; its score is the number of positions
holding the op ``TARGET_OPS[i]`` (so the optimum is known), plus an optional sleep that makes a
trial long enough to kill a worker in the middle of it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from lightning_nas.genotypes import Genotype, field_error
from lightning_nas.strategies import Evaluator, MutableSpace

OPS = ("a", "b", "c", "d")
TARGET = ("c", "a", "d", "b", "c", "a")


@dataclass(frozen=True)
class ToyGenotype(Genotype):
    """A chain of ops."""

    kind: ClassVar[str] = "toy_chain"
    version: ClassVar[int] = 1
    network: ClassVar[str] = "torch.nn.Identity"
    ops: tuple[str, ...]

    @classmethod
    def _convert(cls, fields: dict[str, Any], source: str) -> dict[str, Any]:
        return {"ops": tuple(fields["ops"])}

    @classmethod
    def _validate(cls, fields: Mapping[str, Any], source: str) -> None:
        for i, op in enumerate(fields["ops"]):
            if op not in OPS:
                raise field_error(source, f"ops[{i}]", f"unknown op {op!r}")


class ToySpace(MutableSpace):
    """``length`` categorical decisions; genotypes with ``forbid`` at position 0 are infeasible.

    Args:
        length: Number of decisions (at most ``len(TARGET)``).
        forbid: An op that makes a genotype infeasible at position 0 (``None``: all feasible).
    """

    def __init__(self, length: int = 4, forbid: str | None = None) -> None:
        self.length = length
        self.forbid = forbid

    def sample(self, trial: Any) -> ToyGenotype:
        return ToyGenotype(
            tuple(trial.suggest_categorical(f"op{i}", OPS) for i in range(self.length))
        )

    def params(self, genotype: ToyGenotype) -> dict[str, object]:
        return {f"op{i}": op for i, op in enumerate(genotype.ops)}

    def mutate(self, genotype: ToyGenotype, rng: Any) -> ToyGenotype:
        i = rng.randrange(self.length)
        op = rng.choice([o for o in OPS if o != genotype.ops[i]])
        return ToyGenotype(genotype.ops[:i] + (op,) + genotype.ops[i + 1 :])

    def constraints(self, genotype: ToyGenotype) -> dict[str, float]:
        return {"forbidden_first_op": 1.0 if genotype.ops[0] == self.forbid else 0.0}

    def constraint_reason(self, genotype: ToyGenotype) -> str | None:
        bad = genotype.ops[0] == self.forbid
        return f"op {self.forbid!r} may not come first" if bad else None


def score(genotype: ToyGenotype) -> int:
    """Positions matching the target chain."""
    return sum(op == t for op, t in zip(genotype.ops, TARGET))


class ToyEvaluator(Evaluator):
    """Closed-form objectives: ``matches`` (maximise) and, with two objectives, ``cost``.

    Args:
        objectives: ``["matches"]`` or ``["matches", "cost"]`` (cost = number of ``d`` ops).
        sleep: Seconds each evaluation sleeps (to kill a worker mid-trial in tests).
        marker_dir: If set, each evaluation writes ``<pid>_<trial>.started`` there when it starts
            and ``.done`` when it ends (what the kill tests wait for).
    """

    def __init__(
        self, objectives: tuple[str, ...] = ("matches",), sleep: float = 0.0, marker_dir: str = ""
    ) -> None:
        self.objectives = tuple(objectives)
        self.sleep = sleep
        self.marker_dir = marker_dir

    @property
    def directions(self) -> tuple[str, ...]:
        return tuple("maximize" if o == "matches" else "minimize" for o in self.objectives)

    def __call__(self, genotype: ToyGenotype, run_dir: Path, trial: Any = None) -> list[float]:
        number = trial.number if trial is not None else -1
        marker = Path(self.marker_dir) / f"{os.getpid()}_{number}" if self.marker_dir else None
        if marker is not None:
            marker.with_suffix(".started").write_text(" ".join(genotype.ops))
        time.sleep(self.sleep)
        values = [float(score(genotype)), float(genotype.ops.count("d"))][: len(self.objectives)]
        if marker is not None:
            marker.with_suffix(".done").write_text(" ".join(genotype.ops))
        return values
