"""DDPFaultGuard: when rank 0 fails, end the ranks it launched within a bounded time.

What Lightning 2.6 does on an exception in one rank of a DDP run started with its own launcher
(``strategy: ddp`` and ``devices: N`` in one command; rank 0 starts ranks 1..N-1 as child
processes):

* the failing rank runs the ``on_exception`` hooks and the teardown, prints its traceback and
  exits with a non-zero status;
* a rank blocked in a collective with it fails as soon as the failing process has exited when the
  backend notices closed connections (gloo, CPU: "Connection closed by peer ... typically caused
  by a remote worker crashing"), and exits too;
* rank 0 watches its children (``_ChildProcessObserver``, every 5 s): when one exits with a
  non-zero status it SIGKILLs every rank, itself included. A failure on rank >= 1 is therefore
  bounded whatever the backend.

Nothing watches rank 0 from its children: with a backend whose collectives do not notice a dead
peer (NCCL), a child blocked in a collective waits for the process-group timeout (Lightning's
default is 30 minutes) after rank 0 fails. This callback closes that gap: in ``on_exception`` on
rank 0 it waits up to ``grace`` seconds for the children to end on their own (a child failing
with its own error prints it), then SIGKILLs the rest, naming them on stderr.

It acts only under Lightning's subprocess launcher; under ``torchrun`` or SLURM the external
launcher ends the other ranks when one fails.

Args:
    grace: Seconds to let the other ranks end on their own before they are killed.
"""

from __future__ import annotations

import subprocess
import sys
import time

import lightning.pytorch as pl
from lightning.pytorch import Callback
from typing_extensions import override


class DDPFaultGuard(Callback):
    """On an exception on rank 0, end the ranks it launched after ``grace`` seconds."""

    def __init__(self, grace: float = 10.0) -> None:
        if grace < 0:
            raise ValueError(f"DDPFaultGuard: grace must be >= 0 seconds, got {grace}")
        self.grace = grace

    @override
    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        launcher = getattr(trainer.strategy, "launcher", None)
        children: list[subprocess.Popen] = list(getattr(launcher, "procs", None) or [])
        if not children:  # not rank 0 of Lightning's subprocess launcher
            return
        deadline = time.monotonic() + self.grace
        for proc in children:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        alive = {rank: p for rank, p in enumerate(children, start=1) if p.poll() is None}
        if not alive:
            return
        names = ", ".join(f"rank {rank} (pid {p.pid})" for rank, p in alive.items())
        print(
            f"DDPFaultGuard: rank 0 failed ({type(exception).__name__}: {exception}); "
            f"killing {names}, still running {self.grace:g} s later",
            file=sys.stderr,
            flush=True,
        )
        for proc in alive.values():
            proc.kill()
            proc.wait()
