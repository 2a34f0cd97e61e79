"""SMART momentum Bregman proximal point (Jiang et al. 2019, Eq. 4–5)."""

from __future__ import annotations

import copy
import doctest
from pathlib import Path

import attrs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from gradbalance.regularizers import BregmanProximalPoint, _bregman


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))


def _perturb_(module: nn.Module, scale: float = 0.1) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))


def test_zero_when_teacher_equals_student() -> None:
    net = _net().eval()
    bregman = BregmanProximalPoint.from_module(net)
    x = torch.randn(5, 4)
    assert bregman.loss(net(x), bregman.teacher_outputs(net, x)).item() == 0.0


def test_teacher_is_a_copy_not_an_alias() -> None:
    net = _net().eval()
    bregman = BregmanProximalPoint.from_module(net)
    before = {k: t.clone() for k, t in bregman.teacher.items()}
    for name, t in [*net.named_parameters(), *net.named_buffers()]:
        assert t.data_ptr() != bregman.teacher[name].data_ptr()
    _perturb_(net)
    for name, t in bregman.teacher.items():
        assert torch.equal(t, before[name])
    x = torch.randn(5, 4)
    # The student moved, the teacher did not: a positive proximal term with student gradients.
    term = bregman.loss(net(x), bregman.teacher_outputs(net, x))
    assert term.item() > 0
    term.backward()
    assert all(p.grad is not None for p in net.parameters())
    assert all(not t.requires_grad for t in bregman.teacher.values())


@settings(max_examples=25, deadline=None)
@given(beta=st.floats(0.0, 1.0), seed=st.integers(0, 1000))
def test_update_follows_the_ema_formula(beta: float, seed: int) -> None:
    net = _net(seed)
    bregman = BregmanProximalPoint.from_module(net, beta=beta)
    old = {k: t.clone() for k, t in bregman.teacher.items()}
    _perturb_(net, 1.0)
    net.train()
    net(torch.randn(8, 4))  # moves the batch-norm buffers too
    bregman.update(net)
    for name, theta in [*net.named_parameters(), *net.named_buffers()]:
        if theta.is_floating_point():
            expected = (1 - beta) * theta.detach() + beta * old[name]
            torch.testing.assert_close(bregman.teacher[name], expected, rtol=1e-6, atol=1e-6)
        else:  # e.g. num_batches_tracked: copied
            assert torch.equal(bregman.teacher[name], theta)


def test_beta_extremes() -> None:
    net = _net()
    frozen = BregmanProximalPoint.from_module(net, beta=1.0)
    follower = BregmanProximalPoint.from_module(net, beta=0.0)
    start = {k: t.clone() for k, t in frozen.teacher.items()}
    _perturb_(net)
    frozen.update(net)
    follower.update(net)
    for name, p in net.named_parameters():
        assert torch.equal(frozen.teacher[name], start[name])
        assert torch.equal(follower.teacher[name], p.detach())


def test_teacher_outputs_use_teacher_weights_without_grad() -> None:
    net = _net().eval()
    snapshot = copy.deepcopy(net)
    bregman = BregmanProximalPoint.from_module(net)
    _perturb_(net)
    x = torch.randn(5, 4)
    out = bregman.teacher_outputs(net, x)
    assert not out.requires_grad
    torch.testing.assert_close(out, snapshot(x))
    # The student's own parameters were restored after the functional call.
    assert not torch.allclose(net(x), out)


def test_tied_weights_stay_tied() -> None:
    net = nn.Sequential(nn.Embedding(7, 3), nn.Linear(3, 7, bias=False))
    net[1].weight = net[0].weight
    bregman = BregmanProximalPoint.from_module(net, divergence="softmax_kl")
    assert list(bregman.teacher) == ["0.weight"]
    ids = torch.tensor([1, 2, 3])
    assert bregman.loss(net(ids), bregman.teacher_outputs(net, ids)).item() == 0.0


def test_state_round_trip_through_a_file(tmp_path: Path) -> None:
    net = _net()
    bregman = BregmanProximalPoint.from_module(net, beta=0.9)
    for _ in range(3):
        _perturb_(net)
        bregman.update(net)
    path = tmp_path / "ckpt.pt"
    torch.save({"model": net.state_dict(), "bregman": bregman.state_dict()}, path)

    restored_net = _net(seed=1)
    restored_net.load_state_dict(torch.load(path)["model"])
    fresh = BregmanProximalPoint.from_module(_net(seed=2), beta=0.9)
    fresh.load_state_dict(torch.load(path)["bregman"])
    assert fresh.teacher.keys() == bregman.teacher.keys()
    for name, t in bregman.teacher.items():
        assert torch.equal(fresh.teacher[name], t)
    # Resumed training continues identically.
    _perturb_(net)
    restored_net.load_state_dict(net.state_dict())
    bregman.update(net)
    fresh.update(restored_net)
    for name, t in bregman.teacher.items():
        assert torch.equal(fresh.teacher[name], t)


def test_mismatches_are_reported() -> None:
    bregman = BregmanProximalPoint.from_module(_net())
    with pytest.raises(ValueError, match="missing"):
        bregman.update(nn.Linear(4, 3))
    with pytest.raises(KeyError, match="unexpected"):
        bregman.load_state_dict({"teacher": {**bregman.teacher, "extra": torch.zeros(1)}})
    bad = dict(bregman.teacher)
    bad["0.weight"] = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="shape"):
        bregman.load_state_dict({"teacher": bad})


def test_options_are_validated_and_shown() -> None:
    bregman = BregmanProximalPoint.from_module(_net(), beta=0.9, weight=2.0)
    text = repr(bregman)
    assert "beta=0.9" in text and "weight=2.0" in text and "tensor" not in text
    assert BregmanProximalPoint.name == "bregman"
    for bad in (dict(beta=1.5), dict(beta=-0.1), dict(weight=-1.0), dict(divergence="nope")):
        with pytest.raises(ValueError):
            BregmanProximalPoint.from_module(_net(), **bad)


def test_weight_scales_the_loss() -> None:
    s, t = torch.randn(4, 3), torch.randn(4, 3)
    one = BregmanProximalPoint(weight=1.0).loss(s, t)
    two = BregmanProximalPoint(weight=2.0).loss(s, t)
    torch.testing.assert_close(two, 2 * one)


def test_docstring_examples() -> None:
    assert doctest.testmod(_bregman).failed == 0


def test_train_mode_teacher_forward_leaves_the_teacher_unchanged() -> None:
    # A train-mode batch norm updates the buffers it is given; the teacher moves only in update().
    net = _net().train()
    bregman = BregmanProximalPoint.from_module(net)
    before = {k: t.clone() for k, t in bregman.teacher.items()}
    bregman.teacher_outputs(net, 3 * torch.randn(8, 4) + 2)
    for name, t in bregman.teacher.items():
        assert torch.equal(t, before[name]), name


def test_teacher_follows_a_cast_module_through_to() -> None:
    net = _net()
    bregman = BregmanProximalPoint.from_module(net, beta=0.5)
    view = attrs.evolve(bregman, divergence="squared_error")  # one teacher, another ℓ_s
    net.to(torch.float64)
    x = torch.randn(5, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"'0.weight' is torch.float64 .* bregman.to\(device, dtype\)"):
        bregman.teacher_outputs(net, x)
    assert bregman.to(torch.float64) is bregman
    assert bregman.teacher["1.num_batches_tracked"].dtype == torch.int64  # as nn.Module.to keeps it
    assert view.teacher["0.weight"].dtype == torch.float64
    bregman.update(net)
    assert bregman.teacher_outputs(net.eval(), x).dtype == torch.float64
