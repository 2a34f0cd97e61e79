"""The combiner under test, its runs over sequences of steps, and the kit's tolerance model.

Tolerance: a check compares two results that agree in exact arithmetic but not in floating
point (rows reordered, scaled, split into segments, ...). How far apart they may be depends on
the method's conditioning at that input, which the kit cannot know for a plugin, so it
measures it (:meth:`Subject.deviations`): the same steps are run again with every entry of
``G`` changed by a random relative ``±η``, ``η = 4 √P ε`` (about the rounding of a
length-``P`` dot product in the arithmetic of precision ``ε`` the Gramian is formed in) and,
for a :class:`~gradbalance.GramianCombiner`, with every Gramian entry moved by
``±η √(K_ii K_jj)``. The result may differ by :data:`SAFETY` times the largest response or
times a floor: the rounding of the sum it is (``T ε Σ_k |w_k g_kp|``) and, for Gramian
combiners, ``√ε`` of the longest row (the resolution of a Gramian), plus :data:`SAFETY` ``T √P ε ‖d‖`` (see :func:`tolerance`).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import torch
from torch import Tensor

from .._combiner import GramianCombiner
from .strategies import Steps

#: Multiple of the measured response (and of ``ε ‖d‖``) a result may be off by.
SAFETY = 8.0
#: The perturbation probe's size is this times ``√P ε``.
PROBE = 4.0
_PROBE_SEEDS = (0, 1)
_EPS64 = torch.finfo(torch.float64).eps


@attrs.frozen
class Kit:
    """Settings of a conformance run (sizes stay small: the checks are about behaviour)."""

    max_examples: int = 20
    max_tasks: int = 6
    max_columns: int = 64
    max_steps: int = 3
    device: str = "cpu"
    dtypes: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
    #: Let hypothesis shrink a failing example (each try runs the combiner many times: minutes).
    shrink: bool = False


@attrs.frozen
class Subject:
    """A combiner class with the options to build it, and the kit's settings."""

    cls: type
    options: Mapping[str, Any]
    kit: Kit

    def make(self) -> Any:
        return self.cls(**self.options)

    @property
    def stateful(self) -> bool:
        """Whether a fresh instance has any state to save (an RNG stream, EMA targets)."""
        return bool(self.make().state_dict())

    @property
    def declared(self) -> frozenset:
        return frozenset(getattr(self.cls, "properties", frozenset()))

    def run(
        self, matrices: Sequence[Tensor], segments: Sequence[int] | None, combiner: Any = None
    ) -> list[Tensor]:
        """The results of one (fresh unless given) instance over the steps, in order."""
        combiner = self.make() if combiner is None else combiner
        return [combiner.combine(G, segments) for G in matrices]

    def deviations(self, steps: Steps, eps: float, gramian: bool = True) -> list[Tensor]:
        """Per step, the elementwise largest change of the result when every input entry moves
        by a random relative ``±η`` (the probe of the module docstring); float64."""
        matrices = [G.double() for G in steps.matrices]
        base = self.run(matrices, steps.segments)
        eta = PROBE * math.sqrt(steps.shape[1]) * eps
        runs = [self.run([_perturb(G, eta, seed) for G in matrices], steps.segments) for seed in _PROBE_SEEDS]
        if issubclass(self.cls, GramianCombiner):
            # A rounded Gramian is not the Gramian of nearby rows: the norm of a combination
            # that cancels comes out ~√ε ‖g‖, not ~ε ‖g‖, which only perturbing K itself shows.
            probed = _gramian_probe(self.cls, eta)
            runs += [self.run(matrices, steps.segments, probed(self.options, seed)) for seed in _PROBE_SEEDS]
        # The rounding of d_p = Σ_k w_k g_kp itself, which the probes miss where it cancels to 0;
        # and for a Gramian method, √ε of the segment's longest row: a Gramian is known to
        # ε max_k ‖g_k‖², so it resolves a combination only to √ε max_k ‖g_k‖, and a solver's
        # active-set and stopping decisions move its answer by that much (seen on MGDA with a
        # min-norm point as short as a 1e-10 row, and on Nash-MTL).
        tasks = steps.shape[0]
        worst = [tasks * eps * m for m in self.magnitudes(matrices, steps.segments)]
        if gramian and issubclass(self.cls, GramianCombiner):
            for G, w in zip(matrices, worst):
                for piece in pieces(steps.segments, G.shape[1]):
                    width = piece.stop - piece.start
                    resolved = math.sqrt(eps) * float(G[:, piece].norm(dim=1).max()) / math.sqrt(width)
                    w[piece] = w[piece].clamp_min(resolved)
        for moved in runs:
            worst = [torch.maximum(w, (m - b).abs()) for w, m, b in zip(worst, moved, base)]
        return worst

    def magnitudes(self, matrices: Sequence[Tensor], segments: Sequence[int] | None) -> list[Tensor]:
        """Per step and column, ``Σ_k |w_k g_kp|``, the sizes each entry of the result is summed
        from (from the weights a fresh instance reports; ``|d_p|`` where it reports none)."""
        combiner = self.make()
        with_info = getattr(combiner, "combine_with_info", None)
        sizes = []
        for G in matrices:
            if with_info is None:
                sizes.append(combiner.combine(G, segments).double().abs())
                continue
            info = with_info(G, segments)
            size = info.direction.double().abs()
            if info.weights is not None:
                for s, piece in enumerate(pieces(segments, G.shape[1])):
                    weights = info.weights[s].abs().to(device=G.device, dtype=torch.float64)
                    size[piece] = torch.maximum(size[piece], weights @ G[:, piece].double().abs())
            sizes.append(size)
        return sizes


