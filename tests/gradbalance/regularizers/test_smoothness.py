"""SMART adversarial smoothness term (Jiang et al. 2019, Alg. 1)."""

from __future__ import annotations

import doctest
import warnings
from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from gradbalance.regularizers import SmoothnessRegularizer, _smoothness

B, L, D, C = 3, 5, 4, 3


class Recorder:
    """Wraps forward_from_embeddings and keeps every input it was given."""

    def __init__(self, forward: Callable[[Tensor], Tensor]) -> None:
        self.forward = forward
        self.inputs: list[Tensor] = []

    def __call__(self, embeddings: Tensor) -> Tensor:
        self.inputs.append(embeddings.detach().clone())
        return self.forward(embeddings)


def _mixing_model(seed: int = 0) -> nn.Module:
    """Mixes positions (mean over L), so padding positions get non-zero input gradients."""
    torch.manual_seed(seed)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.Sequential(nn.Linear(D, 8), nn.Tanh(), nn.Linear(8, C))

        def forward(self, e: Tensor) -> Tensor:
            return self.inner(e).mean(dim=1) * 10

    return Net()


def test_zero_radius_and_zero_noise_give_zero() -> None:
    net = _mixing_model()
    x = torch.randn(B, L, D)
    for sigma in (0.0, 0.1):  # with ε = 0 any noise is projected away
        smart = SmoothnessRegularizer(sigma=sigma, epsilon=0.0, step_size=0.1, steps=2)
        assert smart(net, x, net(x)).item() == 0.0


def test_first_ascent_step_matches_analytic_gradient() -> None:
    # f(x) = x @ W, ℓ_s = squared error: ∇_δ (1/B) Σ_b ‖δ_b W‖² = (2/B) δ W Wᵀ.
    gen = torch.Generator().manual_seed(1)
    W = torch.randn(D, C, generator=gen)
    x = torch.randn(B, L, D, generator=gen)
    f = Recorder(lambda e: e @ W)
    smart = SmoothnessRegularizer(
        sigma=0.1, epsilon=10.0, step_size=1e-2, steps=1, divergence="squared_error"
    )
    delta = smart.perturbation(f, x, x @ W, generator=torch.Generator().manual_seed(7))

    delta0 = f.inputs[0] - x
    grad = (2 / B) * delta0 @ W @ W.T
    expected_step = 1e-2 * grad / grad.abs().amax(dim=(1, 2), keepdim=True)
    step = delta - delta0
    assert torch.equal(torch.sign(step), torch.sign(grad))
    torch.testing.assert_close(step, expected_step, rtol=1e-4, atol=1e-7)
    # The step raises the divergence.
    assert ((delta @ W) ** 2).sum() > ((delta0 @ W) ** 2).sum()


@settings(max_examples=40, deadline=None)
@given(
    epsilon=st.floats(0.0, 1.0),
    sigma=st.floats(0.0, 2.0),
    step_size=st.floats(0.0, 5.0),
    steps=st.integers(0, 3),
    seed=st.integers(0, 2**16),
)
def test_perturbation_stays_in_the_epsilon_ball(
    epsilon: float, sigma: float, step_size: float, steps: int, seed: int
) -> None:
    net = _mixing_model(seed % 7)
    x = torch.randn(B, L, D, generator=torch.Generator().manual_seed(seed))
    smart = SmoothnessRegularizer(sigma=sigma, epsilon=epsilon, step_size=step_size, steps=steps)
    f = Recorder(net)
    delta = smart.perturbation(f, x, net(x), generator=torch.Generator().manual_seed(seed))
    bound = torch.tensor(epsilon, dtype=x.dtype).item()  # ε as the tensors' dtype rounds it
    assert delta.abs().max().item() <= bound
    assert torch.isfinite(delta).all()
    # What the model saw (apart from the unprojected initial noise of Alg. 1).
    seen = f.inputs[1:] if steps else f.inputs
    for x_tilde in seen:
        assert (x_tilde - x).abs().max().item() <= bound * (1 + 1e-6) + 1e-6  # x + δ rounds


def test_padding_positions_are_not_perturbed() -> None:
    net = _mixing_model()
    x = torch.randn(B, L, D)
    mask = torch.ones(B, L)
    mask[0, 3:] = 0
    mask[2, 1:] = 0
    f = Recorder(net)
    smart = SmoothnessRegularizer(sigma=0.1, epsilon=0.05, step_size=0.1, steps=2)
    term = smart(f, x, net(x), mask=mask)
    assert len(f.inputs) == 3  # two ascent forwards + the final one
    pad = mask == 0
    for x_tilde in f.inputs:
        assert torch.equal(x_tilde[pad], x[pad])
        assert (x_tilde[~pad] != x[~pad]).any()
    assert term.item() > 0


