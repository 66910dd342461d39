"""Test-session setup shared by tests/ and the doctests in the packages.

One intra-op thread per process: the suite is made of many tiny forward/backward passes, where
thread start-up and contention between the two cores (two DDP ranks, DataLoader workers) cost more
than they give (measured: 42 s instead of 62 s for tests/test_search.py + test_resume.py).
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
