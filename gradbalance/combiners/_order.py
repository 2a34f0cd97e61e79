"""Seeded visiting orders shared by the projection methods."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def make_generator(seed: int | None) -> torch.Generator:
    """A private CPU generator: seeded when ``seed`` is given, else from fresh entropy.

    The global RNG is never touched, so combining does not shift the model's dropout masks.
    """
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def visiting_orders(num_tasks: int, generator: torch.Generator) -> list[list[int]]:
    """For each task ``i`` in turn, a random order of the other tasks ``j ≠ i``.

    Protocol (part of the determinism contract): for ``i = 0 .. T-1`` draw
    ``torch.randperm(T, generator=generator)`` and drop ``i``.
    """
    orders = []
    for i in range(num_tasks):
        perm = torch.randperm(num_tasks, generator=generator).tolist()
        orders.append([j for j in perm if j != i])
    return orders


def order_array(orders: list[list[int]], num_tasks: int) -> np.ndarray:
    """:func:`visiting_orders` as an int array ``[T, T-1]`` (row ``i``: the order of task ``i``)."""
    return np.array(orders, dtype=np.intp).reshape(num_tasks, num_tasks - 1)


def generator_state(generator: torch.Generator) -> dict[str, Any]:
    return {"rng": generator.get_state()}


def load_generator_state(generator: torch.Generator, state: dict[str, Any], owner: str) -> None:
    if "rng" not in state:
        raise ValueError(f"{owner} state is missing 'rng' (got keys {sorted(state)})")
    # A checkpoint loaded with torch.load(map_location="cuda") holds the state on the GPU; the
    # generator is a CPU one and accepts only a CPU byte tensor.
    generator.set_state(torch.as_tensor(state["rng"], dtype=torch.uint8, device="cpu"))
