"""The progress bar of a run and the smoothed training losses it shows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["Progress"]


class Progress:
    """A tqdm bar over a run's optimizer steps (shown where ``enabled``: rank 0, unless turned
    off) with each task's training loss as an exponential average (0.95 per step), which
    checkpoints carry so that a resumed bar goes on from it."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.loss_avg: dict[str, float] = {}
        self._bar: Any = None

    def open(self, total: int, done: int) -> None:
        """Show a bar of ``total`` steps, ``done`` of them already trained."""
        from tqdm.auto import tqdm

        self._bar = tqdm(
            total=total, initial=done, disable=not self.enabled, desc="train", dynamic_ncols=True
        )

    def step(self, losses: Mapping[str, float]) -> None:
        """One optimizer step with these task losses."""
        for task, value in losses.items():
            previous = self.loss_avg.get(task)
            self.loss_avg[task] = value if previous is None else 0.95 * previous + 0.05 * value
        self._bar.update(1)
        self._bar.set_postfix({t: f"{v:.3f}" for t, v in self.loss_avg.items()}, refresh=False)

    def scores(self, scores: Mapping[str, float]) -> None:
        """Show the latest dev scores."""
        self._bar.set_description(f"train (dev {' '.join(f'{k} {v:.3f}' for k, v in scores.items())})")

    def close(self) -> None:
        self._bar.close()
