"""Task specs: collation, losses (reference values and training), predictions, metrics."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gradbalance.regularizers import SmoothnessRegularizer, divergence
from minbert_tasks import metrics
from minbert_tasks.data import PairExample, SentenceExample, default_data_dir
from minbert_tasks.heads import HeadConfig
from minbert_tasks.model import BertConfig, MinBert, Tokenizer
from minbert_tasks.tasks import BUILTIN_TASKS, PARA, SST, STS, StandardReader, TaskSpec, inputs_to

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "dog",
         "ran", "a", "good", "bad", "film", "very", "is", "."]  # fmt: skip

SENTENCES = [
    SentenceExample("s1", "a very good film .", 4),
    SentenceExample("s2", "a bad film", 0),
    SentenceExample("s3", "the film is good", 3),
    SentenceExample("s4", "the cat sat on the mat", 2),
]
PARAS = [
    PairExample("p1", "the cat sat", "the cat sat on the mat", 1),
    PairExample("p2", "a dog ran", "a good film", 0),
    PairExample("p3", "the film is bad", "a bad film", 1),
    PairExample("p4", "the dog", "very good", 0),
]
STSS = [
    PairExample("t1", "the cat sat", "the cat sat", 5.0),
    PairExample("t2", "a dog ran", "a good film", 0.4),
    PairExample("t3", "the film is bad", "a bad film", 3.6),
    PairExample("t4", "the dog", "the cat", 1.8),
]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    folder = tmp_path_factory.mktemp("vocab")
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    return Tokenizer.from_folder(folder)


def test_builtins_describe_the_three_tasks() -> None:
    assert set(BUILTIN_TASKS) == {"sst", "para", "sts"}
    assert (SST.kind, SST.output, SST.num_outputs) == ("single", "multiclass", 5)
    assert (PARA.kind, PARA.output, PARA.num_outputs) == ("pair", "binary", 1)
    assert (STS.kind, STS.output, STS.num_outputs, STS.score_range) == ("pair", "regression", 1, (0.0, 5.0))
    assert (SST.metric_name, PARA.metric_name, STS.metric_name) == ("accuracy", "accuracy", "pearson")


def test_divergences_match_the_head_and_exist_in_gradbalance() -> None:
    assert (SST.divergence, PARA.divergence, STS.divergence) == (
        "softmax_kl",
        "bernoulli_kl",
        "squared_error",
    )
    assert STS.divergence_for(HeadConfig(output="classes")) == "softmax_kl"
    assert STS.divergence_for(HeadConfig(pair_encoding="siamese", output="cosine")) == "squared_error"
    for name in ("softmax_kl", "bernoulli_kl", "squared_error"):
        assert callable(divergence(name))


def test_collate_single_cross_and_siamese(tokenizer: Tokenizer) -> None:
    inputs, labels = SST.collate(SENTENCES, tokenizer, max_length=16)
    assert set(inputs) == {"input_ids", "attention_mask", "token_type_ids"}
    assert inputs["input_ids"].shape == (4, 8)  # "the cat sat on the mat" + [CLS] [SEP]
    assert labels.dtype == torch.long and labels.tolist() == [4, 0, 3, 2]

    inputs, labels = PARA.collate(PARAS, tokenizer, max_length=16, pair_encoding="cross")
    assert inputs["token_type_ids"][0].tolist() == [0] * 5 + [1] * 7  # [CLS] a [SEP] | b [SEP]
    assert labels.dtype == torch.float32 and labels.tolist() == [1.0, 0.0, 1.0, 0.0]

    inputs, labels = STS.collate(STSS, tokenizer, max_length=16, pair_encoding="siamese")
    assert set(inputs) == {"a", "b"}
    assert inputs["a"]["input_ids"].shape == (4, 6) and inputs["b"]["input_ids"].shape == (4, 5)
    assert inputs["b"]["token_type_ids"].eq(0).all()
    torch.testing.assert_close(labels, torch.tensor([5.0, 0.4, 3.6, 1.8]))

    # hybrid: the siamese pair and the cross-encoded pair, the same tensors as each layout alone.
    hybrid, _ = PARA.collate(PARAS, tokenizer, max_length=16, pair_encoding="hybrid")
    siamese, _ = PARA.collate(PARAS, tokenizer, max_length=16, pair_encoding="siamese")
    cross, _ = PARA.collate(PARAS, tokenizer, max_length=16, pair_encoding="cross")
    assert set(hybrid) == {"a", "b", "ab"}
    for key in ("a", "b"):
        assert all(torch.equal(hybrid[key][k], siamese[key][k]) for k in siamese[key])
    assert all(torch.equal(hybrid["ab"][k], cross[k]) for k in cross)

    # The default encoding is the task's head's; truncation respects max_length.
    inputs, _ = PARA.collate(PARAS, tokenizer, max_length=6)
    assert "input_ids" in inputs and inputs["input_ids"].shape[1] == 6


def test_collate_labels_and_errors(tokenizer: Tokenizer) -> None:
    unlabeled = [SentenceExample("u1", "a film", None), SentenceExample("u2", "the cat", None)]
    _, labels = SST.collate(unlabeled, tokenizer)
    assert labels is None
    with pytest.raises(ValueError, match="1 of 3 examples have no label"):
        SST.collate([*unlabeled[:1], *SENTENCES[:2]], tokenizer)
    with pytest.raises(ValueError, match="siamese"):
        SST.collate(SENTENCES, tokenizer, pair_encoding="siamese")
    with pytest.raises(ValueError, match="hybrid"):
        SST.collate(SENTENCES, tokenizer, pair_encoding="hybrid")
    with pytest.raises(ValueError, match="cross, siamese, hybrid"):
        PARA.collate(PARAS, tokenizer, pair_encoding="bi")
    with pytest.raises(TypeError, match="PairExample"):
        PARA.collate(SENTENCES, tokenizer)
    with pytest.raises(ValueError, match="empty"):
        STS.collate([], tokenizer)


def test_lengths_are_the_padded_length_each_example_needs(tokenizer: Tokenizer) -> None:
    def padded(inputs: dict) -> list[int]:
        return inputs["attention_mask"].sum(1).tolist()

    cases = ((SST, SENTENCES, None), (PARA, PARAS, "cross"), (STS, STSS, "siamese"), (PARA, PARAS, "hybrid"))
    for task, examples, encoding in cases:
        lengths = task.lengths(examples, tokenizer, max_length=16, pair_encoding=encoding)
        one_by_one = [task.collate([e], tokenizer, 16, encoding)[0] for e in examples]
        if encoding == "siamese":  # the longer side sets the batch's padded length
            assert lengths == [max(padded(i["a"])[0], padded(i["b"])[0]) for i in one_by_one]
        elif encoding == "hybrid":  # the cross-encoded pair is the longest sequence
            assert lengths == [padded(i["ab"])[0] for i in one_by_one]
        else:
            assert lengths == [padded(i)[0] for i in one_by_one]
    # Truncation caps the count, and computing lengths does not count as truncating inputs.
    before = tokenizer.truncated_total
    assert PARA.lengths(PARAS[:1], tokenizer, max_length=16, pair_encoding="cross") == [12]
    assert PARA.lengths(PARAS, tokenizer, max_length=6, pair_encoding="cross") == [6, 6, 6, 6]
    assert tokenizer.truncated_total == before
    assert SST.lengths([], tokenizer) == []


def test_loss_reference_values() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5, 0.0], [0.0, 1.0, 0.0, 0.0, 3.0]])
    gold = torch.tensor([0, 4])
    torch.testing.assert_close(SST.loss(logits, gold), F.cross_entropy(logits, gold))

    logit = torch.tensor([1.5, -0.5, 0.0])
    y = torch.tensor([1.0, 0.0, 1.0])
    expected = -(y * torch.log(torch.sigmoid(logit)) + (1 - y) * torch.log(1 - torch.sigmoid(logit))).mean()
    torch.testing.assert_close(PARA.loss(logit, y), expected)

    score = torch.tensor([4.0, 7.0])  # raw regression output is not clamped for the loss
    torch.testing.assert_close(STS.loss(score, torch.tensor([5.0, 5.0])), torch.tensor(2.5))

    bins = torch.randn(3, 6)
    labels = torch.tensor([2.6, 0.2, 4.5])  # rounded: 3, 0, 4 (round half to even)
    torch.testing.assert_close(STS.loss(bins, labels), F.cross_entropy(bins, torch.tensor([3, 0, 4])))


def test_predictions_are_formatted() -> None:
    sst = SST.predict(torch.tensor([[0.1, 0.0, 0.0, 0.0, 2.0], [3.0, 0.0, 0.0, 0.0, 0.0]]))
    assert sst == [4, 0] and all(type(p) is int for p in sst)
    para = PARA.predict(torch.tensor([0.3, -0.1, 0.0]))
    assert para == [1, 0, 0] and all(type(p) is int for p in para)
    sts = STS.predict(torch.tensor([6.2, -0.4, 2.25]))
    assert sts == [5.0, 0.0, 2.25] and all(type(p) is float for p in sts)
    # A classes head predicts the expected bin value.
    big = 50.0
    bins = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, big, big, 0.0, 0.0]])
    got = STS.predict(bins)
    assert got[0] == pytest.approx(2.5) and got[1] == pytest.approx(2.5, abs=1e-6)
    assert STS.predict(torch.tensor([[-big, -big, -big, -big, -big, big]])) == [pytest.approx(5.0)]


def test_metrics_and_unit_scores() -> None:
    assert SST.metric([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75
    assert PARA.metric(torch.tensor([1, 0]), torch.tensor([1.0, 1.0])) == 0.5
    assert STS.metric([1.0, 2.0, 3.0], [2.0, 4.0, 7.0]) == pytest.approx(
        metrics.pearson([1, 2, 3], [2, 4, 7])
    )
    assert math.isnan(STS.metric([1.0, 1.0], [0.0, 5.0]))
    # The mean of the three tasks' 0-1 scores is the CS224N overall score.
    units = [SST.unit_score(0.521), PARA.unit_score(0.871), STS.unit_score(0.891)]
    assert sum(units) / 3 == pytest.approx(metrics.overall_score(0.521, 0.871, 0.891))


@pytest.mark.parametrize(
    ("task", "examples", "config"),
    [
        (SST, SENTENCES, HeadConfig(pooling="mean", stack="mlp", mlp_layers=2, cnn=True, residual=True)),
        (PARA, PARAS, HeadConfig()),
        (PARA, PARAS, HeadConfig(pooling="mean", pair_encoding="siamese")),
        (PARA, PARAS, HeadConfig(pooling="mean", pair_encoding="siamese", output="cosine_logit")),
        (PARA, PARAS, HeadConfig(pooling="mean", pair_encoding="hybrid", stack="mlp", pair_symmetric=True)),
        (STS, STSS, HeadConfig(pooling="max")),
        (STS, STSS, HeadConfig(pooling="pooler", output="classes")),
        (STS, STSS, HeadConfig(pooling="mean", pair_encoding="siamese", output="cosine")),
    ],
    ids=[
        "sst-cnn-mlp",
        "para-cross",
        "para-siamese",
        "para-cosine-logit",
        "para-hybrid",
        "sts-regression",
        "sts-classes",
        "sts-cosine",
    ],
)
def test_loss_decreases_with_training(
    tokenizer: Tokenizer, task: TaskSpec, examples: list, config: HeadConfig
) -> None:
    torch.manual_seed(0)
    encoder = MinBert(BertConfig.tiny(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    head = task.build_head(encoder.config.hidden_size, config)
    inputs, labels = task.collate(examples, tokenizer, max_length=16, pair_encoding=config.pair_encoding)
    params = [*encoder.parameters(), *head.parameters()]
    # Adam: plain SGD on a random tiny BERT stalls (near-identical [CLS] states) or diverges.
    optimizer = torch.optim.Adam(params, lr=3e-3)
    head.eval()  # no dropout: the loss curve is deterministic
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = task.loss(head(encoder, inputs), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < 0.6 * losses[0], losses


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.35])
def test_label_smoothing_matches_the_mixed_target_reference(epsilon: float) -> None:
    g = torch.Generator().manual_seed(0)
    logits, classes = torch.randn(7, 5, generator=g), torch.randint(0, 5, (7,), generator=g)
    target = (1 - epsilon) * torch.nn.functional.one_hot(classes, 5).float() + epsilon / 5
    reference = -(target * logits.log_softmax(-1)).sum(-1).mean()
    torch.testing.assert_close(SST.loss(logits, classes, label_smoothing=epsilon), reference)
    logit, label = torch.randn(7, generator=g), torch.randint(0, 2, (7,), generator=g).float()
    p, y = logit.sigmoid(), (1 - epsilon) * label + epsilon / 2
    reference = -(y * p.log() + (1 - y) * (1 - p).log()).mean()
    torch.testing.assert_close(PARA.loss(logit, label, label_smoothing=epsilon), reference)
    bins, scores = torch.randn(7, 6, generator=g), torch.rand(7, generator=g) * 5
    smoothed = STS.loss(bins, scores, label_smoothing=epsilon)  # a ``classes`` head: CE over bins
    target = (1 - epsilon) * torch.nn.functional.one_hot(scores.round().long(), 6).float() + epsilon / 6
    torch.testing.assert_close(smoothed, -(target * bins.log_softmax(-1)).sum(-1).mean())


def test_label_smoothing_is_refused_for_a_regressed_score() -> None:
    with pytest.raises(ValueError, match="class outputs"):
        STS.loss(torch.zeros(3), torch.ones(3), label_smoothing=0.1)
    cosine = HeadConfig(pair_encoding="siamese", output="cosine")
    with pytest.raises(ValueError, match=r"sts: label_smoothing=0.1 needs class outputs.*output='cosine'"):
        STS.check_label_smoothing(0.1, cosine)
    STS.check_label_smoothing(0.0, cosine)
    STS.check_label_smoothing(0.1, HeadConfig(output="classes"))
    PARA.check_label_smoothing(0.1, HeadConfig())


def test_head_fit_is_checked() -> None:
    with pytest.raises(ValueError, match="siamese"):
        SST.build_head(32, HeadConfig(pair_encoding="siamese"))
    with pytest.raises(ValueError, match="regression"):
        PARA.build_head(32, HeadConfig(pair_encoding="siamese", output="cosine"))
    with pytest.raises(ValueError, match="regression"):
        SST.build_head(32, HeadConfig(output="classes"))
    with pytest.raises(ValueError, match="cosine_logit.*binary tasks; this task is regression"):
        STS.build_head(32, HeadConfig(pair_encoding="siamese", output="cosine_logit"))
    assert PARA.divergence_for(HeadConfig(pair_encoding="siamese", output="cosine_logit")) == "bernoulli_kl"
    assert STS.num_outputs_for(HeadConfig(output="classes")) == 6
    assert STS.build_head(32, HeadConfig(output="classes")).num_outputs == 6
    assert SST.build_head(32).num_outputs == 5


@pytest.mark.parametrize(
    "options",
    [
        {"name": "two words"},
        {"kind": "triple"},
        {"output": "ranking"},
        {"num_outputs": 0},
        {"output": "binary", "num_outputs": 2},
        {"output": "multiclass", "num_outputs": 1},
        {"output": "regression", "score_range": (5, 0)},
        {"output": "multiclass", "num_outputs": 3, "score_range": (0, 5)},
        {"kind": "single", "head": HeadConfig(pair_encoding="siamese")},
        {"reader": "not callable"},
    ],
)
def test_bad_task_specs_are_refused(options: dict) -> None:
    base = {"name": "toy", "kind": "pair", "output": "regression", "num_outputs": 1,
            "reader": StandardReader("sts")}  # fmt: skip
    with pytest.raises((ValueError, TypeError)):
        TaskSpec(**{**base, **options})


def test_inputs_to_moves_nested_tensors(tokenizer: Tokenizer) -> None:
    inputs, _ = STS.collate(STSS, tokenizer, pair_encoding="siamese")
    moved = inputs_to(inputs, "cpu")
    assert moved is not inputs and set(moved) == {"a", "b"}
    assert torch.equal(moved["a"]["input_ids"], inputs["a"]["input_ids"])


@pytest.mark.parametrize(
    ("task", "examples", "config"),
    [
        (SST, SENTENCES, HeadConfig()),
        (PARA, PARAS, HeadConfig()),
        (STS, STSS, HeadConfig(pooling="mean", pair_encoding="siamese", output="cosine")),
        (PARA, PARAS, HeadConfig(pooling="mean", pair_encoding="hybrid")),
    ],
    ids=["sst", "para-cross", "sts-siamese-cosine", "para-hybrid"],
)
def test_heads_work_with_gradbalance_smart(
    tokenizer: Tokenizer, task: TaskSpec, examples: list, config: HeadConfig
) -> None:
    torch.manual_seed(0)
    encoder = MinBert(BertConfig.tiny()).eval()
    head = task.build_head(32, config).eval()
    inputs, _ = task.collate(examples, tokenizer, pair_encoding=config.pair_encoding)
    forward, emb, mask = head.smart_view(encoder, inputs)
    assert emb.dim() == 3 and mask.shape == emb.shape[:2]
    outputs = forward(emb)
    torch.testing.assert_close(outputs, head(encoder, inputs))
    smart = SmoothnessRegularizer(
        sigma=1e-2, epsilon=1e-1, step_size=1e-1, divergence=task.divergence_for(config)
    )
    term = smart(forward, emb, outputs, mask=mask)
    assert term.item() > 0
    term.backward()
    assert encoder.encoder.layer[0].attention.self.query.weight.grad is not None


@pytest.mark.skipif(not (default_data_dir() / "sts-dev.csv").is_file(), reason="no task data")
def test_standard_reader_reads_the_dev_files() -> None:
    for task in (SST, PARA, STS):
        result = task.read("dev")
        assert len(result) > 100
        assert Path(result.path).name.endswith("-dev.csv")
    first = STS.read("dev").examples[0]
    assert isinstance(first, PairExample) and 0.0 <= first.label <= 5.0
