"""Loading is safe: no file a user names can run code (``docs/security.md``).

1. An AST scan of ``lightning_nas/`` and ``callbacks/``: every ``torch.load`` passes
   ``weights_only=True`` literally, nothing passes ``weights_only=False`` or
   ``allow_pickle=True``, and there is no ``yaml.load`` / ``unsafe_load`` / ``full_load``, no
   ``pickle.load(s)`` / ``Unpickler``, no ``dill`` / ``cloudpickle`` / ``shelve`` / ``marshal`` /
   ``joblib``, no ``eval`` / ``exec`` / ``compile``.
2. A malicious pickle (an object whose ``__reduce__`` creates a marker file) in a checkpoint is
   refused by every loader that takes a user path: the marker never appears, and ours raise a
   one-line :class:`~lightning_nas.errors.ConfigError` naming the file.
3. YAML ``!!python/object`` tags in a genotype or where a latency table is expected are refused
   without running anything.
"""

from __future__ import annotations

import ast
import builtins
import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from lightning_nas.errors import ConfigError
from lightning_nas.genotypes import GenotypeError
from lightning_nas.genotypes import load as load_genotype
from lightning_nas.latency.table import LatencyTable, LatencyTableError
from lightning_nas.methods.fasterseg.release import load_released_arch
from lightning_nas.proxy.cache import check_cache, smp_encoder_feature
from lightning_nas.weights import load_torch_file, load_weights

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("lightning_nas", "callbacks")
RELEASE_JSON = ROOT / "experiments" / "genotypes" / "fasterseg_released_arch_params.json"

# (file relative to the repository, call) -> why it is allowed. Empty: nothing needs it.
ALLOWED: dict[tuple[str, str], str] = {}

