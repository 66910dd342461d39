"""Atomic writes: an interrupted or killed writer leaves the previous file intact."""

import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lightning_nas import genotypes
from lightning_nas.atomic import replacing, write_bytes, write_text

REPO = Path(__file__).parents[1]


def test_an_interrupted_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = write_text(tmp_path / "a.yaml", "old\n")

    def interrupted(fd):
        raise KeyboardInterrupt  # the user pressed Ctrl-C after the bytes, before the rename

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_text(target, "new\n" * 1000)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a.yaml"]  # no temporary file left


def test_an_interrupted_genotype_save_keeps_the_previous_genotype(tmp_path, monkeypatch):
    v1 = genotypes.load(REPO / "experiments/genotypes/darts_v1.yaml")
    v2 = genotypes.load(REPO / "experiments/genotypes/darts_v2.yaml")
    path = tmp_path / "genotype.yaml"
    genotypes.save(v1, path)
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        genotypes.save(v2, path)
    assert genotypes.load(path) == v1


def test_a_failing_writer_inside_replacing_changes_nothing(tmp_path):
    target = write_bytes(tmp_path / "t.bin", b"old")
    with pytest.raises(RuntimeError), replacing(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("the writer failed")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.bin"]


WRITER = """
import sys
from lightning_nas.atomic import write_bytes
size = int(sys.argv[2])
payloads = [b"a" * size, b"b" * size]
print("ready", flush=True)
i = 0
while True:
    write_bytes(sys.argv[1], payloads[i % 2])
    i += 1
"""


def test_a_killed_writer_never_leaves_a_torn_file(tmp_path):
    """SIGKILL a real process in the middle of writing 8 MB files, several times."""
    target = tmp_path / "big.bin"
    size = 8 * 2**20
    target.write_bytes(b"a" * size)
    for delay in (0.05, 0.2, 0.45):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target), str(size)],
                                stdout=subprocess.PIPE, cwd=REPO)  # fmt: skip
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        data = target.read_bytes()
        assert len(data) == size and data in (b"a" * size, b"b" * size)


# writers that may write in place, and why
IN_PLACE = {
    "lightning_nas/atomic.py": "the atomic writers themselves",
    "lightning_nas/data/synthetic.py": "renders into a temporary folder that is renamed in place",
    "lightning_nas/proxy/cache.py": "part files in a temporary folder; manifest by os.replace",
    "lightning_nas/latency/table.py": "its own temporary file and os.replace",
    "callbacks/prediction_writer.py": "one prediction per image: a rerun rewrites them",
}
WRITES = {"write_text", "write_bytes", "imwrite"}


def _writes(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "attr", getattr(node.func, "id", ""))
        mode = [a.value for a in node.args[1:2] if isinstance(a, ast.Constant)]
        mode += [k.value.value for k in node.keywords
                 if k.arg == "mode" and isinstance(k.value, ast.Constant)]  # fmt: skip
        method = isinstance(node.func, ast.Attribute)  # path.write_text, not atomic's write_text
        if (method and name in WRITES) or (name == "open" and any("w" in str(m) for m in mode)):
            lines.append(node.lineno)
        if (
            name == "savefig"
            and node.args
            and not (isinstance(node.args[0], ast.Name) and node.args[0].id in ("buffer", "tmp"))
        ):
            lines.append(node.lineno)
    return lines


def test_package_files_are_written_atomically():
    offenders = []
    for path in sorted(
        [*(REPO / "lightning_nas").rglob("*.py"), *(REPO / "callbacks").glob("*.py")]
    ):
        rel = str(path.relative_to(REPO))
        if rel in IN_PLACE:
            continue
        for line in _writes(ast.parse(path.read_text())):
            offenders.append(f"{rel}:{line}")
    assert not offenders, f"write through lightning_nas.atomic: {offenders}"
