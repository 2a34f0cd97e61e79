"""SMART and Bregman compose with a gradient combiner on a small real model.

Design notes ("SMART"): both regularisers are loss-level wrappers, so each task's *regularised*
loss is what fills that task's row of the per-task gradient buffer. On a real minBERT with three
real heads (SST 5-way logits, Quora one binary logit cross-encoded, STS one regression score
siamese-encoded) we check, per task and against ``torch.autograd.grad``:

    row_t == ∇_shared task_loss_t + ∇_shared SMART_t (+ ∇_shared Bregman_t)

with the SMART noise drawn from the same seeded generator, that every regulariser gradient is
non-zero (one-output heads included: a softmax over one logit would regularise nothing), and that
PCGrad combines the rows and an optimizer steps on the result.

Everything runs with dropout off (probabilities 0 and eval mode), so repeated forwards agree.
"""

from __future__ import annotations

import attrs
import pytest
import torch
from torch import Tensor, nn

import gradbalance
from gradbalance.regularizers import BregmanProximalPoint, SmoothnessRegularizer, divergence
from minbert_tasks.heads import HeadConfig, Inputs, TaskHead
from minbert_tasks.model import BertConfig, MinBert
from minbert_tasks.tasks import PARA, SST, STS, TaskSpec

HIDDEN = 32
BATCH = 4
SMART_SEED = 1234

#: (task, head) pairs: multi-class logits, one binary logit (cross-encoded), one regression score
#: (siamese): the last two are the one-output heads whose SMART term a softmax would zero.
TASKS: list[tuple[TaskSpec, HeadConfig]] = [
    (SST, HeadConfig(pooling="cls", dropout=0.0)),
    (PARA, HeadConfig(pooling="mean", stack="mlp", mlp_layers=1, dropout=0.0)),
    (STS, HeadConfig(pooling="mean", pair_encoding="siamese", dropout=0.0)),
]


class MultiTaskModel(nn.Module):
    """Shared encoder + one head per task; ``model(t, inputs)`` is task ``t``'s output."""

    def __init__(self) -> None:
        super().__init__()
        config = BertConfig.tiny(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        # A wider init than BERT's 0.02 so that outputs depend visibly on the input.
        self.encoder = MinBert(config, initializer_range=0.2)
        self.heads = nn.ModuleList(task.build_head(HIDDEN, head) for task, head in TASKS)

    def forward(self, t: int, inputs: Inputs) -> Tensor:
        head: TaskHead = self.heads[t]  # type: ignore[assignment]
        return head(self.encoder, inputs)


def _sentences(gen: torch.Generator, length: int, pair: bool = False) -> dict[str, Tensor]:
    """A padded batch of random token ids (vocab of ``BertConfig.tiny``), rows of varied length."""
    ids = torch.randint(1, 100, (BATCH, length), generator=gen)
    lengths = torch.tensor([length, length - 2, length - 4, 3])[:BATCH]
    mask = (torch.arange(length)[None] < lengths[:, None]).long()
    types = torch.zeros_like(ids)
    if pair:  # second half is segment b
        types[:, length // 2 :] = 1
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": types * mask}


def _batches() -> list[tuple[Inputs, Tensor]]:
    gen = torch.Generator().manual_seed(0)
    sst = (_sentences(gen, 9), torch.randint(0, 5, (BATCH,), generator=gen))
    para = (_sentences(gen, 12, pair=True), torch.tensor([1.0, 0.0, 1.0, 0.0]))
    sts_inputs = {"a": _sentences(gen, 8), "b": _sentences(gen, 7)}
    sts = (sts_inputs, torch.rand(BATCH, generator=gen) * 5)
    return [sst, para, sts]


def _smart(t: int) -> SmoothnessRegularizer:
    task, head = TASKS[t]
    # Radius and step larger than the paper's 1e-5 so that the term is far above rounding noise.
    return SmoothnessRegularizer(
        sigma=1e-2,
        epsilon=1e-1,
        step_size=1e-1,
        steps=1,
        weight=3.0,
        divergence=task.divergence_for(head),
    )


def _generator(t: int) -> torch.Generator:
    return torch.Generator().manual_seed(SMART_SEED + t)


def _smart_term(model: MultiTaskModel, t: int, inputs: Inputs) -> tuple[Tensor, Tensor]:
    """(clean outputs, SMART term) for task ``t``, through the head's one-tensor SMART view."""
    forward, embeddings, mask = model.heads[t].smart_view(model.encoder, inputs)  # type: ignore[operator]
    outputs = forward(embeddings)
    return outputs, _smart(t).loss(forward, embeddings, outputs, mask, generator=_generator(t))


def _shared(model: MultiTaskModel) -> list[Tensor]:
    return [p for p in model.encoder.parameters() if p.requires_grad]


def _grad(term: Tensor, params: list[Tensor]) -> Tensor:
    grads = torch.autograd.grad(term, params, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params)])


