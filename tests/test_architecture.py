"""The house rules of the package layout (issue 11), checked from the source.

* no import cycle inside ``lightning_nas`` (every import, deferred ones included, walked with
  ``ast``);
* the shared modules know no method: no ``lightning_nas.methods.<name>`` import and no method
  name in their code (docstrings aside);
* ``lightning_nas.genotypes`` and every genotype file load with torch absent (a subprocess);
* every built-in method's package follows the layout ``docs/contributing.md`` describes.
"""

from __future__ import annotations

import ast
import importlib
import io
import subprocess
import sys
import textwrap
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "lightning_nas"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(path: Path, name: str) -> set[str]:
    """The ``lightning_nas`` modules ``name`` imports, anywhere in the file (deferred imports
    inside functions included: they hide a cycle, they do not remove it), except under
    ``if TYPE_CHECKING``.

    ``import a.b.c`` imports ``a`` and ``a.b`` too; those parent packages count unless they are
    ``name``'s own ancestors (always initialised before ``name``: a submodule reaching a sibling
    through its package is no cycle). A name taken from a package (``from pkg import X``, X not a
    submodule) counts ``pkg`` itself, ancestor or not.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    type_checking = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and _is_type_checking(node)
        for stmt in node.body
        for child in ast.walk(stmt)
    }
    explicit: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_checking:
            continue
        if isinstance(node, ast.Import):
            explicit.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            subs = [f"{base}.{alias.name}" for alias in node.names]
            explicit.update(sub for sub in subs if sub in MODULES)
            if any(sub not in MODULES for sub in subs):
                explicit.add(base)  # a name defined in the module (or package) itself
    ancestors = {".".join(name.split(".")[:k]) for k in range(1, name.count(".") + 1)}
    out = set()
    for target in explicit:
        parts = target.split(".")
        for k in range(1, len(parts) + 1):
            candidate = ".".join(parts[:k])
            implicit = k < len(parts)
            if candidate not in MODULES or candidate == name:
                continue
            if implicit and candidate in ancestors:
                continue
            out.add(candidate)
    return out


GRAPH = {name: imports(path, name) for name, path in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a list of nodes (first == last), or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = dfs(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = dfs(node)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    # importing a module imports the packages above it (unless they are the importer's own)
    assert "lightning_nas.latency" in GRAPH["lightning_nas.methods.fasterseg.latency"]
    assert "lightning_nas.methods" not in GRAPH["lightning_nas.methods.darts.ops"]


def test_no_import_cycle_inside_lightning_nas():
    assert len(GRAPH) > 40
    cycle = find_cycle(GRAPH)
    assert cycle is None, " -> ".join(cycle or [])


SHARED = [
    "lightning_nas/search.py",
    "lightning_nas/genotypes.py",
    "lightning_nas/latency",
    "lightning_nas/ops",
    "lightning_nas/spaces/base.py",
    "lightning_nas/segmentation.py",
    "lightning_nas/loss_terms.py",
    "lightning_nas/bilevel.py",
    "lightning_nas/strategies",
    "lightning_nas/proxy",
    "lightning_nas/baseline",
    "lightning_nas/draw.py",
    "lightning_nas/report.py",
    "lightning_nas/atomic.py",
    "lightning_nas/finite.py",
]
METHOD_WORDS = ("darts", "autodeeplab", "fasterseg", "dpc", "smnas")


def code_tokens(path: Path) -> list[str]:
    """The names and strings of ``path`` that are code: docstrings and comments dropped."""
    tree = ast.parse(path.read_text())
    docstrings = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            value = body[0].value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                docstrings.add((value.lineno, value.col_offset))
    out = []
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    for tok in tokens:
        if tok.type == tokenize.STRING and tok.start in docstrings:
            continue
        if tok.type in (tokenize.NAME, tokenize.STRING):
            out.append(tok.string)
    return out


@pytest.mark.parametrize("where", SHARED)
def test_shared_code_knows_no_method(where):
    root = REPO / where
    files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
    for path in files:
        for token in code_tokens(path):
            assert not any(word in token.lower() for word in METHOD_WORDS), (path, token)
        for imported in GRAPH.get(module_name(path), ()):
            assert not imported.startswith("lightning_nas.methods."), (path, imported)


def test_code_tokens_sees_code_and_skips_docstrings(tmp_path):
    path = tmp_path / "m.py"
    path.write_text('"""About DARTS."""\n\n\ndef f():\n    """FasterSeg."""\n    return "darts"\n')
    assert code_tokens(path) == ["def", "f", "return", '"darts"']


def test_genotypes_load_without_torch():
    """Validating every genotype file (and importing every method's genotype) needs no torch."""
    script = textwrap.dedent(
        f"""
        import sys
        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
        sys.meta_path.insert(0, NoTorch())
        from pathlib import Path
        from lightning_nas import genotypes
        from lightning_nas.genotypes import AutoDeepLabGenotype, DartsGenotype, DPCGenotype
        files = sorted(Path({str(REPO / "experiments/genotypes")!r}).glob("*.yaml"))
        files += sorted(Path({str(REPO / "tests/fixtures/pre_move")!r}).glob("*.yaml"))
        loaded = [genotypes.load(p) for p in files]
        kinds = {{"darts", "autodeeplab", "fasterseg", "dpc", "smnas"}}
        assert set(genotypes.kinds()) == kinds
        assert {{g.kind for g in loaded}} == kinds - {{"smnas"}}  # no published SM-NAS file
        assert all(genotypes.from_dict(g.to_dict()) == g for g in loaded)
        assert not [m for m in sys.modules if m == "torch" or m.startswith("torch.")]
        print(len(loaded))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) >= 10


FILES = ("genotype.py", "ops.py", "space.py", "network.py", "derive.py", "latency.py")
FILES += ("release.py", "callbacks.py", "viterbi.py", "__init__.py")
FILES += ("code.py", "encoder.py", "structural.py")  # SM-NAS: stage-2 codes, their encoder, stage 1
FILES += ("draw.py", "sampling.py")  # its genotype's drawing and random space


@pytest.mark.parametrize("method", METHOD_WORDS)
def test_method_package_layout(method):
    from lightning_nas.genotypes import Genotype
    from lightning_nas.methods import BUILTIN
    from lightning_nas.spaces.base import SearchSpace
    from lightning_nas.strategies.protocols import DiscreteSpace

    package = importlib.import_module(BUILTIN[method])
    folder = PACKAGE / "methods" / method
    assert {p.name for p in folder.glob("*.py")} <= set(FILES)
    assert {"genotype.py", "space.py", "network.py", "__init__.py"} <= {
        p.name for p in folder.glob("*.py")
    }
    exported = {name: getattr(package, name) for name in package.EXPORTS}
    # a one-shot supernet (SearchSpace) or a discrete space sampled by Optuna (DiscreteSpace)
    spaces = [
        o
        for o in exported.values()
        if isinstance(o, type) and (issubclass(o, SearchSpace) or issubclass(o, DiscreteSpace))
    ]
    kinds = [o for o in exported.values() if isinstance(o, type) and issubclass(o, Genotype)]
    assert len(spaces) >= 1 and len(kinds) == 1  # SM-NAS: one space per stage
    network = importlib.import_module(kinds[0].network.rpartition(".")[0])
    assert getattr(network, kinds[0].network.rpartition(".")[2]).__name__ in package.EXPORTS
    # every built-in kind can be drawn and has a random space (lightning-nas draw / baseline)
    from lightning_nas._config import import_object

    for attr in ("drawing", "random_space"):
        path = getattr(kinds[0], attr)
        assert path and path.startswith(BUILTIN[method] + "."), (method, attr)
        assert callable(import_object(path))
