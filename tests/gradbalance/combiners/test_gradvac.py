import io

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gradbalance import GradVac
from gradbalance.combiners._solvers import SMALL_TASKS

from _matrices import ReferenceGradVac, reference_pcgrad, scale_of, task_matrices


@settings(max_examples=100, deadline=None)
@given(
    G=task_matrices(max_columns=800),
    seed=st.integers(0, 1000),
    # A beta near 1 drives a target to the last cosine; with (anti)parallel rows that is ±1
    # and the correction divides by √(1−φ̂²) ≈ 0, so both sides amplify rounding noise (found
    # by hypothesis at beta 0.9 and 1). High beta is checked on general-position rows below.
    beta=st.sampled_from([0.0, 0.01, 0.5]),
    steps=st.integers(1, 4),
)
def test_matches_vector_space_reference_over_steps(G, seed, beta, steps):
    ours, ref = GradVac(beta=beta, seed=seed), ReferenceGradVac(beta, seed)
    for step in range(steps):
        Gk = G * (1 + 0.3 * step)  # the targets carry over, the inputs change
        got, want = ours.combine(Gk), ref.step(Gk)
        assert torch.isfinite(got).all()
        tol = 1e-8 * max(scale_of(Gk), float(want.norm())) * G.shape[0] ** 2
        assert (got - want).norm() <= tol
        torch.testing.assert_close(ours.targets[0], ref.targets, atol=1e-9, rtol=0)


@settings(max_examples=40, deadline=None)
@given(
    G=task_matrices(max_columns=400, kinds=("normal",)),
    seed=st.integers(0, 100),
    beta=st.sampled_from([0.9, 1.0]),
)
def test_high_beta_matches_the_reference_on_rows_in_general_position(G, seed, beta):
    assume(G.shape[1] >= 4 * G.shape[0])  # random rows in many more dimensions: well conditioned
    ours, ref = GradVac(beta=beta, seed=seed), ReferenceGradVac(beta, seed)
    for step in range(4):
        Gk = G * (1 + 0.3 * step)
        got, want = ours.combine(Gk), ref.step(Gk)
        tol = 1e-8 * max(scale_of(Gk), float(want.norm())) * G.shape[0] ** 2
        assert (got - want).norm() <= tol


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), beta=st.floats(0.001, 0.99), P=st.integers(2, 300))
def test_two_tasks_closed_form_over_steps(seed, beta, P):
    gen = torch.Generator().manual_seed(seed)
    g1 = torch.randn(P, generator=gen, dtype=torch.float64)
    g2 = -0.6 * g1 + 0.4 * torch.randn(P, generator=gen, dtype=torch.float64)
    G = torch.stack([g1, g2])
    c = float(torch.dot(g1, g2) / (g1.norm() * g2.norm()))
    combiner = GradVac(beta=beta, seed=0)
    for k in range(1, 6):
        hat = 1 - (1 - beta) ** (k - 1)  # target before step k, as a fraction of c
        hat *= c
        d = combiner.combine(G)
        # With two tasks each row sees one partner: the correction sets cos(g_i', g_j) to
        # the target exactly, then the target moves toward c by the EMA.
        if c < hat:
            s_hat, s_c = (1 - hat * hat) ** 0.5, (1 - c * c) ** 0.5
            a1 = g1.norm() * (hat * s_c - c * s_hat) / (g2.norm() * s_hat)
            a2 = g2.norm() * (hat * s_c - c * s_hat) / (g1.norm() * s_hat)
            want = g1 + a1 * g2 + g2 + a2 * g1
            corrected = g1 + a1 * g2
            cos1 = torch.dot(corrected, g2) / (corrected.norm() * g2.norm())
            # Near c = −1 the correction cancels most of g1 (in two dimensions, say), and the
            # cosine of what is left carries that cancellation's rounding.
            assert abs(float(cos1) - hat) < 1e-9 * float(g1.norm() / corrected.norm())
        else:
            want = g1 + g2
        torch.testing.assert_close(d, want, rtol=1e-9, atol=1e-9)
        expected_target = (1 - (1 - beta) ** k) * c
        assert combiner.targets[0, 0, 1].item() == pytest.approx(expected_target, abs=1e-12)
        assert combiner.targets[0, 1, 0].item() == pytest.approx(expected_target, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(
    G=task_matrices(max_tasks=SMALL_TASKS, max_columns=40),
    seed=st.integers(0, 1000),
    beta=st.sampled_from([0.0, 0.01, 0.5]),
)
def test_one_small_segment_in_python_floats_matches_the_numpy_walk(G, seed, beta):
    # One segment of a few tasks takes the Python-float walk, two take numpy's; same orders
    # from the same seed, targets carried over four steps on column halves and wholes.
    small, batched = GradVac(beta=beta, seed=seed), GradVac(beta=beta, seed=seed)
    half = G.shape[1] // 2
    for rows in (G, G[:, :half], G[:, half:], G):
        K = (rows @ rows.T)[None]
        got = small.weights(K)[0]
        want = batched.weights(K.expand(2, -1, -1).contiguous())[0]
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9 * float(want.abs().max()))
        assert batched.targets is not None
        torch.testing.assert_close(small.targets[0], batched.targets[0], rtol=0, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(G=task_matrices(max_columns=500), seed=st.integers(0, 99))
def test_first_step_with_zero_targets_is_pcgrad(G, seed):
    got = GradVac(beta=0.3, seed=seed).combine(G)
    want = reference_pcgrad(G, seed)
    assert (got - want).norm() <= 1e-8 * scale_of(G) * G.shape[0] ** 2


def test_state_round_trip_through_torch_save_resumes_exactly():
    gen = torch.Generator().manual_seed(0)
    G = torch.randn(4, 100, generator=gen)
    G[1] = -G[0] + 0.1 * G[1]
    a = GradVac(beta=0.1, seed=3)
    for _ in range(3):
        a.combine(G, [60, 40])
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = GradVac(beta=0.1, seed=12345)
    b.load_state_dict(torch.load(buf, weights_only=True))
    for _ in range(3):
        torch.testing.assert_close(a.combine(G, [60, 40]), b.combine(G, [60, 40]), rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU to map the checkpoint to")
def test_state_loaded_with_map_location_cuda_resumes_exactly():
    # torch.load(path, map_location="cuda") moves every tensor of the state, the generator's
    # byte state and the EMA targets included; the combiner keeps both on the CPU.
    G = torch.randn(3, 50, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a = GradVac(beta=0.1, seed=3)
    a.combine(G)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = GradVac(beta=0.1, seed=12345)
    b.load_state_dict(torch.load(buf, map_location="cuda", weights_only=True))
    assert b.targets.device.type == "cpu"
    torch.testing.assert_close(a.combine(G.cuda()), b.combine(G.cuda()), rtol=0, atol=0)


def test_beta_validated_and_shown():
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\]"):
        GradVac(beta=1.5)
    assert repr(GradVac(beta=0.5, seed=2)) == "GradVac(beta=0.5, seed=2)"
    assert GradVac().beta == 0.01


def test_changing_segment_count_is_a_clear_error():
    g = GradVac(seed=0)
    g.combine(torch.randn(3, 10))
    with pytest.raises(ValueError, match="1 segments and 3 tasks, but got 2 segments"):
        g.combine(torch.randn(3, 10), [5, 5])