def _close(actual: Tensor, expected: Tensor) -> None:
    # Float32, same graph up to summation order: relative to the row's scale.
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6 * max(scale, 1e-12))


@pytest.fixture
def model() -> MultiTaskModel:
    torch.manual_seed(0)
    return MultiTaskModel().eval()


def test_divergences_match_one_output_heads(model: MultiTaskModel) -> None:
    names = [task.divergence_for(head) for task, head in TASKS]
    assert names == ["softmax_kl", "bernoulli_kl", "squared_error"]
    with torch.no_grad():
        shapes = [model(t, inputs).shape for t, (inputs, _) in enumerate(_batches())]
    assert shapes == [(BATCH, 5), (BATCH,), (BATCH,)]


def test_smart_rows_are_task_gradient_plus_regulariser_gradient_then_pcgrad_steps(
    model: MultiTaskModel,
) -> None:
    batches = _batches()
    shared = _shared(model)
    buffer = gradbalance.TaskGradients(model.encoder, num_tasks=len(TASKS))
    assert buffer.parameters == shared

    # Reference gradients first, with autograd.grad (leaves no .grad anywhere).
    plain: list[Tensor] = []
    smart: list[Tensor] = []
    for t, (inputs, labels) in enumerate(batches):
        task = TASKS[t][0]
        plain.append(_grad(task.loss(model(t, inputs), labels), shared))
        _, term = _smart_term(model, t, inputs)
        assert term.item() > 0, f"{task.name}: SMART term is zero"
        smart.append(_grad(term, shared))

        # The SMART term by hand: same noise, then ℓ_s(f(x + δ*), f(x)) with both sides live.
        forward, embeddings, mask = model.heads[t].smart_view(model.encoder, inputs)  # type: ignore[operator]
        outputs = forward(embeddings)
        regularizer = _smart(t)
        delta = regularizer.perturbation(forward, embeddings, outputs, mask, generator=_generator(t))
        assert 0 < delta.abs().max() <= torch.tensor(regularizer.epsilon, dtype=delta.dtype)
        by_hand = regularizer.weight * divergence(regularizer.divergence)(
            forward(embeddings + delta), outputs
        )
        torch.testing.assert_close(by_hand, term, rtol=1e-6, atol=0.0)
        _close(_grad(by_hand, shared), smart[t])
    assert all(p.grad is None for p in model.parameters())

    # The training step: each task's regularised loss fills its row.
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    optimizer.zero_grad()
    for t, (inputs, labels) in enumerate(batches):
        with buffer.task(t):
            outputs, term = _smart_term(model, t, inputs)
            (TASKS[t][0].loss(outputs, labels) + term).backward()

    for t, (task, _) in enumerate(TASKS):
        norm = smart[t].norm().item()
        assert norm > 1e-2 * plain[t].norm().item(), f"{task.name}: SMART gradient negligible"
        _close(buffer.rows[t], plain[t] + smart[t])
        # The regulariser really moved the row: it is not the unregularised gradient.
        assert (buffer.rows[t] - plain[t]).norm().item() > 0.5 * norm
    # Heads are task-specific: their grads accumulated normally, outside the buffer.
    assert all(p.grad is not None for head in model.heads for p in head.parameters())

    rows = buffer.rows.clone()
    before = [p.detach().clone() for p in model.parameters()]
    info = buffer.combine(gradbalance.create("pcgrad", seed=0))
    torch.testing.assert_close(buffer.result, gradbalance.create("pcgrad", seed=0).combine(rows))
    assert torch.isfinite(info.direction).all()
    torch.testing.assert_close(torch.cat([p.grad.reshape(-1) for p in shared]), buffer.result)  # type: ignore[union-attr]
    optimizer.step()
    after = list(model.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(after, before))


