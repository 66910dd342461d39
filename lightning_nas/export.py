r"""Export a derived network to ONNX, check it against PyTorch, and time both runtimes.

:func:`export_onnx` writes the file (input ``image``, output ``logits``), :func:`check_onnx` runs
one seeded random batch through PyTorch and through onnxruntime and compares the logits,
:func:`measure_onnx` times the file with onnxruntime by the same policy as
:func:`~lightning_nas.latency.measure.measure_module` (which times the PyTorch side), and
``lightning-nas export`` does all three for a genotype file or a retrained checkpoint::

    lightning-nas export experiments/genotypes/darts_v2.yaml --out darts.onnx \
        --input-size 512 1024 --build-arg C=16 --weights retrained.ckpt
    lightning-nas export runs/retrain/checkpoints/last.ckpt --out net.onnx --dynamic

The exporter is PyTorch's default one, based on ``torch.export`` (``dynamo=True``; it needs
``onnxscript``). The older TorchScript exporter (``dynamo=False``) gives the same numbers on the
DARTS and Auto-DeepLab networks and exports several times faster, but with torch 2.14 it warns
that it will be removed, and it records Python branches on shapes as constants of the trace
(``_resize`` in :mod:`lightning_nas.methods.autodeeplab.network` warns about this), whereas
``torch.export`` traces them symbolically, which is what ``dynamic_size=True`` relies on.

``onnx`` and ``onnxruntime`` are imported inside the functions, so ``import lightning_nas`` does
not load them.

Example:
    >>> from lightning_nas.export import ExportCheck
    >>> print(ExportCheck(max_abs_diff=2.1e-7, max_rel_diff=3e-8, atol=1e-4, rtol=0.0, ok=True))
    max |onnx - torch| = 2.1e-07 (atol 0.0001): OK
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import os
import pickle
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lightning_nas.atomic import replacing_dir
from lightning_nas.errors import ConfigError
from lightning_nas.genotypes import GenotypeError, build_network
from lightning_nas.latency.measure import device_name, measure_module
from lightning_nas.summary import add_build_arg, parse_build_args
from lightning_nas.weights import load_weights

__all__ = [
    "ExportCheck",
    "ExportError",
    "ExportMismatchError",
    "check_onnx",
    "export_main",
    "export_onnx",
    "load_network",
    "measure_onnx",
]

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
_MIN_OPSET = 18  # the lowest opset torch's exporter translates to
_EXTERNAL_DATA_BYTES = 1 << 30  # protobuf files stop at 2 GiB: larger weights go to a .data file


class ExportError(ValueError):
    """The network could not be exported, or the exported file could not be run."""


class ExportMismatchError(ExportError):
    """onnxruntime's output differs from PyTorch's by more than the tolerance."""


@dataclass(frozen=True)
class ExportCheck:
    """The comparison of onnxruntime's logits with PyTorch's on the same input.

    Attributes:
        max_abs_diff: ``max |onnx - torch|`` over all logits.
        max_rel_diff: ``max_abs_diff / max |torch|``: the difference relative to the largest logit.
        atol: Absolute tolerance used.
        rtol: Relative tolerance used (per logit, as in :func:`numpy.allclose`).
        ok: Whether every logit satisfied ``|onnx - torch| <= atol + rtol * |torch|`` (and both
            outputs are finite and of the same shape).
    """

    max_abs_diff: float
    max_rel_diff: float
    atol: float
    rtol: float
    ok: bool

    def __str__(self) -> str:
        tol = f"atol {self.atol:g}" + (f", rtol {self.rtol:g}" if self.rtol else "")
        verdict = "OK" if self.ok else "MISMATCH"
        return f"max |onnx - torch| = {self.max_abs_diff:.2g} ({tol}): {verdict}"


# ----------------------------------------------------------------------------- helpers
def _check_size(input_size: Sequence[int], batch_size: int) -> tuple[int, int]:
    if len(input_size) != 2 or any(int(s) < 1 for s in input_size) or batch_size < 1:
        raise ConfigError(
            f"export: input_size must be two positive integers and batch_size positive, got "
            f"{tuple(input_size)} and {batch_size}"
        )
    return int(input_size[0]), int(input_size[1])


def _in_channels(network: nn.Module) -> int:
    """Input channels of ``network``: those of its first convolution (3 if it has none)."""
    conv = next((m for m in network.modules() if isinstance(m, nn.Conv2d)), None)
    return conv.in_channels if conv is not None else 3


def _on_cpu(network: nn.Module) -> nn.Module:
    """``network`` itself if it lives on the CPU, else a CPU copy (the original is untouched)."""
    tensors = [*network.parameters(), *network.buffers()]
    if all(t.device.type == "cpu" for t in tensors):
        return network
    return copy.deepcopy(network).cpu()


def _random_input(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator)


def _logits(output: Any, network: nn.Module) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    raise ExportError(
        f"{type(network).__name__} returns {type(output).__name__} in eval mode; export needs a "
        "network returning one logits tensor"
    )


def _session(path: str | Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session of ``path`` with ``threads`` intra-op threads."""
    import onnxruntime as ort

    if not Path(path).is_file():
        raise FileNotFoundError(f"ONNX file {path} not found")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types
        raise ExportError(f"onnxruntime cannot load {path}: {err}") from None