FORBIDDEN_CALLS = {
    "yaml.load": "use yaml.safe_load",
    "yaml.load_all": "use yaml.safe_load_all",
    "yaml.unsafe_load": "runs arbitrary Python from YAML tags",
    "yaml.unsafe_load_all": "runs arbitrary Python from YAML tags",
    "yaml.full_load": "use yaml.safe_load",
    "yaml.full_load_all": "use yaml.safe_load_all",
    "pickle.load": "unpickling runs code",
    "pickle.loads": "unpickling runs code",
    "pickle.Unpickler": "unpickling runs code",
    "eval": "runs a string as code",
    "exec": "runs a string as code",
    "compile": "compiles a string as code",
}
FORBIDDEN_MODULES = ("dill", "cloudpickle", "shelve", "marshal", "joblib", "cPickle", "_pickle")


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` for a Name / Attribute chain, else ``""``."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _is_true(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _sources() -> list[Path]:
    files = [p for folder in SCANNED for p in sorted((ROOT / folder).rglob("*.py"))]
    assert len(files) > 50, files  # the scan sees the package
    return files


def _problems(path: Path) -> tuple[list[str], int]:
    """Why ``path`` fails the scan (one line each), and how many ``torch.load`` calls it has."""
    rel = path.relative_to(ROOT).as_posix()
    tree = ast.parse(path.read_text(), filename=rel)
    aliases: dict[str, str] = {}  # local name -> module or module.attr it was imported as
    out: list[str] = []
    torch_loads = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
                if alias.name.split(".")[0] in FORBIDDEN_MODULES:
                    out.append(f"{rel}:{node.lineno}: imports {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            top = node.module.split(".")[0]
            if top in FORBIDDEN_MODULES:
                out.append(f"{rel}:{node.lineno}: imports from {node.module}")
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        head, _, rest = name.partition(".")
        full = f"{aliases[head]}.{rest}" if head in aliases and rest else aliases.get(head, name)
        where = f"{rel}:{node.lineno}"
        keywords = {k.arg: k.value for k in node.keywords if k.arg}
        if (rel, full) in ALLOWED:
            continue
        if full in ("torch.load", "torch.serialization.load"):
            torch_loads += 1
            if not _is_true(keywords.get("weights_only", ast.Constant(None))):
                out.append(f"{where}: {name}(...) without weights_only=True")
        if full in FORBIDDEN_CALLS and (name == full or head in aliases):
            out.append(f"{where}: {name}(...): {FORBIDDEN_CALLS[full]}")
        if name in ("eval", "exec", "compile") and name not in aliases:
            out.append(f"{where}: {name}(...): {FORBIDDEN_CALLS[name]}")
        for key, bad in (("weights_only", False), ("allow_pickle", True)):
            value = keywords.get(key)
            if isinstance(value, ast.Constant) and value.value is bad:
                out.append(f"{where}: {name}(..., {key}={bad})")
            elif value is not None and not isinstance(value, ast.Constant):
                out.append(f"{where}: {name}(..., {key}=<not a literal>)")
    return sorted(set(out)), torch_loads


def test_package_loads_only_safely() -> None:
    problems: list[str] = []
    torch_loads = 0
    for path in _sources():
        found, count = _problems(path)
        problems += found
        torch_loads += count
    assert not problems, "\n".join(problems)
    assert torch_loads >= 1  # lightning_nas.weights.load_torch_file: the scan finds it


@pytest.mark.parametrize(
    "code",
    [
        "import torch\ntorch.load('x')",
        "import torch\ntorch.load('x', weights_only=False)",
        "from torch import load\nload('x')",
        "import torch as t\nt.load('x', weights_only=flag)",
        "import yaml\nyaml.load(s, Loader=yaml.SafeLoader)",
        "from yaml import unsafe_load\nunsafe_load(s)",
        "import pickle\npickle.loads(b)",
        "import numpy as np\nnp.load('x.npy', allow_pickle=True)",
        "import dill",
        "eval('1')",
        "x = exec",  # fine: not a call
    ],
)
def test_scan_catches_unsafe_calls(code: str, tmp_path: Path, monkeypatch) -> None:
    """The scan itself: each snippet but the last is flagged."""
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    path = tmp_path / "snippet.py"
    path.write_text(code + "\n")
    problems, _ = _problems(path)
    assert bool(problems) == (code != "x = exec"), problems


# ----------------------------------------------------------------------- malicious pickles
class Payload:
    """Unpickling this creates ``marker`` (``open(marker, "w")``): a stand-in for any code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (builtins.open, (str(self.marker), "w"))


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "PWNED"


def _evil(tmp_path: Path, marker: Path, legacy: bool = False, name: str = "evil.ckpt") -> Path:
    """A checkpoint-shaped file whose unpickling would create ``marker``."""
    path = tmp_path / name
    content = {
        "state_dict": {"network.weight": torch.zeros(1, 1), "network.bias": torch.zeros(1)},
        "hyper_parameters": {"network": Payload(marker)},
        "alpha_1_0": torch.zeros(2, 5),
    }
    torch.save(content, path, _use_new_zipfile_serialization=not legacy)
    return path


def test_the_payload_runs_when_unpickled_unsafely(tmp_path: Path, marker: Path) -> None:
    """Control: the payload is real (what ``weights_only=False`` would do)."""
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


def _assert_refused_one_line(err: BaseException, path: Path, marker: Path) -> None:
    message = str(err)
    assert not marker.exists(), "the payload ran"
    assert message.splitlines() == [message], message
    assert str(path) in message
    assert "weights_only=True" in message


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_weights_loader_refuses_a_malicious_checkpoint(
    legacy: bool, tmp_path: Path, marker: Path
) -> None:
    path = _evil(tmp_path, marker, legacy)
    with pytest.raises(ConfigError) as info:
        load_weights(nn.Linear(1, 1), path)
    _assert_refused_one_line(info.value, path, marker)
    with pytest.raises(ConfigError) as info:
        load_torch_file(path, "weights file")
    _assert_refused_one_line(info.value, path, marker)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_fasterseg_release_importer_refuses_a_malicious_file(
    legacy: bool, tmp_path: Path, marker: Path
) -> None:
    path = _evil(tmp_path, marker, legacy, name="arch_1.pt")
    with pytest.raises(ConfigError) as info:
        load_released_arch(path)
    _assert_refused_one_line(info.value, path, marker)


def _release_pt(tmp_path: Path, numpy_1_names: bool) -> Path:
    """The released ``arch_{0,1}.pt`` as the release writes them (legacy format, its tensors as
    ``nn.Parameter``, the mIoU as numpy floats), from the JSON copy of their values."""
    data = json.loads(RELEASE_JSON.read_text())
    path = tmp_path / "arch.pt"
    out: dict = {}
    for group, values in data.items():
        out[group] = {}
        for key, value in values.items():
            if isinstance(value, list):
                out[group][key] = nn.Parameter(torch.tensor(value, dtype=torch.float32))
            elif key.startswith("mIoU"):
                out[group][key] = np.float64(value)
            else:
                out[group][key] = float(value)
    buffer = io.BytesIO()
    torch.save(out, buffer, _use_new_zipfile_serialization=False)
    raw = buffer.getvalue()
    if numpy_1_names:  # as pickled under numpy 1 (the release's era)
        assert b"numpy._core.multiarray" in raw
        raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    path.write_bytes(raw)
    return path


@pytest.mark.parametrize("numpy_1_names", [False, True], ids=["numpy2", "numpy1"])
def test_fasterseg_release_pt_still_loads_with_weights_only(
    numpy_1_names: bool, tmp_path: Path
) -> None:
    """The release's own format (Parameters, numpy float scalars) loads, as its JSON copy does."""
    from_pt = load_released_arch(_release_pt(tmp_path, numpy_1_names))
    from_json = load_released_arch(RELEASE_JSON)
    assert from_pt["scores"] == from_json["scores"]
    for arch_set in ("teacher", "student"):
        assert from_pt[arch_set].keys() == from_json[arch_set].keys()
        for name, tensor in from_json[arch_set].items():
            torch.testing.assert_close(from_pt[arch_set][name], tensor.float().double())


def test_proxy_encoder_weights_refuse_a_malicious_file(tmp_path: Path, marker: Path) -> None:
    path = _evil(tmp_path, marker, name="encoder.pt")
    with pytest.raises(ConfigError) as info:
        smp_encoder_feature("resnet18", weights=path)
    _assert_refused_one_line(info.value, path, marker)


def test_feature_cache_refuses_pickled_arrays(tmp_path: Path, marker: Path) -> None:
    """A cache directory whose ``.npy`` holds pickled objects: ``np.load`` refuses to unpickle."""
    from lightning_nas.proxy.cache import CACHE_FORMAT, FEATURES, MANIFEST, MASKS

    cache = tmp_path / "cache"
    cache.mkdir()
    features = np.empty(2, dtype=object)
    features[:] = [Payload(marker), Payload(marker)]
    np.save(cache / FEATURES, features, allow_pickle=True)
    np.save(cache / MASKS, np.zeros((2, 4, 4), dtype=np.uint8))
    manifest = {"format": CACHE_FORMAT, "key": cache.name, "num_samples": 2}
    for name, array in ((FEATURES, features), (MASKS, np.zeros((2, 4, 4), dtype=np.uint8))):
        size = (cache / name).stat().st_size
        manifest[name.split(".")[0]] = {"shape": list(array.shape), "dtype": str(array.dtype),
                                        "bytes": size}  # fmt: skip
    (cache / MANIFEST).write_text(json.dumps(manifest))
    reason = check_cache(cache)
    assert reason is not None and f"unreadable {FEATURES}" in reason, reason
    assert not marker.exists()


def test_lightning_checkpoint_loading_refuses_a_malicious_checkpoint(
    tmp_path: Path, marker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``fit/validate --ckpt_path``, ``load_from_checkpoint``, ``lightning-nas export`` and
    ``Distillation(teacher_checkpoint=...)`` use: Lightning passes ``weights_only=None``
    to ``torch.load``, which torch >= 2.6 reads as ``True`` (unless the environment sets
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``); our callers pass ``True`` explicitly."""
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    from lightning_nas.export import load_network
    from lightning_nas.segmentation import SegmentationModule

    monkeypatch.delenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", raising=False)
    path = _evil(tmp_path, marker)
    with pytest.raises(pickle.UnpicklingError):
        TorchCheckpointIO().load_checkpoint(path)  # Trainer.fit(ckpt_path=...)
    with pytest.raises(pickle.UnpicklingError):
        SegmentationModule.load_from_checkpoint(path)  # weights_only=None: torch's default
    assert not marker.exists()
    with pytest.raises(ConfigError) as info:
        load_network(path)  # lightning-nas export <checkpoint>
    _assert_refused_one_line(info.value, path, marker)


# --------------------------------------------------------------------------- YAML tags
TAGGED = "!!python/object/apply:builtins.open [{marker}, w]"


def test_yaml_tag_payload_is_real(marker: Path) -> None:
    """Control: the tag runs under PyYAML's unsafe loader (never used by the package)."""
    yaml.unsafe_load(TAGGED.format(marker=marker)).close()
    assert marker.exists()


@pytest.mark.parametrize("where", ["root", "value", "nested"])
def test_genotype_yaml_with_python_tags_is_refused(
    where: str, tmp_path: Path, marker: Path
) -> None:
    tag = TAGGED.format(marker=marker)
    text = {
        "root": tag,
        "value": f"kind: darts\nversion: 1\nnormal: {tag}\n",
        "nested": f"kind: dpc\nversion: 1\nbranches:\n- [-1, sep_conv3x3, {tag}]\n",
    }[where]
    path = tmp_path / "genotype.yaml"
    path.write_text(text)
    with pytest.raises(GenotypeError) as info:
        load_genotype(path)
    message = str(info.value)
    assert message.splitlines() == [message] and message.startswith(f"{path}: line ")
    assert "python/object" in message
    assert not marker.exists()


@pytest.mark.parametrize("content", ["yaml_tag", "pickle"])
def test_latency_table_is_json_only(content: str, tmp_path: Path, marker: Path) -> None:
    """Tables are JSON: a YAML tag or a pickle in their place is unreadable, not run."""
    path = tmp_path / "table.json"
    if content == "yaml_tag":
        path.write_text(f"kind: latency_table\nentries: {TAGGED.format(marker=marker)}\n")
    else:
        path.write_bytes(pickle.dumps({"entries": Payload(marker)}))
    with pytest.raises(LatencyTableError) as info:
        LatencyTable.load(path)
    message = str(info.value)
    assert message.splitlines() == [message] and str(path) in message
    assert not marker.exists()
