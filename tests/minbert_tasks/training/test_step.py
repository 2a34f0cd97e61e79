"""Pieces of the training step that need no model: the logged gradient statistics."""

import torch

import gradbalance
from minbert_tasks.training._step import gradient_stats


def test_gradient_stats_read_the_whole_gramian_from_its_segments():
    rows = torch.tensor(
        [[3.0, 0.0, 4.0, 0.0], [0.0, 2.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]], dtype=torch.float64
    )
    segments = torch.stack([rows[:, :2] @ rows[:, :2].T, rows[:, 2:] @ rows[:, 2:].T])  # two column segments
    stats = gradient_stats(gradbalance.Combination(rows.sum(0), segments))
    assert stats["grad_norms"] == [5.0, 2.0, 1.0]
    assert stats["cosines"] == [[1.0, 0.0, 0.6], [0.0, 1.0, 0.0], [0.6, 0.0, 1.0]]
    assert gradient_stats(gradbalance.Combination(rows.sum(0))) == {"cosines": None, "grad_norms": None}
