import math

import attrs
import pytest
import scipy.stats
import torch

import minbert_tasks.plugins
from minbert_tasks.config import TaskConfig, TrainConfig
from minbert_tasks.data import PairExample, SentenceExample
from minbert_tasks.evaluation import evaluate, predict_examples, predict_outputs, summary_score
from minbert_tasks.system import build_model
from minbert_tasks.tasks import STS

WORDS = ["the", "film", "was", "good", "bad", "very", "not", "a", "movie", "plot"]


def _sentences(count: int) -> list[SentenceExample]:
    generator = torch.Generator().manual_seed(0)
    examples = []
    for i in range(count):
        length = int(torch.randint(1, 9, (1,), generator=generator))
        words = [WORDS[int(j)] for j in torch.randint(len(WORDS), (length,), generator=generator)]
        examples.append(SentenceExample(id=f"s{i}", text=" ".join(words), label=i % 5))
    return examples


@pytest.fixture(scope="module")
def tiny():
    config = TrainConfig(tasks=[TaskConfig(name="sst"), TaskConfig(name="sts")], model="tiny-random")
    return build_model(config)


def test_batched_outputs_come_back_in_input_order(tiny):
    model, tokenizer, setups = tiny
    examples = _sentences(11)  # lengths differ, so length-sorted batches reorder the rows
    batched = predict_outputs(model, "sst", setups["sst"], examples, tokenizer, batch_size=4)
    one_by_one = torch.cat(
        [predict_outputs(model, "sst", setups["sst"], [e], tokenizer, batch_size=1) for e in examples]
    )
    torch.testing.assert_close(batched, one_by_one, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("training", [True, False])
def test_the_model_mode_is_restored_after_prediction(tiny, training):
    model, tokenizer, setups = tiny
    model.train(training)
    predict_outputs(model, "sst", setups["sst"], _sentences(3), tokenizer)
    assert model.training is training


def test_a_failing_batch_leaves_a_training_model_in_train_mode(tiny, monkeypatch):
    model, tokenizer, setups = tiny
    model.train()

    def fail(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(model, "forward", fail)
    with pytest.raises(RuntimeError, match="out of memory"):
        predict_outputs(model, "sst", setups["sst"], _sentences(3), tokenizer)
    assert model.training


def test_evaluate_scores_each_task_with_its_metric(tiny):
    model, tokenizer, setups = tiny
    sst = _sentences(10)
    sts = [
        PairExample(id=f"p{i}", text_a=e.text, text_b=e.text[::-1], label=float(i % 6))
        for i, e in enumerate(sst)
    ]
    scores, predictions = evaluate(model, setups, {"sst": sst, "sts": sts}, tokenizer)
    preds, golds = predictions["sst"]
    assert golds == [e.label for e in sst]
    assert scores["sst"] == pytest.approx(sum(p == g for p, g in zip(preds, golds)) / len(sst))
    preds, golds = predictions["sts"]
    assert golds == [e.label for e in sts]
    assert all(0.0 <= p <= 5.0 for p in preds) and len(set(preds)) > 1
    # Pearson's r of the predictions against the gold scores, computed independently.
    assert scores["sts"] == pytest.approx(scipy.stats.pearsonr(preds, golds).statistic, abs=1e-6)


def test_no_examples_give_no_predictions(tiny):
    model, tokenizer, setups = tiny
    assert predict_examples(model, "sst", setups["sst"], [], tokenizer) == ([], [])


def test_summary_score_is_the_cs224n_overall_with_all_three_tasks():
    assert summary_score({"sst": 0.5, "para": 0.8, "sts": 0.6}) == pytest.approx((0.5 + 0.8 + 0.8) / 3)


def test_summary_score_of_a_subset_maps_sts_pearson_to_zero_one():
    assert summary_score({"sst": 0.5, "sts": 0.0}) == pytest.approx((0.5 + 0.5) / 2)
    assert summary_score({"para": 0.9}) == pytest.approx(0.9)


def test_summary_score_maps_any_regression_task_not_just_one_named_sts(monkeypatch):
    sick = attrs.evolve(STS, name="sick")  # a third-party similarity task, Pearson in [-1, 1]
    builtin = minbert_tasks.plugins.get_task
    monkeypatch.setattr(minbert_tasks.plugins, "get_task", lambda n: sick if n == "sick" else builtin(n))
    assert summary_score({"sick": -1.0, "para": 0.8}) == pytest.approx((0.0 + 0.8) / 2)


def test_summary_score_is_none_when_nothing_is_finite():
    assert summary_score({}) is None
    assert summary_score({"sst": math.nan}) is None
