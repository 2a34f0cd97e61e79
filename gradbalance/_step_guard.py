"""Catches ``optimizer.step()`` over shared parameters whose task gradients were never combined.

A :class:`TaskGradients` whose tasks have run holds its gradients in its rows and leaves the
shared parameters' ``.grad`` at ``None`` until ``combine``; an optimizer stepping then skips
those parameters in silence. One process-wide optimizer step pre-hook (installed the first time
a buffer holds rows) refuses such a step. With no buffer pending it costs one dict check.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch.utils.hooks import RemovableHandle

_pending: weakref.WeakKeyDictionary[Any, frozenset[int]] = weakref.WeakKeyDictionary()
_handle: RemovableHandle | None = None


def hold(owner: object, params: Iterable[torch.Tensor]) -> None:
    """``owner`` holds task gradients of ``params`` that no optimizer may step past."""
    global _handle
    if _handle is None:
        _handle = register_optimizer_step_pre_hook(_before_step)
    if owner not in _pending:
        _pending[owner] = frozenset(id(p) for p in params)


def release(owner: object) -> None:
    """``owner``'s task gradients were combined or dropped."""
    _pending.pop(owner, None)


def _before_step(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    if not _pending:
        return
    stepped = {id(p) for group in optimizer.param_groups for p in group["params"]}
    for owner, ids in list(_pending.items()):
        if not ids.isdisjoint(stepped):
            raise RuntimeError(
                f"{type(optimizer).__name__}.step() was called while {owner!r} holds task "
                "gradients that were never combined, so its shared parameters have no gradient "
                "and would not move: call buffer.combine(combiner) after the tasks' backward "
                "passes and before optimizer.step() (or buffer.zero_() to drop this step's task "
                "gradients)"
            )
