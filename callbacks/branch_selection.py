"""Moved to :mod:`lightning_nas.methods.fasterseg.callbacks`.

Kept so that saved configs naming this path still load.
"""

from lightning_nas.methods.fasterseg.callbacks import BranchSelection

__all__ = ["BranchSelection"]