# ----------------------------------------------------------------------------- export
def export_onnx(
    network: nn.Module,
    path: str | Path,
    input_size: tuple[int, int],
    batch_size: int = 1,
    opset: int | None = None,
    dynamic_size: bool = False,
    in_channels: int | None = None,
) -> Path:
    """Export ``network`` (in eval mode, on the CPU) to the ONNX file ``path``.

    The graph has one input ``image`` of shape ``(batch_size, in_channels, H, W)`` and one
    output ``logits``. The file is validated with :func:`onnx.checker.check_model`. Weights over
    1 GiB are written next to it, to ``<path>.data`` (protobuf files stop at 2 GiB).

    Args:
        network: The network; its mode is restored afterwards, and a network on another device
            is copied to the CPU (the original stays where it is).
        path: The ``.onnx`` file to write (parent folders are created).
        input_size: ``(H, W)`` of the example input.
        batch_size: Batch size of the example input.
        opset: ONNX opset version, at least 18 (``None``: the exporter's default, 20 with
            torch 2.14; it has no translations below 18, and converting down fails on ``Pad``).
        dynamic_size: Make the batch size, height and width dynamic (named ``batch``,
            ``height``, ``width`` in the graph).
        in_channels: Input channels (``None``: those of the network's first convolution).

    Returns:
        The path written.

    Raises:
        ConfigError: If ``input_size`` or ``batch_size`` is not positive, or ``opset`` < 18.
        ExportError: If the exporter fails or the file does not validate.
    """
    import onnx

    h, w = _check_size(input_size, batch_size)
    if opset is not None and opset < _MIN_OPSET:
        raise ConfigError(f"export: opset must be >= {_MIN_OPSET} (torch's exporter), got {opset}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = _on_cpu(network)
    channels = in_channels or _in_channels(net)
    x = _random_input((batch_size, channels, h, w), seed=0)
    dynamic_shapes = None
    if dynamic_size:
        dim = torch.export.Dim
        dynamic_shapes = ({0: dim("batch"), 2: dim("height"), 3: dim("width")},)
    weight_bytes = sum(t.numel() * t.element_size() for t in net.state_dict().values())
    was_training = net.training
    net.eval()
    # written in a temporary folder beside ``path``, checked, then moved in (model file last):
    # an interrupted export leaves the previous model intact
    with replacing_dir(path) as tmp:
        target = tmp / path.name
        try:
            # the exporter prints through warnings and, in places, on stdout: keep the CLI brief
            with contextlib.redirect_stdout(io.StringIO()):
                torch.onnx.export(
                    net,
                    (x,),
                    str(target),
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    opset_version=opset,
                    dynamo=True,
                    dynamic_shapes=dynamic_shapes,
                    external_data=weight_bytes > _EXTERNAL_DATA_BYTES,
                    verbose=False,
                )
        except Exception as err:  # the exporter raises many types; the first line says what failed
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ExportError(f"cannot export {type(network).__name__} to ONNX: {first}") from err
        finally:
            net.train(was_training)
        try:
            onnx.checker.check_model(str(target), full_check=True)
        except onnx.checker.ValidationError as err:
            raise ExportError(f"{path} does not validate: {err}") from err
    return path


def check_onnx(
    network: nn.Module,
    path: str | Path,
    input_size: tuple[int, int],
    batch_size: int = 1,
    atol: float = 1e-4,
    rtol: float = 0.0,
    seed: int = 0,
    strict: bool = True,
) -> ExportCheck:
    """Run one seeded random batch through ``network`` (eval) and through onnxruntime; compare.

    Args:
        network: The PyTorch network the file was exported from (its mode is restored).
        path: The ONNX file.
        input_size: ``(H, W)`` of the test input (any size, if the file was exported with
            ``dynamic_size=True``).
        batch_size: Batch size of the test input.
        atol: Absolute tolerance on the logits.
        rtol: Relative tolerance (per logit, times ``|torch|``; 0 = a purely absolute test).
        seed: Seed of the standard normal test input.
        strict: Raise :class:`ExportMismatchError` on a mismatch (else return ``ok=False``).

    Returns:
        The comparison.

    Raises:
        ExportMismatchError: If ``strict`` and the outputs differ by more than the tolerance,
            differ in shape, or are not finite; the message names the largest difference.
        FileNotFoundError: If ``path`` does not exist.
    """
    h, w = _check_size(input_size, batch_size)
    session = _session(path)
    shape = session.get_inputs()[0].shape
    channels = shape[1] if isinstance(shape[1], int) else _in_channels(network)
    x = _random_input((batch_size, channels, h, w), seed)
    was_training = network.training
    network.eval()
    try:
        with torch.inference_mode():
            device = next(iter(network.parameters()), x).device
            expected = _logits(network(x.to(device)), network).float().cpu()
    finally:
        network.train(was_training)
    try:
        (actual,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
    except Exception as err:  # onnxruntime's own exception types
        raise ExportMismatchError(
            f"onnxruntime cannot run {path} on {tuple(x.shape)}: {err}"
        ) from None
    actual = torch.from_numpy(actual).float()
    if actual.shape != expected.shape:
        check = ExportCheck(float("inf"), float("inf"), atol, rtol, ok=False)
        if strict:
            raise ExportMismatchError(
                f"{path}: onnxruntime output shape {tuple(actual.shape)} != PyTorch's "
                f"{tuple(expected.shape)} on input {tuple(x.shape)}"
            )
        return check
    diff = (actual - expected).abs()
    finite = bool(torch.isfinite(actual).all() and torch.isfinite(expected).all())
    max_abs = float(diff.max()) if diff.numel() else 0.0
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    ok = finite and bool((diff <= atol + rtol * expected.abs()).all())
    check = ExportCheck(max_abs, max_rel, atol, rtol, ok)
    if strict and not ok:
        why = "" if finite else " (non-finite logits)"
        raise ExportMismatchError(
            f"{path}: onnxruntime differs from PyTorch by up to {max_abs:.3g} "
            f"(> atol {atol:g}{f' + rtol {rtol:g}·|torch|' if rtol else ''}){why} on input "
            f"{tuple(x.shape)}"
        )
    return check


def measure_onnx(
    path: str | Path,
    input_size: tuple[int, int],
    batch_size: int = 1,
    warmup: int = 10,
    repeats: int = 30,
    threads: int | None = None,
) -> float:
    """Median latency in milliseconds of the ONNX file on onnxruntime's CPU provider.

    The session call is timed by :func:`~lightning_nas.latency.measure.measure_module`, so the
    policy is the same as for PyTorch: ``warmup`` untimed calls, then the median of ``repeats``.

    Args:
        path: The ONNX file.
        input_size: ``(H, W)`` of the random input.
        batch_size: Its batch size.
        warmup: Untimed calls first.
        repeats: Timed calls; the median is returned.
        threads: onnxruntime intra-op threads (``None``: ``torch.get_num_threads()``, the same
            as PyTorch's, for a like-for-like comparison).

    Returns:
        The median time of one call, in milliseconds.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
    """
    h, w = _check_size(input_size, batch_size)
    session = _session(path, threads)
    shape = session.get_inputs()[0].shape
    channels = shape[1] if isinstance(shape[1], int) else 3
    x = _random_input((batch_size, channels, h, w), seed=0)

    def run(image: torch.Tensor) -> object:
        return session.run([OUTPUT_NAME], {INPUT_NAME: image.numpy()})

    return measure_module(run, [x], warmup=warmup, repeats=repeats)


# ----------------------------------------------------------------------------- loading
def load_network(
    source: str | Path,
    num_classes: int | None = None,
    weights: str | Path | None = None,
    in_channels: int = 3,
    **build_kwargs: Any,
) -> nn.Module:
    """The network of a genotype file or of a SegmentationModule checkpoint, in eval mode.

    Args:
        source: A ``.ckpt`` file of a :class:`~lightning_nas.segmentation.SegmentationModule`
            (saved by the CLI, whose hyper-parameters rebuild the network), or a genotype YAML
            (any other suffix) built with :func:`~lightning_nas.genotypes.build_network`.
        num_classes: Output classes of a genotype's network (default 19); for a checkpoint it
            must be ``None`` or the checkpoint's.
        weights: For a genotype: a ``state_dict`` file or a SegmentationModule checkpoint (for
            example one saved from Python, which cannot rebuild its own network).
        in_channels: Input channels of a genotype's network.
        **build_kwargs: Further network arguments of a genotype (e.g. ``C=16``).

    Returns:
        The network on the CPU, in eval mode.

    Raises:
        FileNotFoundError: If ``source`` or ``weights`` does not exist.
        ConfigError: On a bad build argument, weights that do not fit, or an unusable checkpoint.
        GenotypeError: If the genotype file does not validate.
    """
    source = Path(source)
    if not source.is_file():
        raise FileNotFoundError(f"{source} not found")
    if source.suffix != ".ckpt":
        try:
            network = build_network(
                source, num_classes=num_classes or 19, in_channels=in_channels, **build_kwargs
            )
        except TypeError as err:
            raise ConfigError(f"build arguments {sorted(build_kwargs)}: {err}") from None
        if weights is not None:
            load_weights(network, weights)
        return network.eval()
    if build_kwargs or weights is not None:
        raise ConfigError(
            f"{source}: --build-arg and --weights apply to a genotype; a checkpoint rebuilds its "
            "network from its own hyper-parameters"
        )
    from lightning_nas.segmentation import SegmentationModule

    try:
        module = SegmentationModule.load_from_checkpoint(
            source, map_location="cpu", weights_only=True
        )
    except pickle.UnpicklingError:
        raise ConfigError(
            f"cannot load {source} as a SegmentationModule: refused by "
            "torch.load(weights_only=True): it holds more than tensors and plain data"
        ) from None
    except TypeError as err:
        if "network" not in str(err):
            raise ConfigError(f"cannot load {source} as a SegmentationModule: {err}") from None
        raise ConfigError(
            f"{source} holds no network configuration (saved from Python, not by the CLI): "
            f"export the genotype instead, with --weights {source}"
        ) from None
    except (KeyError, RuntimeError, ValueError, AttributeError) as err:
        message = " ".join(str(err).split())
        raise ConfigError(f"cannot load {source} as a SegmentationModule: {message}") from None
    if num_classes is not None and num_classes != module.num_classes:
        raise ConfigError(
            f"{source}: --num-classes {num_classes} but the checkpoint has {module.num_classes}"
        )
    return module.network.eval()


# ----------------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lightning-nas export",
        description="Export a genotype's network or a retrained SegmentationModule checkpoint to\n"
        "ONNX (input 'image', output 'logits'), check onnxruntime against PyTorch on a\n"
        "random input, and time both on the CPU (median of --repeats runs).",
        epilog="examples:\n"
        "  lightning-nas export experiments/genotypes/darts_v2.yaml --out darts.onnx \\\n"
        "      --build-arg C=16 --weights retrained.ckpt\n"
        "  lightning-nas export runs/retrain/checkpoints/last.ckpt --out net.onnx --dynamic\n"
        "(see docs/export.md)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "source", help="genotype YAML (experiments/genotypes/*.yaml) or a SegmentationModule .ckpt"
    )
    p.add_argument("--out", "-o", required=True, help="ONNX file to write, e.g. model.onnx")
    p.add_argument(
        "--num-classes", type=int, default=None, help="output classes of a genotype (default 19)"
    )
    p.add_argument(
        "--input-size",
        type=int,
        nargs=2,
        default=(512, 1024),
        metavar=("H", "W"),
        help="input image size (default 512 1024)",
    )
    p.add_argument("--batch-size", type=int, default=1, help="batch size (default 1)")
    p.add_argument(
        "--in-channels", type=int, default=3, help="input channels of a genotype (default 3)"
    )
    add_build_arg(p, "network argument of a genotype, value read as YAML (repeatable), e.g. C=16")
    p.add_argument(
        "--weights", help="weights of a genotype's network: state_dict or SegmentationModule .ckpt"
    )
    p.add_argument(
        "--atol", type=float, default=1e-4, help="max |onnx - torch| accepted (default 1e-4)"
    )
    p.add_argument(
        "--rtol", type=float, default=0.0, help="relative tolerance per logit (default 0)"
    )
    p.add_argument("--no-check", action="store_true", help="do not compare with PyTorch")
    p.add_argument("--no-benchmark", action="store_true", help="do not time the two runtimes")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs first (default 10)")
    p.add_argument("--repeats", type=int, default=30, help="timed runs, median (default 30)")
    p.add_argument(
        "--threads", type=int, default=None, help="CPU threads of both runtimes (default torch's)"
    )
    p.add_argument(
        "--opset", type=int, default=None, help="ONNX opset >= 18 (default: the exporter's, 20)"
    )
    p.add_argument(
        "--dynamic", action="store_true", help="dynamic batch size, height and width in the graph"
    )
    return p


def _size(path: Path) -> str:
    n = path.stat().st_size + sum(p.stat().st_size for p in path.parent.glob(f"{path.name}.data"))
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _opset(path: Path) -> int | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def _run(args: argparse.Namespace) -> int:
    if args.warmup < 0 or args.repeats < 1 or (args.threads is not None and args.threads < 1):
        raise ConfigError(
            f"need --warmup >= 0, --repeats >= 1, --threads >= 1; got {args.warmup}, "
            f"{args.repeats}, {args.threads}"
        )
    size = _check_size(args.input_size, args.batch_size)
    network = load_network(
        args.source,
        args.num_classes,
        args.weights,
        in_channels=args.in_channels,
        **parse_build_args(args.build_arg),
    )
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    shape = (args.batch_size, _in_channels(network), *size)
    params = sum(p.numel() for p in network.parameters())
    print(f"exporting {type(network).__name__} at {'x'.join(map(str, shape))} ...", flush=True)
    out = export_onnx(
        network,
        args.out,
        size,
        batch_size=args.batch_size,
        opset=args.opset,
        dynamic_size=args.dynamic,
    )
    axes = "dynamic batch/height/width" if args.dynamic else "static shape"
    print(f"wrote {out} ({_size(out)}, opset {_opset(out)}, {axes})")
    print(f"  parameters        {params / 1e6:.3f} M")
    check = None
    if not args.no_check:
        check = check_onnx(
            network, out, size, args.batch_size, atol=args.atol, rtol=args.rtol, seed=0
        )
        print(f"  max |onnx - torch|  {check.max_abs_diff:.2g} (relative {check.max_rel_diff:.2g})")
        if args.dynamic:  # a second size and batch: the graph really is dynamic
            other = (size[0] + max(1, size[0] // 2), size[1] + max(1, size[1] // 2))
            second = check_onnx(
                network, out, other, args.batch_size + 1, atol=args.atol, rtol=args.rtol, seed=1
            )
            print(
                f"  max |onnx - torch|  {second.max_abs_diff:.2g} at "
                f"{args.batch_size + 1}x{other[0]}x{other[1]} (dynamic)"
            )
    if not args.no_benchmark:
        x = _random_input(shape, seed=0)
        torch_ms = measure_module(network, [x], warmup=args.warmup, repeats=args.repeats)
        ort_ms = measure_onnx(
            out, size, args.batch_size, warmup=args.warmup, repeats=args.repeats, threads=threads
        )
        import onnxruntime

        print(
            f"  latency (median of {args.repeats}, {device_name('cpu')}, {threads} thread"
            f"{'s' if threads > 1 else ''})"
        )
        print(f"    {'torch ' + torch.__version__:<26}{torch_ms:9.2f} ms")
        print(f"    {'onnxruntime ' + onnxruntime.__version__:<26}{ort_ms:9.2f} ms")
    if check is not None:
        tol = f"atol {args.atol:g}" + (f" + rtol {args.rtol:g}·|torch|" if args.rtol else "")
        print(f"OK (max |onnx - torch| {check.max_abs_diff:.2g} <= {tol})")
    return 0


def export_main(argv: Sequence[str] | None = None) -> int:
    """Run ``lightning-nas export`` with ``argv`` (without ``export``); return the exit status.

    User errors (a missing or invalid source, weights or build argument, a network the exporter
    cannot handle, onnxruntime output differing from PyTorch by more than ``--atol``) print one
    line on stderr and return 2; ``LIGHTNING_NAS_TRACEBACK=1`` raises them instead.
    """
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error (already printed)
        return int(exit_.code or 0)
    try:
        return _run(args)
    except (ConfigError, GenotypeError, ExportError, ValueError, OSError) as err:
        if os.environ.get("LIGHTNING_NAS_TRACEBACK"):
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"error: {type(err).__name__}: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(export_main())
