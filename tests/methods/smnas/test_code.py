"""SM-NAS stage-2 codes: parsing, hand-computed widths, one-line errors, mutation properties."""

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightning_nas.methods.smnas.code import (
    BASE_CODES,
    BASE_WIDTHS,
    MAX_BLOCKS_PER_STAGE,
    NUM_STAGES,
    block_widths,
    mutate_code,
    parse_code,
    stage_widths,
    validate_code,
)
from lightning_nas.methods.smnas.genotype import GN_GROUPS


# ------------------------------------------------------------------------- parsing
def test_parse_code_reads_digits_per_stage() -> None:
    assert parse_code("1-21-21-12") == ((1,), (2, 1), (2, 1), (1, 2))
    assert parse_code("2-1-1-1") == ((2,), (1,), (1,), (1,))


@pytest.mark.parametrize("arch", sorted(BASE_CODES))
def test_base_codes_parse_to_four_stages(arch: str) -> None:
    stages = parse_code(BASE_CODES[arch])
    assert len(stages) == NUM_STAGES
    validate_code(BASE_CODES[arch], 64, groups=GN_GROUPS)


def test_base_codes_have_resnets_block_counts() -> None:
    """torchvision's ResNet layer counts: 18 → 2,2,2,2; 34/50 → 3,4,6,3; 101 → 3,4,23,3."""
    blocks = {arch: tuple(len(s) for s in parse_code(c)) for arch, c in BASE_CODES.items()}
    assert blocks == {
        "resnet18": (2, 2, 2, 2),
        "resnet34": (3, 4, 6, 3),
        "resnet50": (3, 4, 6, 3),
        "resnet101": (3, 4, 23, 3),
    }


def test_resnet18_code_with_base_64_has_resnet18_widths() -> None:
    assert stage_widths(BASE_CODES["resnet18"], 64) == (64, 128, 256, 512)
    assert block_widths(BASE_CODES["resnet18"], 64) == (
        (64, 64),
        (128, 128),
        (256, 256),
        (512, 512),
    )


def test_block_widths_hand_computed() -> None:
    # base 48, "1-21-21-12": 48 | 96, 96 | 192, 192 | 192, 384
    assert block_widths("1-21-21-12", 48) == ((48,), (96, 96), (192, 192), (192, 384))
    assert stage_widths("1-21-21-12", 48) == (48, 96, 192, 384)
    # base 56, "22-1-121-1": 112, 224 | 224 | 224, 448, 448 | 448
    assert block_widths("22-1-121-1", 56) == ((112, 224), (224,), (224, 448, 448), (448,))
    assert stage_widths("22-1-121-1", 56) == (224, 224, 448, 448)


# ---------------------------------------------------------------------- one-line errors
@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        ("11-2a-21-21", "bad characters ['a']"),
        ("11 21 21 21", "bad characters [' ']"),
        ("11-21-21", "3 stages; expected 4"),
        ("1-11-21-21-21", "5 stages; expected 4"),
        ("11--21-21", "stage 2 is empty"),
        ("11-21-21-", "stage 4 is empty"),
        ("", "1 stages; expected 4"),
        ("1" * 25 + "-2-2-2", "stage 1 has 25 blocks; expected at most 24"),
    ],
)
def test_parse_errors_are_one_line_naming_the_code(code: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_code(code)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"code {code!r}:")
    assert fragment in message


def test_parse_rejects_a_non_string() -> None:
    with pytest.raises(ValueError, match="expected a string"):
        parse_code(11212121)  # type: ignore[arg-type]


def test_width_not_divisible_by_gn_groups() -> None:
    """Base 60 = 8·7 + 4: the stem width itself breaks 8 GroupNorm groups; BN has no such rule."""
    validate_code("11-21-21-21", 60)  # fine without groups
    with pytest.raises(ValueError) as info:
        validate_code("11-21-21-21", 60, groups=GN_GROUPS)
    message = str(info.value)
    assert "\n" not in message
    assert message == (
        "code '11-21-21-21' with base 60: stem width 60 is not divisible by 8 GroupNorm groups"
    )
    # Doubling keeps divisibility: with base 12, block widths 12 and 24 are checked in order.
    with pytest.raises(ValueError, match="stem width 12 is not divisible"):
        validate_code("11-21-21-21", 12, groups=GN_GROUPS)
    validate_code("21-21-21-21", 56, groups=GN_GROUPS)


