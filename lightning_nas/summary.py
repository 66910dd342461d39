r"""Parameters, Multi-Adds and per-stage output shapes of a network, without running it.

The network runs on PyTorch's ``meta`` device (shapes only, no memory, no arithmetic) under
:class:`torch.utils.flop_counter.FlopCounterMode`, so a 1024 × 2048 Cityscapes image costs about
a second whatever the model size. Multi-Adds are the multiply-adds of convolutions and matrix
products (FLOPs / 2); BatchNorm, activations, pooling and resizing are not counted, the usual
convention of the NAS papers' tables.

    lightning-nas summary experiments/genotypes/autodeeplab_cityscapes.yaml \
        --build-arg filter_multiplier=48 --input-size 1024 2048

Example:
    >>> from lightning_nas.summary import summarize_genotype
    >>> s = summarize_genotype("experiments/genotypes/autodeeplab_cityscapes.yaml",
    ...                        input_size=(1024, 2048), filter_multiplier=20)
    >>> round(s.params / 1e6, 3), round(s.multi_adds / 1e9, 1)
    (10.147, 317.5)
    >>> s.stages["cell_11"], s.stride("cell_11")
    ((200, 128, 256), 8)
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lightning_nas.errors import ConfigError
from lightning_nas.genotypes import Genotype, GenotypeError, build_network

__all__ = [
    "NetworkSummary",
    "add_build_arg",
    "format_summary",
    "parse_build_args",
    "summarize",
    "summarize_genotype",
    "summary_main",
]

_META = torch.device("meta")


@dataclass(frozen=True)
class NetworkSummary:
    """What :func:`summarize` measures.

    Attributes:
        name: The network's class name.
        params: Number of parameters (every ``nn.Parameter``).
        multi_adds: Multiply-adds of one forward pass of one image (convolutions and matrix
            products: FLOPs / 2).
        input_size: ``(H, W)`` of the input image.
        in_channels: Channels of the input image.
        stages: Output shape ``(C, H, W)`` of each stage, in execution order.
    """

    name: str
    params: int
    multi_adds: int
    input_size: tuple[int, int]
    in_channels: int = 3
    stages: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def stride(self, stage: str) -> int:
        """Output stride of ``stage``: input height divided by the stage's height (rounded)."""
        return round(self.input_size[0] / self.stages[stage][-2])


def _on_meta(network: nn.Module) -> nn.Module:
    """A copy of ``network`` whose parameters and buffers live on the meta device (no data copy)."""
    memo: dict[int, Any] = {}
    for p in network.parameters():
        memo[id(p)] = nn.Parameter(torch.empty_like(p, device=_META), requires_grad=p.requires_grad)
    for b in network.buffers():
        memo[id(b)] = torch.empty_like(b, device=_META)
    return copy.deepcopy(network, memo)