def test_bregman_composes_the_same_way(model: MultiTaskModel) -> None:
    batches = _batches()
    shared = _shared(model)
    bregman = BregmanProximalPoint.from_module(model, beta=0.9, weight=1.0)
    # One teacher, one divergence per task: views that share the teacher's tensors.
    proximal = [attrs.evolve(bregman, divergence=task.divergence_for(head)) for task, head in TASKS]
    assert all(p.teacher is bregman.teacher for p in proximal)

    # Move the student off the teacher by one SGD step on the summed task losses.
    sgd = torch.optim.SGD(model.parameters(), lr=0.5)
    sum(TASKS[t][0].loss(model(t, x), y) for t, (x, y) in enumerate(batches)).backward()  # type: ignore[union-attr]
    sgd.step()
    sgd.zero_grad(set_to_none=True)
    teacher_before = {k: v.clone() for k, v in bregman.teacher.items()}

    def bregman_term(t: int, outputs: Tensor, inputs: Inputs) -> Tensor:
        return proximal[t].loss(outputs, proximal[t].teacher_outputs(model, t, inputs))

    plain, smart, prox = [], [], []
    for t, (inputs, labels) in enumerate(batches):
        plain.append(_grad(TASKS[t][0].loss(model(t, inputs), labels), shared))
        smart.append(_grad(_smart_term(model, t, inputs)[1], shared))
        term = bregman_term(t, model(t, inputs), inputs)
        assert term.item() > 0, f"{TASKS[t][0].name}: Bregman term is zero"
        prox.append(_grad(term, shared))

    buffer = gradbalance.TaskGradients(model.encoder, num_tasks=len(TASKS))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    optimizer.zero_grad()
    for t, (inputs, labels) in enumerate(batches):
        with buffer.task(t):
            outputs, term = _smart_term(model, t, inputs)
            loss = TASKS[t][0].loss(outputs, labels) + term + bregman_term(t, outputs, inputs)
            loss.backward()

    for t, (task, _) in enumerate(TASKS):
        assert prox[t].norm().item() > 1e-2 * plain[t].norm().item(), f"{task.name}: Bregman ~ 0"
        _close(buffer.rows[t], plain[t] + smart[t] + prox[t])
    # The teacher is a copy, not an alias, and receives no gradient.
    for name, teacher in bregman.teacher.items():
        assert teacher.grad is None
        torch.testing.assert_close(teacher, teacher_before[name], rtol=0, atol=0)

    buffer.combine(gradbalance.create("pcgrad", seed=0))
    optimizer.step()
    bregman.update(model)
    student = dict(model.named_parameters())
    for name, teacher in bregman.teacher.items():
        assert torch.isfinite(teacher).all()
        if name in student:  # θ̃ ← (1−β)θ + βθ̃
            expected = 0.1 * student[name].detach() + 0.9 * teacher_before[name]
            torch.testing.assert_close(teacher, expected, rtol=1e-5, atol=1e-6)
    assert all(torch.isfinite(p).all() for p in model.parameters())
