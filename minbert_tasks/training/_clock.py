"""The training clock: wall time a run has trained, over its sessions (a resume continues it)."""

from __future__ import annotations

from minbert_tasks.distributed import SharedClock, World

__all__ = ["TrainingClock"]


class TrainingClock:
    """Seconds of training so far: :attr:`before` (earlier sessions, restored from a checkpoint)
    plus the running session's. With several ranks every rank reads rank 0's clock as of the
    last :meth:`sync`, so decisions taken on it are the same everywhere."""

    def __init__(self, world: World) -> None:
        self._shared = SharedClock(world)
        self._start: float | None = None
        #: Training seconds of earlier sessions.
        self.before = 0.0

    def sync(self) -> None:
        """Take rank 0's time (every rank calls it at the same point)."""
        self._shared.sync()

    def start(self) -> None:
        """A session starts (synced)."""
        self._shared.sync()
        self._start = self._shared()

    def stop(self) -> None:
        """The running session ends: its seconds join :attr:`before`."""
        self.before, self._start = self.seconds(), None

    def seconds(self) -> float:
        """Training seconds over every session, the running one to the last sync."""
        running = 0.0 if self._start is None else self._shared() - self._start
        return self.before + running
