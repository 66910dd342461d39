"""SM-NAS stage-2 encoder codes: parse, validate, mutate (torch-free).

A code describes a ResNet-style encoder of four stages, e.g. ``"1-21-21-12"`` with a base width
of 64: stages are separated by ``-``; each character is one residual block; ``1`` keeps the
running width, ``2`` doubles it (the block's output width is twice its input's). Downsampling
stays at stage starts (the first block of stages 2–4 has stride 2; the stem takes the input to
1/4), so every code gives the same output strides 4, 8, 16, 32 — whatever the digits. (The public
SM-NAS code, ``vega``'s ``make_res_layer_from_code``, reads the digits as per-block *strides*;
in a segmentation model that would change the output stride, so the paper's width semantics is
followed instead.)

Example:
    >>> parse_code("1-21-21-12")
    ((1,), (2, 1), (2, 1), (1, 2))
    >>> stage_widths("1-21-21-12", 64)
    (64, 128, 256, 512)
    >>> block_widths("11-21-21-21", 64)
    ((64, 64), (128, 128), (256, 256), (512, 512))
"""

from __future__ import annotations

import random

__all__ = [
    "BASE_CODES",
    "BASE_WIDTHS",
    "NUM_STAGES",
    "block_widths",
    "mutate_code",
    "parse_code",
    "stage_widths",
    "validate_code",
]

NUM_STAGES = 4
BASE_WIDTHS: tuple[int, ...] = (48, 56, 64, 72)
"""Stage-2 base widths (SM-NAS: {48, 56, 64, 72})."""
MAX_BLOCKS_PER_STAGE = 24

BASE_CODES: dict[str, str] = {
    "resnet18": "11-21-21-21",
    "resnet34": "111-2111-211111-211",
    "resnet50": "111-2111-211111-211",
    "resnet101": "111-2111-21111111111111111111111-211",
}
"""The ResNet codes of ``vega``'s ``SmNasCodec`` (SM-NAS's stage-2 starting points)."""


def parse_code(code: str) -> tuple[tuple[int, ...], ...]:
    """The blocks of each stage (digits 1 or 2).

    Raises:
        ValueError: One line naming the code: a character other than ``1``, ``2``, ``-``, not
            four stages, an empty stage, or a stage of more than 24 blocks.
    """
    if not isinstance(code, str):
        raise ValueError(f"code {code!r}: expected a string such as '11-21-21-21'")
    bad = sorted(set(code) - set("12-"))
    if bad:
        raise ValueError(f"code {code!r}: bad characters {bad}; expected only '1', '2' and '-'")
    stages = code.split("-")
    if len(stages) != NUM_STAGES:
        raise ValueError(
            f"code {code!r}: {len(stages)} stages; expected {NUM_STAGES} separated by '-'"
        )
    for i, stage in enumerate(stages):
        if not stage:
            raise ValueError(f"code {code!r}: stage {i + 1} is empty; expected at least one block")
        if len(stage) > MAX_BLOCKS_PER_STAGE:
            raise ValueError(
                f"code {code!r}: stage {i + 1} has {len(stage)} blocks; expected at most "
                f"{MAX_BLOCKS_PER_STAGE}"
            )
    return tuple(tuple(int(c) for c in stage) for stage in stages)


def block_widths(code: str, base_width: int) -> tuple[tuple[int, ...], ...]:
    """The output width of every block, stage by stage (the running width starts at the base)."""
    width = base_width
    out = []
    for stage in parse_code(code):
        widths = []
        for digit in stage:
            width *= digit
            widths.append(width)
        out.append(tuple(widths))
    return tuple(out)


def stage_widths(code: str, base_width: int) -> tuple[int, ...]:
    """The output width of each stage (its last block's)."""
    return tuple(stage[-1] for stage in block_widths(code, base_width))


def validate_code(
    code: str, base_width: int, groups: int | None = None, max_width: int = 4096
) -> None:
    """Check ``code`` with ``base_width``.

    It must parse, keep every width ≤ ``max_width`` and, with ``groups`` (GroupNorm), every
    width divisible by ``groups``.

    Raises:
        ValueError: One line naming the code and the offending width.
    """
    if isinstance(base_width, bool) or not isinstance(base_width, int) or base_width < 1:
        raise ValueError(f"code {code!r}: base width {base_width!r}; expected a positive integer")
    if groups and base_width % groups:
        raise ValueError(
            f"code {code!r} with base {base_width}: stem width {base_width} is not divisible by "
            f"{groups} GroupNorm groups"
        )
    for stage, widths in enumerate(block_widths(code, base_width), start=1):
        for width in widths:
            if width > max_width:
                raise ValueError(
                    f"code {code!r} with base {base_width}: stage {stage} reaches width {width}; "
                    f"expected at most {max_width}"
                )
            if groups and width % groups:
                raise ValueError(
                    f"code {code!r} with base {base_width}: width {width} (stage {stage}) is not "
                    f"divisible by {groups} GroupNorm groups"
                )


def mutate_code(code: str, rng: random.Random) -> str:
    """One of SM-NAS's mutations, applied to one random stage, always giving a valid code.

    Insert a ``1`` at a random position, remove a random ``1`` (never emptying a stage), or swap
    a random ``2`` with another position of its stage; a mutation that would leave the code
    unchanged or invalid is redrawn.
    """
    stages = [list(s) for s in code.split("-")]
    parse_code(code)
    for _ in range(100):
        i = rng.randrange(len(stages))
        stage = list(stages[i])
        move = rng.choice(("insert", "remove", "swap"))
        if move == "insert" and len(stage) < MAX_BLOCKS_PER_STAGE:
            stage.insert(rng.randrange(len(stage) + 1), "1")
        elif move == "remove" and stage.count("1") and len(stage) > 1:
            ones = [k for k, c in enumerate(stage) if c == "1"]
            del stage[rng.choice(ones)]
        elif move == "swap" and "2" in stage and len(stage) > 1:
            k = rng.choice([k for k, c in enumerate(stage) if c == "2"])
            j = rng.randrange(len(stage))
            stage[k], stage[j] = stage[j], stage[k]
        else:
            continue
        child = "-".join("".join(s) if n != i else "".join(stage) for n, s in enumerate(stages))
        if child != code:
            parse_code(child)
            return child
    raise ValueError(f"code {code!r}: no mutation found")