def test_ascent_leaves_no_grad_but_term_backpropagates() -> None:
    torch.manual_seed(0)
    embed = nn.Embedding(11, D)
    net = _mixing_model()
    ids = torch.randint(0, 11, (B, L))
    x = embed(ids)
    outputs = net(x)
    smart = SmoothnessRegularizer(sigma=0.1, epsilon=0.05, step_size=0.1, steps=2)

    smart.perturbation(net, x, outputs)
    assert all(p.grad is None for p in [*net.parameters(), *embed.parameters()])

    term = smart(net, x, outputs)
    assert all(p.grad is None for p in [*net.parameters(), *embed.parameters()])
    term.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    assert embed.weight.grad is not None and embed.weight.grad.abs().sum() > 0


def test_weight_scales_the_term() -> None:
    net = _mixing_model()
    x = torch.randn(B, L, D)
    options = dict(sigma=0.1, epsilon=0.05, step_size=0.1)
    one = SmoothnessRegularizer(weight=1.0, **options)(
        net, x, net(x), generator=torch.Generator().manual_seed(3)
    )
    three = SmoothnessRegularizer(weight=3.0, **options)(
        net, x, net(x), generator=torch.Generator().manual_seed(3)
    )
    torch.testing.assert_close(three, 3 * one)


def test_generator_makes_it_reproducible_and_spares_the_global_rng() -> None:
    net = _mixing_model()
    x = torch.randn(B, L, D)
    smart = SmoothnessRegularizer(sigma=0.1, epsilon=0.05)
    state = torch.get_rng_state()
    a = smart.perturbation(net, x, net(x), generator=torch.Generator().manual_seed(5))
    b = smart.perturbation(net, x, net(x), generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b)


def test_output_independent_of_embeddings_gives_finite_zero_step() -> None:
    bias = torch.randn(C, requires_grad=True)
    f = lambda e: bias.expand(e.shape[0], C)  # noqa: E731
    x = torch.randn(B, L, D)
    smart = SmoothnessRegularizer(sigma=0.0, epsilon=0.1, step_size=0.1, steps=2)
    delta = smart.perturbation(f, x, f(x))
    assert torch.equal(delta, torch.zeros_like(x))


def test_options_are_validated_and_shown() -> None:
    smart = SmoothnessRegularizer(steps=2, weight=3.0, divergence="bernoulli_kl")
    assert "steps=2" in repr(smart) and "bernoulli_kl" in repr(smart)
    assert SmoothnessRegularizer.name == "smart"
    for bad in (
        dict(sigma=-1.0),
        dict(epsilon=-1e-5),
        dict(step_size=float("nan")),
        dict(steps=-1),
        dict(steps=1.5),
        dict(steps=True),
        dict(weight=-3.0),
        dict(divergence="kl"),
    ):
        with pytest.raises((ValueError, TypeError)):
            SmoothnessRegularizer(**bad)  # type: ignore[arg-type]


def test_mask_shape_is_checked() -> None:
    net = _mixing_model()
    x = torch.randn(B, L, D)
    with pytest.raises(ValueError, match="leading dimensions"):
        SmoothnessRegularizer()(net, x, net(x), mask=torch.ones(B, L + 1))


def test_docstring_examples() -> None:
    assert doctest.testmod(_smoothness).failed == 0


def test_epsilon_below_half_precision_spacing_warns() -> None:
    # Under bf16 autocast the first matmul rounds x + δ to bf16: with ε = 1e-5 the model sees x
    # or a one-ulp neighbour, and the term is rounding noise (zero, or far above float32's).
    net = _mixing_model()
    x = torch.randn(B, L, D)
    tiny = SmoothnessRegularizer(sigma=1e-5, epsilon=1e-5)
    fp32 = tiny(net, x, net(x), generator=torch.Generator().manual_seed(0)).item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.warns(RuntimeWarning, match="epsilon=1e-05 is below the spacing of torch.bfloat16"):
            rounded = tiny(net, x, net(x), generator=torch.Generator().manual_seed(0)).item()
        assert not 0.1 * fp32 < rounded < 10 * fp32  # what the warning is about
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            SmoothnessRegularizer(epsilon=5e-2)(net, x, net(x))
    net16 = _mixing_model().to(torch.float16)
    with pytest.warns(RuntimeWarning, match="torch.float16"):
        tiny(net16, x.half(), net16(x.half()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny(net, x, net(x))  # float32: no warning
