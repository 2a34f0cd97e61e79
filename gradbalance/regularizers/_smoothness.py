"""SMART adversarial smoothness-inducing regulariser (Jiang et al. 2019, arXiv:1911.03437)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import attrs
import torch
from attrs import validators as v
from torch import Tensor

from gradbalance.regularizers._divergence import (
    Divergence,
    DivergenceFn,
    _check_divergence_option,
    divergence,
)

__all__ = ["SmoothnessRegularizer"]

_non_negative: list[Callable[[Any, attrs.Attribute[float], float], Any]] = [
    v.instance_of((int, float)),
    v.ge(0),
]


def _is_count(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"'{attribute.name}' must be a non-negative int, got {value!r}")


@attrs.frozen(kw_only=True)
class SmoothnessRegularizer:
    r"""SMART adversarial smoothness term λ_s·R_s (Jiang et al. 2019, Eq. 3 and Alg. 1).

    .. math::
        R_s(θ) = \frac{1}{n}\sum_i \max_{‖\tilde x_i − x_i‖_∞ ≤ ε} ℓ_s(f(\tilde x_i; θ), f(x_i; θ))

    where x are the *input embeddings*: the model is split at the embedding layer and the caller
    passes the rest of it as ``forward_from_embeddings``. The inner max is approximated as in
    Alg. 1: x̃ = x + ν with ν ~ N(0, σ²); then ``steps`` times g = ∇_x̃ ℓ_s(f(x̃), f(x)),
    g ← g / ‖g‖_∞ (per example), x̃ ← Proj_{‖x̃−x‖_∞≤ε}(x̃ + η g). Padding positions (``mask``
    = 0) are never perturbed. The perturbation is added once, after the embedding layer, and
    the forward continues from there (position/type embeddings are not re-added).

    The ascent uses ``torch.autograd.grad`` with respect to the perturbation only, so it leaves
    no ``.grad`` in the model. The returned term depends on θ through both f(x̃*) and f(x) and
    on the embedding layer through x̃* = x + δ*.detach(); add it to the task loss.

    Cost per call: ``steps`` extra forwards of ``forward_from_embeddings`` each followed by a
    backward to the input only (no weight gradients), plus one extra forward whose backward
    runs with the caller's loss (about one extra full backward). With ``steps=1`` expect about
    2–3× a plain training step. Dropout and batch-norm statistics behave as in any other
    forward in the module's current mode.

    Precision: the ε-ball is only meaningful where the model computes x̃ finely enough. Under
    bf16/fp16 (autocast or a half-precision model) the first matmul rounds x + δ to the half
    dtype, whose spacing near 1 is about 8e-3 (bf16) or 1e-3 (fp16): with the paper's ε = 1e-5
    the model sees x or a one-ulp neighbour, so the term measures rounding, not an ε-ball
    perturbation. :meth:`perturbation` warns when ε is below that spacing; use a larger ε there
    or run the regulariser's forwards in float32.

    Departures: Alg. 1 leaves the initial noise unprojected; with ``steps=0`` we still project
    it, so every evaluated x̃ lies in the ε-ball. ℓ_s for one-output heads is the Bernoulli KL
    or the squared error, never a softmax KL (identically zero there).

    Args:
        sigma: standard deviation σ of the initial Gaussian noise.
        epsilon: ℓ∞ radius ε of the perturbation ball.
        step_size: ascent step η.
        steps: number K of ascent steps (T_x̃ in the paper).
        weight: λ_s, the factor of the returned term.
        divergence: ℓ_s, a name from :data:`Divergence` or a callable ``(p, q) -> scalar``.

    Example:
        >>> import torch
        >>> W = torch.randn(4, 3, requires_grad=True)
        >>> x = torch.randn(2, 5, 4)  # [B, L, D] embeddings
        >>> f = lambda e: (e @ W).mean(1)  # [B, 3] logits
        >>> smart = SmoothnessRegularizer(sigma=1e-3, epsilon=1e-2)
        >>> term = smart(f, x, f(x), mask=torch.ones(2, 5))
        >>> term.backward()
        >>> W.grad is not None
        True
    """

    name: ClassVar[str] = "smart"

    sigma: float = attrs.field(default=1e-5, validator=_non_negative)
    epsilon: float = attrs.field(default=1e-5, validator=_non_negative)
    step_size: float = attrs.field(default=1e-3, validator=_non_negative)
    steps: int = attrs.field(default=1, validator=_is_count)
    weight: float = attrs.field(default=1.0, validator=_non_negative)
    divergence: Divergence | DivergenceFn = attrs.field(
        default="softmax_kl", validator=_check_divergence_option
    )

    def perturbation(
        self,
        forward_from_embeddings: Callable[[Tensor], Tensor],
        embeddings: Tensor,
        outputs: Tensor,
        mask: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """The adversarial perturbation δ* (detached, same shape as ``embeddings``)."""
        loss_fn = divergence(self.divergence)
        x = embeddings.detach()
        self._check_resolution(x)
        target = outputs.detach()
        keep = _broadcast_mask(mask, x)

        delta = self.sigma * _randn_like(x, generator)
        if keep is not None:
            delta = delta * keep
        for _ in range(self.steps):
            delta.requires_grad_(True)
            with torch.enable_grad():
                div = loss_fn(forward_from_embeddings(x + delta), target)
            grad = torch.autograd.grad(div, delta, allow_unused=True)[0] if div.requires_grad else None
            if grad is None:  # the output does not depend on the embeddings
                grad = torch.zeros_like(x)
            if keep is not None:
                grad = grad * keep
            delta = delta.detach() + self.step_size * _linf_normalise(grad)
            delta = delta.clamp(-self.epsilon, self.epsilon)
        delta = delta.detach().clamp(-self.epsilon, self.epsilon)
        return delta * keep if keep is not None else delta

    def loss(
        self,
        forward_from_embeddings: Callable[[Tensor], Tensor],
        embeddings: Tensor,
        outputs: Tensor,
        mask: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """λ_s · ℓ_s(f(x + δ*), f(x)), differentiable in θ and in ``embeddings``.

        Args:
            forward_from_embeddings: the model after its embedding layer, embeddings → outputs.
            embeddings: clean x, the embedding layer's output (e.g. ``[B, L, D]``).
            outputs: clean f(x) for the same batch, computed by the caller's forward.
            mask: optional ``[B, L]`` (a leading-dims prefix of ``embeddings``); 1 = real token.
            generator: RNG for the initial noise; the global RNG when ``None``.
        """
        delta = self.perturbation(forward_from_embeddings, embeddings, outputs, mask, generator=generator)
        adversarial = forward_from_embeddings(embeddings + delta)
        return self.weight * divergence(self.divergence)(adversarial, outputs)

    __call__ = loss

    def _check_resolution(self, x: Tensor) -> None:
        dtype = x.dtype
        device_type = x.device.type
        if hasattr(torch, "get_autocast_dtype") and torch.is_autocast_enabled(device_type):
            dtype = torch.get_autocast_dtype(device_type)
        if dtype in (torch.float16, torch.bfloat16) and self.epsilon < torch.finfo(dtype).eps:
            warnings.warn(
                f"SmoothnessRegularizer: epsilon={self.epsilon:g} is below the spacing of {dtype} "
                f"near 1 ({torch.finfo(dtype).eps:g}), the precision the model computes in here "
                "(autocast or a half-precision model): x + δ rounds to x or a neighbouring value, "
                "so the term measures rounding instead of an ε-ball perturbation. Use a larger "
                "epsilon or run the SMART forwards in float32.",
                RuntimeWarning,
                stacklevel=4,
            )


def _broadcast_mask(mask: Tensor | None, x: Tensor) -> Tensor | None:
    if mask is None:
        return None
    if mask.ndim > x.ndim or tuple(mask.shape) != tuple(x.shape[: mask.ndim]):
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} must match the leading dimensions of the "
            f"embeddings {tuple(x.shape)} (e.g. [B, L] for [B, L, D])"
        )
    return mask.to(dtype=x.dtype, device=x.device).reshape(*mask.shape, *([1] * (x.ndim - mask.ndim)))


def _randn_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    # A generator only draws on its own device; draw there and move.
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


def _linf_normalise(grad: Tensor) -> Tensor:
    """g / ‖g‖_∞ per example (dim 0); an all-zero example stays zero instead of NaN."""
    if grad.ndim == 0:
        raise ValueError("embeddings need a batch dimension")
    dims = tuple(range(1, grad.ndim))
    scale = grad.abs().amax(dim=dims, keepdim=True) if dims else grad.abs()
    return grad / scale.clamp_min(torch.finfo(grad.dtype).tiny)
