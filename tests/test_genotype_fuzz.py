"""Fuzzing the genotype files: a mutated genotype is valid, or a one-line :class:`GenotypeError`.

Every genotype YAML of ``experiments/genotypes/`` and two SM-NAS genotypes (stage 1 and a coded
stage 2) are mutated at random paths: keys removed or added, values replaced by the wrong type
(``None``, strings, floats, booleans, huge or negative integers, lists, mappings, nested junk),
out-of-range integers, unknown or other kinds' op names, lists cut, grown or emptied, the
``kind`` and ``version`` swapped. :func:`~lightning_nas.genotypes.from_dict` (and
:func:`~lightning_nas.genotypes.load`, through a YAML file, also after mutating the file's text
or bytes) must return a genotype that round-trips, or raise :class:`GenotypeError` with one line
that names the source: never a ``TypeError``, ``KeyError``, ``IndexError`` or a traceback from
deep inside torch. Valid mutants are built (tiny) for a bounded number of examples: building
raises nothing but ``GenotypeError`` / ``ConfigError``, with one line.

Deterministic (``derandomize=True``), no example database; the file runs in a few seconds.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lightning_nas import genotypes
from lightning_nas.errors import ConfigError
from lightning_nas.genotypes import GenotypeError
from lightning_nas.methods.autodeeplab.genotype import AUTODEEPLAB_PRIMITIVES
from lightning_nas.methods.darts.genotype import DARTS_PRIMITIVES
from lightning_nas.methods.dpc.genotype import OP_NAMES as DPC_OPS
from lightning_nas.methods.fasterseg.genotype import FASTERSEG_PRIMITIVES
from lightning_nas.methods.smnas.genotype import DECODERS, SMNASGenotype

GENOTYPE_DIR = Path(__file__).resolve().parents[1] / "experiments" / "genotypes"
SOURCE = "fuzz.yaml"

SMNAS_BASES = {
    "smnas_stage1": SMNASGenotype(encoder="resnet18", decoder="FPN", input_size=(64, 64)),
    "smnas_stage2": SMNASGenotype(
        encoder="coded", decoder="Unet", input_size=(64, 64), base_width=8, code="1-1-1-1",
        decoder_channels=16, norm="gn_ws",
    ),
}  # fmt: skip
BASES: dict[str, dict[str, Any]] = {
    **{p.stem: yaml.safe_load(p.read_text()) for p in sorted(GENOTYPE_DIR.glob("*.yaml"))},
    **{name: g.to_dict() for name, g in SMNAS_BASES.items()},
}
NAMES = sorted(BASES)

# Tiny network arguments of each kind, for building valid mutants.
SMALL: dict[str, dict[str, Any]] = {
    "darts": {"C": 4, "layers": 3},
    "autodeeplab": {"filter_multiplier": 4, "aspp_channels": 8, "decoder_channels": 8},
    "dpc": {"channels": 8, "encoder_name": "tu-mobilenetv3_small_050"},
    "fasterseg": {"Fch": 2, "aux_heads": False},
    "smnas": {},
}

# Names a mutant may use where an op, a decoder, an encoder or a kind is expected: every kind's
# vocabulary (so another kind's op), near misses and junk.
WORDS = sorted(
    {*DARTS_PRIMITIVES, *AUTODEEPLAB_PRIMITIVES, *DPC_OPS, *FASTERSEG_PRIMITIVES, *DECODERS}
    | {"conv_9x9", "SEP_CONV_3X3", "sep_conv_3x3 ", "", " ", "none", "null", "coded", "bn"}
    | {"gn_ws", "resnet18", "mit_b0", "vgg11", "tu-not_a_model", "resnet18\nFPN", "a\rb"}
    | {"darts", "dpc", "smnas", "fasterseg", "autodeeplab", "kind", "version", "11-21-21-21"}
    | {"1-1-1-1", "2-2-2-2", "12-x-1-1", "1--1-1"}
)
EDGE_INTS = [-(2**63), -(10**9), -2, -1, 0, 1, 2, 3, 4, 5, 8, 12, 13, 16, 21, 32, 64, 10**9, 2**63]

_text = st.text(st.characters(codec="utf-8"), max_size=12)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from(EDGE_INTS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 1.0, 2.0, 8.0, 16.0, -1.0, 0.5]),
    _text,
    st.sampled_from(WORDS),
)
JUNK = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
JUNK_KEYS = st.one_of(_text, st.sampled_from(["kind", "extra", "a\nb", "normal ", "0"]))

MUTATIONS = ("delete", "junk", "int", "word", "resize", "extra_key", "wrap", "swap", "header")

# Each kind's own words, for the mild mutations of the build test (which mostly stay valid).
VOCABULARY: dict[str, tuple[str, ...]] = {
    "darts": DARTS_PRIMITIVES,
    "autodeeplab": AUTODEEPLAB_PRIMITIVES,
    "dpc": DPC_OPS,
    "fasterseg": FASTERSEG_PRIMITIVES,
    "smnas": (*DECODERS, "resnet18", "mobilenet_v2", "mit_b0", "coded", "bn", "gn_ws", "1-1-2-1"),
}


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (keys and indices) into ``node``, the root ``()`` first."""
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


