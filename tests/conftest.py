"""Unit tests run tiny models: one torch thread avoids oversubscribing a small CI machine
(two threads per process on 2 shared cores made a tiny forward 300× slower here)."""

import os

import torch
from hypothesis import settings

torch.set_num_threads(1)

# CI explores the same examples every run (a red CI then means a regression, and the example
# is reproducible); developers get fresh random examples locally.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
