"""SMART momentum Bregman proximal point (Jiang et al. 2019, arXiv:1911.03437, Eq. 4–5)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import attrs
import torch
from attrs import validators as v
from torch import Tensor, nn
from torch.func import functional_call

from gradbalance.regularizers._divergence import (
    Divergence,
    DivergenceFn,
    _check_divergence_option,
    divergence,
)

__all__ = ["BregmanProximalPoint"]


@attrs.define(kw_only=True, eq=False)
class BregmanProximalPoint:
    r"""SMART momentum Bregman proximal point: μ·ℓ_s(f(x; θ), f(x; θ̃)) with an EMA teacher θ̃.

    Jiang et al. 2019, Eq. 4–5: the update at step t minimises L(θ) + λ_s R_s(θ) + μ D(θ, θ̃_t)
    with D = ℓ_s(f(x; θ), f(x; θ̃)) averaged over the batch, and the momentum teacher
    θ̃ ← (1−β)θ + βθ̃ after each optimizer step (the paper's θ̃_t = (1−β)θ_t + βθ̃_{t−1}).

    The teacher is a real copy of the module's parameters and buffers (floating buffers are
    averaged like parameters, others such as batch counters are copied), held in the module's
    dtypes and devices; tied parameters stay tied. :meth:`teacher_outputs` runs the student's
    module with the teacher's tensors through ``torch.func.functional_call`` under ``no_grad``,
    in the module's current train/eval mode. The teacher travels in :meth:`state_dict`.

    Args:
        beta: β, the teacher's momentum (share of the old teacher kept per update), in [0, 1].
        weight: μ, the factor of :meth:`loss`.
        divergence: ℓ_s, a name from :data:`Divergence` or a callable ``(p, q) -> scalar``.
        teacher: the teacher's tensors by ``named_parameters``/``named_buffers`` name; usually
            built by :meth:`from_module`.

    Example:
        >>> import torch
        >>> net = torch.nn.Linear(4, 3)
        >>> bregman = BregmanProximalPoint.from_module(net, beta=0.99)
        >>> x = torch.randn(8, 4)
        >>> term = bregman.loss(net(x), bregman.teacher_outputs(net, x))
        >>> term.backward()  # ... optimizer.step() ...
        >>> bregman.update(net)
    """

    name: ClassVar[str] = "bregman"

    beta: float = attrs.field(default=0.99, validator=[v.instance_of((int, float)), v.ge(0), v.le(1)])
    weight: float = attrs.field(default=1.0, validator=[v.instance_of((int, float)), v.ge(0)])
    divergence: Divergence | DivergenceFn = attrs.field(
        default="softmax_kl", validator=_check_divergence_option
    )
    teacher: dict[str, Tensor] = attrs.field(factory=dict, repr=False)

    @classmethod
    def from_module(cls, module: nn.Module, **options: Any) -> BregmanProximalPoint:
        """A proximal point whose teacher starts as a detached copy of ``module``."""
        with torch.no_grad():
            teacher = {name: t.detach().clone() for name, t in _named_state(module)}
        return cls(teacher=teacher, **options)

    def teacher_outputs(self, module: nn.Module, *args: Any, **kwargs: Any) -> Any:
        """``module(*args, **kwargs)`` evaluated with the teacher's tensors, without gradients."""
        self._check_matches(module)
        # Buffers are passed as copies: a train-mode forward (batch norm) updates the buffers it
        # is given in place, and the teacher changes only in :meth:`update`.
        buffers = {name for name, _ in module.named_buffers()}
        state = {name: t.clone() if name in buffers else t for name, t in self.teacher.items()}
        with torch.no_grad():
            return functional_call(module, state, args, kwargs, strict=True)

    def loss(self, student_outputs: Tensor, teacher_outputs: Tensor) -> Tensor:
        """μ · ℓ_s(student_outputs, teacher_outputs); no gradient reaches the teacher."""
        return self.weight * divergence(self.divergence)(student_outputs, teacher_outputs.detach())

    def update(self, module: nn.Module) -> None:
        """θ̃ ← (1−β)θ + βθ̃ in place; call after each optimizer step."""
        self._check_matches(module)
        averaged: list[Tensor] = []
        student: list[Tensor] = []
        with torch.no_grad():
            for name, t in _named_state(module):
                mine = self.teacher[name]
                if mine.is_floating_point() or mine.is_complex():
                    averaged.append(mine)
                    student.append(t.detach())
                else:
                    mine.copy_(t)
            if averaged:
                # lerp(θ̃, θ, 1−β) = θ̃ + (1−β)(θ − θ̃) = (1−β)θ + βθ̃
                torch._foreach_lerp_(averaged, student, 1.0 - self.beta)

    def state_dict(self) -> dict[str, Any]:
        """The teacher's tensors (options are construction arguments, not state)."""
        return {"teacher": dict(self.teacher)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Copy a :meth:`state_dict` into the teacher in place (keeps devices and dtypes)."""
        loaded = state["teacher"]
        missing = sorted(set(self.teacher) - set(loaded))
        unexpected = sorted(set(loaded) - set(self.teacher))
        if missing or unexpected:
            raise KeyError(f"teacher state does not match: missing {missing}, unexpected {unexpected}")
        for name, t in loaded.items():
            if t.shape != self.teacher[name].shape:
                raise ValueError(
                    f"teacher tensor {name!r}: shape {tuple(t.shape)} in the state, "
                    f"{tuple(self.teacher[name].shape)} expected"
                )
        with torch.no_grad():
            for name, t in loaded.items():
                self.teacher[name].copy_(t)

    def to(self, *args: Any, **kwargs: Any) -> BregmanProximalPoint:
        """Move the teacher like ``nn.Module.to`` (after moving the student); returns self.

        A dtype applies to floating tensors only: integer buffers such as batch-norm counters
        keep theirs, as in the module. Views made with ``attrs.evolve`` share the move.
        """
        device, dtype, non_blocking, _ = torch._C._nn._parse_to(*args, **kwargs)
        # In place, so views made with attrs.evolve (one teacher, several divergences) follow.
        for name, t in self.teacher.items():
            cast = dtype if t.is_floating_point() or t.is_complex() else None
            self.teacher[name] = t.to(device=device, dtype=cast, non_blocking=non_blocking)
        return self

    def _check_matches(self, module: nn.Module) -> None:
        names = {name: t for name, t in _named_state(module)}
        missing = sorted(set(names) - set(self.teacher))
        unexpected = sorted(set(self.teacher) - set(names))
        if missing or unexpected:
            raise ValueError(
                "module does not match the teacher (build it with "
                f"BregmanProximalPoint.from_module): missing {missing}, unexpected {unexpected}"
            )
        for name, t in names.items():
            mine = self.teacher[name]
            if t.shape != mine.shape:
                raise ValueError(
                    f"{name!r} has shape {tuple(t.shape)} in the module but "
                    f"{tuple(mine.shape)} in the teacher"
                )
            if t.dtype != mine.dtype or t.device != mine.device:
                raise ValueError(
                    f"{name!r} is {t.dtype} on {t.device} in the module but {mine.dtype} on "
                    f"{mine.device} in the teacher; after moving or casting the module, do the "
                    "same to the teacher: bregman.to(device, dtype)"
                )


def _named_state(module: nn.Module) -> list[tuple[str, Tensor]]:
    return [*module.named_parameters(), *module.named_buffers()]