def _get(root: Any, path: tuple) -> Any:
    for key in path:
        root = root[key]
    return root


def _set(root: Any, path: tuple, value: Any) -> Any:
    """``root`` with the node at ``path`` replaced by ``value`` (in place unless at the root)."""
    if not path:
        return value
    _get(root, path[:-1])[path[-1]] = value
    return root


def _nudge(draw: Any, root: dict[str, Any]) -> dict[str, Any]:
    """A mild mutation: one field's leaf moved to a neighbouring integer or a word of its kind."""
    leaves = [p for p in _paths(root) if p and p[0] not in ("kind", "version")]
    leaves = [p for p in leaves if not isinstance(_get(root, p), dict | list)]
    path = draw(st.sampled_from(leaves))
    node = _get(root, path)
    if isinstance(node, str):
        return _set(root, path, draw(st.sampled_from(VOCABULARY.get(root["kind"], WORDS))))
    if isinstance(node, int):
        return _set(root, path, node + draw(st.integers(-2, 2)))
    return _set(root, path, draw(st.sampled_from([None, 8, 16, 32, 64])))


def _mutate(draw: Any, root: Any, mild: bool) -> Any:
    """One random mutation of ``root`` (a deep copy is mutated in place and returned)."""
    if mild:
        return _nudge(draw, root)
    how = draw(st.sampled_from(MUTATIONS))
    paths = _paths(root)
    path = draw(st.sampled_from(paths))
    node = _get(root, path)
    if how == "delete":
        if not path:
            return draw(JUNK)
        del _get(root, path[:-1])[path[-1]]
        return root
    if how == "junk":
        return _set(root, path, draw(JUNK))
    if how == "int":
        return _set(root, path, draw(st.sampled_from(EDGE_INTS) | st.integers(-5, 70)))
    if how == "word":
        return _set(root, path, draw(st.sampled_from(WORDS)))
    if how == "resize":
        if not isinstance(node, list):
            return _set(root, path, [node] * draw(st.integers(0, 3)))
        what = draw(st.sampled_from(["cut", "copy", "append", "empty", "reverse"]))
        if what == "cut" and node:
            node.pop(draw(st.integers(0, len(node) - 1)))
        elif what == "copy" and node:
            node.insert(draw(st.integers(0, len(node))), copy.deepcopy(draw(st.sampled_from(node))))
        elif what == "append":
            node.append(draw(JUNK))
        elif what == "empty":
            node.clear()
        else:
            node.reverse()
        return root
    if how == "extra_key":
        target = node if isinstance(node, dict) else root
        if isinstance(target, dict):
            target[draw(JUNK_KEYS)] = draw(JUNK)
            return root
        return _set(root, path, {draw(JUNK_KEYS): node})
    if how == "wrap":
        return _set(root, path, draw(st.sampled_from([[node], {"value": node}, [node, node]])))
    if how == "swap":  # a value from elsewhere in the same document
        other = copy.deepcopy(_get(root, draw(st.sampled_from(paths))))
        return _set(root, path, other)
    # header: the kind and version keys
    if not isinstance(root, dict):
        return root
    key = draw(st.sampled_from(["kind", "version"]))
    root[key] = draw(st.sampled_from([*WORDS, *EDGE_INTS, None, 1.0, "1", [1], {"v": 1}]))
    return root


