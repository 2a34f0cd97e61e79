"""Output divergences ℓ_s for SMART (Jiang et al. 2019, arXiv:1911.03437, Eq. 3 and Sec. 3.1).

Every divergence takes two output tensors of the same shape, ``p_out`` (perturbed input or
student) and ``q_out`` (clean input or teacher), computes one value per example by summing over
every non-batch dimension, and returns the mean over the batch (dim 0). ℓ_s must match the head:

- ``"softmax_kl"``: multi-class logits ``[B, C]`` (classes on the last dim);
- ``"bernoulli_kl"``: one binary logit per example, ``[B]`` or ``[B, 1]`` (also multi-label);
- ``"squared_error"``: raw regression outputs.

Applying a softmax to a one-output head gives probability 1 whatever the logit, so its KL is
identically zero: use ``"bernoulli_kl"`` or ``"squared_error"`` for such heads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeAlias, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "Divergence",
    "DivergenceFn",
    "divergence",
    "squared_error",
    "symmetric_kl_bernoulli",
    "symmetric_kl_softmax",
]

Divergence: TypeAlias = Literal["softmax_kl", "bernoulli_kl", "squared_error"]
"""Registry names of the built-in divergences."""

DivergenceFn: TypeAlias = Callable[[Tensor, Tensor], Tensor]
"""``(p_out, q_out) -> scalar``: batch mean of a per-example divergence."""


def _check_pair(p_out: Tensor, q_out: Tensor, what: str) -> None:
    if p_out.shape != q_out.shape:
        raise ValueError(
            f"{what}: p_out and q_out must have the same shape, got "
            f"{tuple(p_out.shape)} and {tuple(q_out.shape)}"
        )
    if p_out.ndim == 0:
        raise ValueError(f"{what}: outputs need a batch dimension (dim 0), got a scalar")


def _widen(t: Tensor) -> Tensor:
    # log-probabilities of half-precision logits lose most of their digits; work in float32.
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _batch_mean(per_element: Tensor) -> Tensor:
    return per_element.reshape(per_element.shape[0], -1).sum(dim=1).mean()


def symmetric_kl_softmax(p_out: Tensor, q_out: Tensor) -> Tensor:
    """Symmetric KL between the softmax distributions of two logit tensors, batch mean.

    KL(p‖q) + KL(q‖p) = Σ_c (p_c − q_c)(log p_c − log q_c), with log p = log_softmax(p_out)
    over the last dim: finite and exact for arbitrarily large logits.
    """
    _check_pair(p_out, q_out, "symmetric_kl_softmax")
    if p_out.ndim < 2:
        raise ValueError(
            "symmetric_kl_softmax needs logits of shape [B, C] (classes on the last dim), "
            f"got {tuple(p_out.shape)}; for one binary logit use 'bernoulli_kl'"
        )
    if p_out.shape[-1] < 2:
        raise ValueError(
            "symmetric_kl_softmax over a single logit is identically zero; "
            "use 'bernoulli_kl' for a binary logit or 'squared_error' for regression"
        )
    log_p = F.log_softmax(_widen(p_out), dim=-1)
    log_q = F.log_softmax(_widen(q_out), dim=-1)
    return _batch_mean((log_p.exp() - log_q.exp()) * (log_p - log_q))


def symmetric_kl_bernoulli(p_out: Tensor, q_out: Tensor) -> Tensor:
    """Symmetric KL between Bernoulli(sigmoid(p_out)) and Bernoulli(sigmoid(q_out)), batch mean.

    KL(p‖q) + KL(q‖p) = (σ(a) − σ(b)) · (a − b) for logits a, b: no logarithm of a probability
    is taken, so saturated logits stay exact. Shapes ``[B]``, ``[B, 1]`` or ``[B, K]``
    (independent labels, summed per example).
    """
    _check_pair(p_out, q_out, "symmetric_kl_bernoulli")
    a, b = _widen(p_out), _widen(q_out)
    return _batch_mean((torch.sigmoid(a) - torch.sigmoid(b)) * (a - b))


def squared_error(p_out: Tensor, q_out: Tensor) -> Tensor:
    """Squared error ‖p_out − q_out‖² per example (raw regression outputs), batch mean."""
    _check_pair(p_out, q_out, "squared_error")
    return _batch_mean((_widen(p_out) - _widen(q_out)).square())


_DIVERGENCES: dict[str, DivergenceFn] = {
    "softmax_kl": symmetric_kl_softmax,
    "bernoulli_kl": symmetric_kl_bernoulli,
    "squared_error": squared_error,
}
assert set(_DIVERGENCES) == set(get_args(Divergence))


def divergence(name: Divergence | DivergenceFn) -> DivergenceFn:
    """Look a divergence up by name; a callable is returned unchanged."""
    if callable(name):
        return name
    try:
        return _DIVERGENCES[name]
    except (KeyError, TypeError):
        valid = ", ".join(repr(k) for k in _DIVERGENCES)
        raise ValueError(f"unknown divergence {name!r}; valid names: {valid}") from None


def _check_divergence_option(instance: object, attribute: object, value: object) -> None:
    """attrs validator: the option names a built-in divergence or is a callable."""
    divergence(value)  # type: ignore[arg-type]