def test_stem_width_not_divisible_by_gn_groups() -> None:
    with pytest.raises(ValueError, match="stem width 12 is not divisible by 8 GroupNorm groups"):
        validate_code("21-21-21-21", 12, groups=GN_GROUPS)


def test_width_over_the_maximum_names_the_stage() -> None:
    """Base 72 with six doublings: 144 | 288, 576 | 1152, 2304 | 4608 > 4096 in stage 4."""
    with pytest.raises(ValueError) as info:
        validate_code("2-22-22-21", 72)
    assert str(info.value) == (
        "code '2-22-22-21' with base 72: stage 4 reaches width 4608; expected at most 4096"
    )
    validate_code("2-22-22-11", 72)  # five doublings: 2304 is fine
    validate_code("2-22-22-21", 72, max_width=4608)


@pytest.mark.parametrize("base", [0, -64, True, 64.0, "64"])
def test_bad_base_width(base: object) -> None:
    with pytest.raises(ValueError, match=r"^code '11-21-21-21': base width .*positive integer$"):
        validate_code("11-21-21-21", base)  # type: ignore[arg-type]


# -------------------------------------------------------------------------- mutation
def _max_doublings(base: int, max_width: int = 4096) -> int:
    return int(math.log2(max_width / base))


@st.composite
def valid_codes(draw: st.DrawFn) -> tuple[str, int]:
    """4 stages of 1..6 blocks, base from BASE_WIDTHS, few enough '2's to stay ≤ 4096."""
    base = draw(st.sampled_from(BASE_WIDTHS))
    lengths = draw(st.lists(st.integers(1, 6), min_size=NUM_STAGES, max_size=NUM_STAGES))
    total = sum(lengths)
    twos = draw(st.sets(st.integers(0, total - 1), max_size=min(total, _max_doublings(base))))
    chars = ["2" if i in twos else "1" for i in range(total)]
    stages, start = [], 0
    for n in lengths:
        stages.append("".join(chars[start : start + n]))
        start += n
    return "-".join(stages), base


def _one_less_one(longer: str, shorter: str) -> bool:
    """``shorter`` is ``longer`` with one '1' removed."""
    return len(longer) == len(shorter) + 1 and any(
        longer[i] == "1" and longer[:i] + longer[i + 1 :] == shorter for i in range(len(longer))
    )


def _one_swap(a: str, b: str) -> bool:
    if len(a) != len(b):
        return False
    diff = [i for i in range(len(a)) if a[i] != b[i]]
    return len(diff) == 2 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]


@settings(max_examples=300, deadline=None)
@given(parent=valid_codes(), seed=st.integers(0, 2**32 - 1))
def test_mutate_code_is_one_valid_move_in_one_stage(parent: tuple[str, int], seed: int) -> None:
    code, base = parent
    validate_code(code, base)  # the strategy's own promise
    child = mutate_code(code, random.Random(seed))

    assert child != code
    assert len(parse_code(child)) == NUM_STAGES
    validate_code(child, base)  # the number of '2's never changes: widths stay ≤ 4096
    validate_code(child, base, groups=GN_GROUPS)  # every base of BASE_WIDTHS is a multiple of 8

    old, new = code.split("-"), child.split("-")
    changed = [i for i in range(NUM_STAGES) if old[i] != new[i]]
    assert len(changed) == 1
    a, b = old[changed[0]], new[changed[0]]
    inserted = _one_less_one(b, a)
    removed = _one_less_one(a, b)
    swapped = _one_swap(a, b) and "2" in a
    assert inserted + removed + swapped == 1, (a, b)
    assert len(b) <= MAX_BLOCKS_PER_STAGE


def test_mutate_code_is_deterministic_per_seed() -> None:
    code = BASE_CODES["resnet34"]
    assert mutate_code(code, random.Random(3)) == mutate_code(code, random.Random(3))
    children = {mutate_code(code, random.Random(s)) for s in range(50)}
    assert len(children) > 10


def test_mutate_code_rejects_an_invalid_parent() -> None:
    with pytest.raises(ValueError, match="^code '11-21-21': 3 stages"):
        mutate_code("11-21-21", random.Random(0))
