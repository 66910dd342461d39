"""W&B sweep configs name keys the CLI accepts and the metric the modules log."""

from pathlib import Path

import pytest
import yaml

from lightning_nas.cli import NASCLI

REPO = Path(__file__).parents[1]
SWEEPS = sorted((REPO / "experiments/sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_sweep_parameters_are_cli_keys(path, capsys):
    sweep = yaml.safe_load(path.read_text())
    assert sweep["metric"]["name"] in {"val/mIoU", "val/loss"}
    command = sweep["command"]
    assert command.index("${args}") > command.index("-c")
    configs = [str(REPO / command[i + 1]) for i, tok in enumerate(command) if tok == "-c"]
    overrides = []
    for key, spec in sweep["parameters"].items():
        value = spec["values"][0] if "values" in spec else spec["min"]
        overrides.append(f"--{key}={str(value).lower() if isinstance(value, bool) else value}")
    args = ["fit"] + [a for c in configs for a in ("-c", c)] + overrides + ["--print_config"]
    with pytest.raises(SystemExit) as exit_info:
        NASCLI(args=args)
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    for key, spec in sweep["parameters"].items():
        node = printed
        for part in key.split("."):
            node = node[part]
        expected = spec["values"][0] if "values" in spec else spec["min"]
        assert node == expected, key