@st.composite
def mutants(draw: Any, name: str, mild: bool = False) -> Any:
    """A genotype dict of ``BASES[name]`` after one to three random (or mild) mutations."""
    d = copy.deepcopy(BASES[name])
    for _ in range(draw(st.integers(1, 2 if mild else 3))):
        d = _mutate(draw, d, mild)
    return d


def assert_one_line(err: Exception, source: str) -> None:
    """The project's error style: one non-empty line naming ``source``."""
    message = str(err)
    assert message.splitlines() == [message], f"multi-line message: {message!r}"
    assert message.startswith(f"{source}: "), f"source {source!r} not named: {message!r}"
    assert len(message) < 1000, f"message of {len(message)} characters: {message[:200]!r}..."


def _leaves(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return [leaf for value in node.values() for leaf in _leaves(value)]
    if isinstance(node, list):
        return [leaf for value in node for leaf in _leaves(value)]
    return [node]


def assert_valid(g: genotypes.Genotype) -> None:
    """A genotype round-trips and holds only integers, one-line strings and ``None``."""
    assert isinstance(g, genotypes.Genotype)
    d = g.to_dict()
    assert genotypes.from_dict(d, SOURCE) == g
    assert genotypes.from_dict(yaml.safe_load(yaml.safe_dump(d))) == g
    for leaf in _leaves(d):
        assert leaf is None or type(leaf) in (int, str), f"{type(leaf).__name__} {leaf!r} in {d}"
        assert not isinstance(leaf, str) or (leaf.isprintable() and leaf), f"{leaf!r} in {d}"


def outcome(d: Any, source: str = SOURCE) -> genotypes.Genotype | None:
    """The genotype of ``d`` (checked by :func:`assert_valid`), or ``None`` after a clean error."""
    try:
        g = genotypes.from_dict(d, source)
    except GenotypeError as err:
        assert_one_line(err, source)
        return None
    assert_valid(g)
    return g


def load_outcome(path: Path) -> genotypes.Genotype | None:
    """:func:`genotypes.load` of ``path``: a genotype that round-trips, or a clean error."""
    try:
        g = genotypes.load(path)
    except GenotypeError as err:
        assert_one_line(err, str(path))
        return None
    assert_valid(g)
    return g


FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize("name", NAMES)
def test_bases_are_valid(name: str) -> None:
    assert outcome(copy.deepcopy(BASES[name])) is not None


@pytest.mark.parametrize("name", NAMES)
@settings(FUZZ, max_examples=100)
@given(data=st.data())
def test_mutated_dict_is_valid_or_one_line_error(name: str, data: st.DataObject) -> None:
    outcome(data.draw(mutants(name)))


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("genotype_fuzz")


@pytest.mark.parametrize("name", NAMES)
@settings(FUZZ, max_examples=25)
@given(data=st.data())
def test_mutated_yaml_file_loads_or_one_line_error(
    name: str, data: st.DataObject, fuzz_dir: Path
) -> None:
    """Through a file: mutated data dumped as YAML, or the YAML text or bytes mutated."""
    path = fuzz_dir / f"{name}.yaml"
    how = data.draw(st.sampled_from(["data", "text", "bytes"]))
    if how == "data":
        path.write_text(yaml.safe_dump(data.draw(mutants(name)), allow_unicode=True))
    elif how == "text":
        text = yaml.safe_dump(BASES[name], default_flow_style=None)
        at = data.draw(st.integers(0, len(text)))
        edit = data.draw(st.sampled_from(["cut", "insert", "drop_line", "tag"]))
        if edit == "cut":
            text = text[:at]
        elif edit == "insert":
            text = text[:at] + data.draw(st.sampled_from("[]{}:-&*!|>'\"%@`\t\n#,?")) + text[at:]
        elif edit == "drop_line":
            lines = text.splitlines(keepends=True)
            del lines[data.draw(st.integers(0, len(lines) - 1))]
            text = "".join(lines)
        else:
            text = text + "extra: !!python/object/apply:os.getcwd []\n"
        path.write_text(text)
    else:
        raw = yaml.safe_dump(BASES[name]).encode()
        at = data.draw(st.integers(0, len(raw)))
        junk = data.draw(st.sampled_from([b"\xff", b"\x00", b"\xc3", b"\xef\xbb\xbf", b"\x1b["]))
        path.write_bytes(raw[:at] + junk + raw[at:])
    load_outcome(path)


@pytest.mark.parametrize("name", NAMES)
@settings(FUZZ, max_examples=8)
@given(data=st.data())
def test_valid_mutants_build_or_raise_config_error(name: str, data: st.DataObject) -> None:
    """A mildly mutated genotype that validates builds, or fails with a one-line error."""
    g = outcome(data.draw(mutants(name, mild=True)))
    if g is None:
        event("invalid genotype")
        return
    try:
        genotypes.build_network(g, num_classes=3, **SMALL.get(g.kind, {}))
    except (GenotypeError, ConfigError) as err:
        event("refused by the network")
        message = str(err)
        assert message and message.splitlines() == [message], repr(message)
    else:
        event("built")


# ---------------------------------------------------------------- bugs the fuzzer found, pinned
def _with(name: str, path: tuple, value: Any) -> dict[str, Any]:
    return _set(copy.deepcopy(BASES[name]), path, value)


REGRESSIONS = {
    # an unknown key with a line break was printed as is (a two-line message)
    "newline_key": ({**BASES["darts_v2"], "a\nb": 1}, "'a\\nb': unexpected key"),
    "control_char_key": ({**BASES["darts_v2"], "\x1e": 1}, "'\\x1e': unexpected key"),
    # a list where DPC expects an op name: TypeError (unhashable) from the op-table lookup
    "dpc_op_list": (_with("dpc_cityscapes", ("branches", 1, 1), ["sep_conv3x3"]), "[1][1]"),
    # SM-NAS accepted a float output stride (16.0 == 16) and unbounded widths and sizes, which
    # then tried to allocate terabytes when built
    "smnas_float_stride": (
        {**BASES["smnas_stage1"], "decoder": "PAN", "output_stride": 16.0},
        "output_stride: got 16.0",
    ),
    "smnas_huge_channels": ({**BASES["smnas_stage1"], "decoder_channels": 10**6}, "1..4096"),
    "smnas_huge_input": ({**BASES["smnas_stage1"], "input_size": [10**6, 64]}, "1..8192"),
    # an encoder name with a line break was valid; smp's error naming it had two lines
    "smnas_encoder_newline": ({**BASES["smnas_stage1"], "encoder": "resnet18\nFPN"}, "encoder"),
    "smnas_code_list": ({**BASES["smnas_stage2"], "code": [[1] * 9] * 9}, "code: got [[1"),
    "smnas_base_width_str": ({**BASES["smnas_stage2"], "base_width": "8"}, "base_width"),
}


@pytest.mark.parametrize("case", sorted(REGRESSIONS))
def test_found_bugs_stay_fixed(case: str) -> None:
    d, fragment = REGRESSIONS[case]
    with pytest.raises(GenotypeError) as info:
        genotypes.from_dict(d, SOURCE)
    assert_one_line(info.value, SOURCE)
    assert fragment in str(info.value)


def test_yaml_alias_bomb_fails_fast_with_a_short_message(tmp_path: Path) -> None:
    """A billion-laughs file: 9**9 list items by reference. Its repr in the message took hours."""
    levels = "\n".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10))
    path = tmp_path / "bomb.yaml"
    path.write_text(
        "kind: darts\nversion: 1\nl0: &l0 [lol]\n" + levels + "\nnormal: [*l9, *l9]\n"
        "normal_concat: *l9\nreduce: *l9\nreduce_concat: *l9\n"
    )
    with pytest.raises(GenotypeError) as info:
        genotypes.load(path)
    assert_one_line(info.value, str(path))
    data = yaml.safe_load(path.read_text())
    del data["l0"]
    for i in range(1, 10):
        del data[f"l{i}"]
    with pytest.raises(GenotypeError) as info:
        genotypes.from_dict(data, SOURCE)
    assert_one_line(info.value, SOURCE)


@pytest.mark.parametrize(
    "content",
    [b"kind: darts\nversion: 1\nnormal: \xff\n", b"\xfe\xff\x00k", ("[" * 1000).encode()],
    ids=["invalid_utf8", "bad_bom", "nested_1000"],
)
def test_unreadable_yaml_is_a_genotype_error(content: bytes, tmp_path: Path) -> None:
    """Not UTF-8 (was UnicodeDecodeError) or nested too deeply (was RecursionError)."""
    path = tmp_path / "g.yaml"
    path.write_bytes(content)
    with pytest.raises(GenotypeError) as info:
        genotypes.load(path)
    assert_one_line(info.value, str(path))
