"""Unit tests run tiny models: one torch thread avoids oversubscribing a small CI machine
(two threads per process on 2 shared cores made a tiny forward 300× slower here)."""

import torch

torch.set_num_threads(1)