def _stage_shapes(network: nn.Module, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """Per-stage output shapes: ``forward_stages(x)`` if the network has it, else hooks."""
    forward_stages = getattr(network, "forward_stages", None)
    if callable(forward_stages):
        return {k: tuple(v.shape[1:]) for k, v in forward_stages(x).items()}
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []

    def hook(name: str) -> Any:
        def record(module: nn.Module, args: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor):
                shapes[name] = tuple(output.shape[1:])

        return record

    for name, child in network.named_children():
        if isinstance(child, nn.ModuleList | nn.ModuleDict):
            for sub, grandchild in child.named_children():
                handles.append(grandchild.register_forward_hook(hook(f"{name}.{sub}")))
        else:
            handles.append(child.register_forward_hook(hook(name)))
    try:
        network(x)
    finally:
        for h in handles:
            h.remove()
    return shapes


def summarize(
    network: nn.Module, input_size: tuple[int, int] = (1024, 2048), in_channels: int = 3
) -> NetworkSummary:
    """Count the parameters and Multi-Adds of ``network`` on one image of ``input_size``.

    The network runs in eval mode on the meta device (a copy sharing no memory with it when its
    weights are real), so it is fast at any size and ``network`` is left untouched.

    Args:
        network: Any network taking ``(1, in_channels, H, W)``. If it has a
            ``forward_stages(x) -> dict[str, Tensor]`` method (e.g.
            :class:`~lightning_nas.networks.AutoDeepLabNetwork`), its entries are the stages;
            otherwise the outputs of its direct children (and of the members of its
            ``ModuleList`` children) are.
        input_size: ``(H, W)`` of the image.
        in_channels: Channels of the image.

    Returns:
        The summary.

    Raises:
        ConfigError: If ``input_size`` or ``in_channels`` is not positive.
    """
    if len(input_size) != 2 or any(int(s) < 1 for s in input_size) or in_channels < 1:
        raise ConfigError(
            f"summarize: input_size must be two positive integers and in_channels positive, got "
            f"{tuple(input_size)} and {in_channels}"
        )
    size = (int(input_size[0]), int(input_size[1]))
    on_meta = all(t.device == _META for t in (*network.parameters(), *network.buffers()))
    net = network if on_meta else _on_meta(network)
    was_training = net.training
    net.eval()
    try:
        x = torch.empty(1, in_channels, *size, device=_META)
        with torch.no_grad():
            with FlopCounterMode(display=False) as counter:
                net(x)
            stages = _stage_shapes(net, x)
    finally:
        net.train(was_training)
    return NetworkSummary(
        name=type(network).__name__,
        params=sum(p.numel() for p in network.parameters()),
        multi_adds=counter.get_total_flops() // 2,
        input_size=size,
        in_channels=in_channels,
        stages=stages,
    )


def summarize_genotype(
    genotype: Genotype | str | Path,
    num_classes: int = 19,
    input_size: tuple[int, int] = (1024, 2048),
    in_channels: int = 3,
    **build_kwargs: Any,
) -> NetworkSummary:
    """Build the network of ``genotype`` on the meta device and :func:`summarize` it.

    Args:
        genotype: A genotype, or the path of its YAML file.
        num_classes: Number of output classes.
        input_size: ``(H, W)`` of the image.
        in_channels: Channels of the image (passed to the network as ``in_channels``).
        **build_kwargs: Further arguments of the genotype kind's network class (for example
            ``filter_multiplier`` of :class:`~lightning_nas.networks.AutoDeepLabNetwork`).

    Returns:
        The summary.

    Raises:
        ConfigError: If an argument is not accepted by the network class.
        GenotypeError: If the genotype file does not validate.
        FileNotFoundError: If the genotype file does not exist.
    """
    with torch.device(_META):
        try:
            network = build_network(
                genotype, num_classes=num_classes, in_channels=in_channels, **build_kwargs
            )
        except TypeError as err:
            raise ConfigError(f"build arguments {sorted(build_kwargs)}: {err}") from None
    return summarize(network, input_size=input_size, in_channels=in_channels)


def _multi_adds(n: int) -> str:
    return f"{n / 1e9:10.2f} B" if n >= 1e9 else f"{n / 1e6:10.2f} M"


def format_summary(summary: NetworkSummary) -> str:
    """A readable table: parameters, Multi-Adds and each stage's output shape and stride.

    Parameters are printed in millions, Multi-Adds in billions (millions below one billion).

    Args:
        summary: What :func:`summarize` returned.

    Returns:
        The table, several lines without a trailing newline.
    """
    h, w = summary.input_size
    lines = [
        f"{summary.name} on a {summary.in_channels}x{h}x{w} input",
        f"  parameters  {summary.params / 1e6:10.3f} M",
        f"  Multi-Adds  {_multi_adds(summary.multi_adds)}  (conv/matmul multiply-adds)",
    ]
    if summary.stages:
        width = max(5, *(len(name) for name in summary.stages))
        lines += ["", f"  {'stage':<{width}}  {'channels':>8}  {'height':>6}  {'width':>6}  stride"]
        for name, shape in summary.stages.items():
            c = shape[0] if len(shape) == 3 else "-"
            sh, sw = (shape[-2], shape[-1]) if len(shape) >= 2 else ("-", "-")
            stride = summary.stride(name) if len(shape) >= 2 else "-"
            lines.append(f"  {name:<{width}}  {c:>8}  {sh:>6}  {sw:>6}  {stride:>6}")
    return "\n".join(lines)


def parse_build_args(items: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--build-arg: expected KEY=VALUE, got {item!r}")
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ConfigError(f"--build-arg {key}: value {value!r} is not valid YAML") from err
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lightning-nas summary",
        description="Parameters, Multi-Adds and per-stage shapes of a genotype's network "
        "(counted on the meta device: nothing is computed).",
    )
    p.add_argument("genotype", help="genotype YAML file (e.g. experiments/genotypes/*.yaml)")
    p.add_argument("--num-classes", type=int, default=19, help="output classes (default 19)")
    p.add_argument(
        "--input-size",
        type=int,
        nargs=2,
        default=(1024, 2048),
        metavar=("H", "W"),
        help="input image size (default 1024 2048, a Cityscapes image)",
    )
    p.add_argument("--in-channels", type=int, default=3, help="input image channels")
    add_build_arg(p, "network argument, value read as YAML (repeatable), e.g. filter_multiplier=48")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def add_build_arg(parser: argparse.ArgumentParser, help: str) -> None:
    """Add ``--build-arg KEY=VALUE`` (repeatable; read with :func:`parse_build_args`)."""
    parser.add_argument(
        "--build-arg",
        "--build",
        dest="build_arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=help,
    )


def summary_main(argv: Sequence[str] | None = None) -> int:
    """Run ``lightning-nas summary`` with ``argv`` (without ``summary``); return the exit status.

    User errors (a missing or invalid genotype file, an unknown build argument or a bad value)
    print one line on stderr and return 2; ``LIGHTNING_NAS_TRACEBACK=1`` raises them instead.
    """
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error (already printed)
        return int(exit_.code or 0)
    try:
        summary = summarize_genotype(
            args.genotype,
            num_classes=args.num_classes,
            input_size=tuple(args.input_size),
            in_channels=args.in_channels,
            **parse_build_args(args.build_arg),
        )
    except (ConfigError, GenotypeError, ValueError, OSError) as err:
        if os.environ.get("LIGHTNING_NAS_TRACEBACK"):
            raise
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    print(json.dumps(asdict(summary)) if args.json else format_summary(summary))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(summary_main())