def tolerance(
    deviation: Tensor,
    result: Tensor,
    tasks: int,
    eps: float = _EPS64,
    out_eps: float = 0.0,
    floor: float = 0.0,
) -> float:
    """How far ``result`` (one slice of ``n`` columns) may be off: :data:`SAFETY` times the
    probe's response ``deviation`` plus ``T √n ε ‖result‖`` (the rounding of ``T`` rows
    combined, and of the Gramian's length-``n`` dot products, which a solver that stops at its
    own rounding keeps), plus ``out_eps ‖result‖`` (the result's rounding to its dtype) and
    ``floor``."""
    size = float(result.double().norm())
    spread = tasks * math.sqrt(max(result.numel(), 1)) * eps * size
    return SAFETY * (float(deviation.norm()) + spread + out_eps * size + floor) + 1e-300


def _gramian_probe(cls: type[GramianCombiner], eta: float) -> Callable[[Mapping[str, Any], int], Any]:
    """A factory of instances of a subclass of ``cls`` whose weights see every Gramian entry
    moved by a random ``±η √(K_ii K_jj)`` (symmetric), the size of its rounding."""

    def make(options: Mapping[str, Any], seed: int) -> Any:
        generator = torch.Generator().manual_seed(seed)

        def weights(self: Any, gramian: Tensor) -> Tensor:
            signs = (
                torch.randint(0, 2, tuple(gramian.shape), generator=generator, dtype=gramian.dtype) * 2 - 1
            )
            signs = signs.triu() + signs.triu(1).mT
            roots = gramian.diagonal(dim1=-2, dim2=-1).clamp_min(0).sqrt()
            return cls.weights(self, gramian + eta * signs * roots[..., :, None] * roots[..., None, :])

        return type(cls.__name__, (cls,), {"weights": weights})(**options)

    return make


def _perturb(G: Tensor, eta: float, seed: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, tuple(G.shape), generator=gen, dtype=torch.float64) * 2 - 1
    return G * (1 + eta * signs.to(G.device))


def assert_close(got: Tensor, want: Tensor, tol: float, what: str) -> None:
    """Fail, saying how far apart and what was compared, unless ``‖got − want‖ ≤ tol``."""
    err = float((got.double() - want.double()).norm())
    if not err <= tol:
        raise AssertionError(
            f"{what}: results differ by {err:.3g} (norm), more than the tolerance {tol:.3g} "
            f"(‖expected‖ = {float(want.double().norm()):.3g})"
        )


def pieces(segments: Sequence[int] | None, P: int) -> list[slice]:
    """The column slices of the segments (one slice for ``None``)."""
    sizes = [P] if segments is None else list(segments)
    bounds = [0]
    for size in sizes:
        bounds.append(bounds[-1] + size)
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])]


def round_trip(state: Mapping[str, Any]) -> Any:
    """``state`` through ``torch.save``/``torch.load``, as a checkpoint carries it."""
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)
