"""Task definitions: what a task reads, how its batches are built, scored and predicted.

A task is one frozen record, :class:`TaskSpec`. Its behaviour follows from its ``output`` kind:

===============  ==================  ======================  =================  =============
output           head outputs        loss                    prediction         SMART ℓ_s
===============  ==================  ======================  =================  =============
``multiclass``   logits ``[B, C]``   cross-entropy           argmax (int)       softmax_kl
``binary``       one logit ``[B]``   BCE with logits         logit > 0 (0/1)    bernoulli_kl
``regression``   score ``[B]``       MSE                     clamp to range     squared_error
``regression``   bins ``[B, K]``     CE on rounded labels    expected bin       softmax_kl
===============  ==================  ======================  =================  =============

The last row is a regression task under a ``HeadConfig(output="classes")`` head: STS is then
6-way classification over the rounded scores 0..5, predicted as the expected value. A cosine
head (siamese, output ``5·cos`` in [−5, 5]) is a plain regression head here: MSE on the 0–5
scale, predictions clamped to [0, 5].

Built-ins: :data:`SST` (5-class sentiment), :data:`PARA` (Quora paraphrase, binary) and
:data:`STS` (similarity 0–5, Pearson). Third-party tasks are ``TaskSpec`` instances registered
under the ``minbert_tasks.tasks`` entry-point group (see :mod:`minbert_tasks.plugins`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor

from gradbalance.regularizers import Divergence
from minbert_tasks import metrics
from minbert_tasks.data import PairExample, ReadResult, SentenceExample, read_task_split
from minbert_tasks.heads import PAIR_ENCODINGS, HeadConfig, Inputs, TaskHead, build_head

__all__ = [
    "PARA",
    "SST",
    "STS",
    "BUILTIN_TASKS",
    "StandardReader",
    "TaskSpec",
    "inputs_to",
]

Kind = Literal["single", "pair"]
OutputKind = Literal["multiclass", "binary", "regression"]
Reader = Callable[..., ReadResult]

_DIVERGENCE: dict[str, Divergence] = {
    "multiclass": "softmax_kl",
    "binary": "bernoulli_kl",
    "regression": "squared_error",
}


@attrs.frozen
class StandardReader:
    """Reads one of the standard CS224N files: ``reader(split, data_dir=None, strict=False)``."""

    task: str

    def __call__(
        self,
        split: str,
        data_dir: str | os.PathLike[str] | None = None,
        strict: bool = False,
    ) -> ReadResult:
        return read_task_split(self.task, split, data_dir, strict=strict)


def _name(_inst: object, _attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value.isidentifier():
        raise ValueError(f"task name must be an identifier-like string; got {value!r}")


def _positive(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be a positive integer; got {value!r}")


def _score_range(value: Iterable[float] | None) -> tuple[float, float] | None:
    if value is None:
        return None
    low, high = value
    return (float(low), float(high))


@attrs.frozen(kw_only=True)
class TaskSpec:
    """One task: its data, head defaults, loss, prediction format, metric and SMART divergence.

    Args:
        name: registry key (``sst``, ``para``, ``sts``, ...).
        kind: ``single`` (one sentence) or ``pair`` (two sentences).
        output: ``multiclass``, ``binary`` or ``regression`` (see the module table).
        num_outputs: classes of a multi-class task; 1 for binary and regression.
        head: the default :class:`HeadConfig`.
        reader: ``reader(split, data_dir=None, strict=False) -> ReadResult``.
        score_range: regression only: the label range; predictions are clamped to it, and a
            ``classes`` head has one bin per integer in it.
    """

    name: str = attrs.field(validator=_name)
    kind: Kind = attrs.field(validator=attrs.validators.in_(("single", "pair")))
    output: OutputKind = attrs.field(validator=attrs.validators.in_(("multiclass", "binary", "regression")))
    num_outputs: int = attrs.field(validator=_positive)
    head: HeadConfig = attrs.field(factory=HeadConfig, validator=attrs.validators.instance_of(HeadConfig))
    reader: Reader = attrs.field(validator=attrs.validators.is_callable())
    score_range: tuple[float, float] | None = attrs.field(default=None, converter=_score_range)

    def __attrs_post_init__(self) -> None:
        if self.output == "binary" and self.num_outputs != 1:
            raise ValueError(f"{self.name}: a binary task has one output (a logit)")
        if self.output == "multiclass" and self.num_outputs < 2:
            raise ValueError(f"{self.name}: a multiclass task needs num_outputs >= 2")
        if self.output == "regression":
            if self.num_outputs != 1:
                raise ValueError(f"{self.name}: a regression task has one output")
            if self.score_range is not None and not self.score_range[0] < self.score_range[1]:
                raise ValueError(f"{self.name}: score_range must be (low, high) with low < high")
        elif self.score_range is not None:
            raise ValueError(f"{self.name}: score_range is for regression tasks only")
        self.check_head(self.head)

    # -- heads -------------------------------------------------------------------------------

    def check_head(self, config: HeadConfig) -> None:
        """Raise ``ValueError`` if ``config`` does not fit this task."""
        if self.kind == "single" and config.pair_encoding != "cross":
            raise ValueError(f"{self.name}: a single-sentence task cannot use a {config.pair_encoding} head")
        if config.output in ("classes", "cosine") and self.output != "regression":
            raise ValueError(
                f"{self.name}: output={config.output!r} is for regression tasks; this task is {self.output}"
            )
        if config.output == "cosine_logit" and self.output != "binary":
            raise ValueError(
                f"{self.name}: output='cosine_logit' is a binary logit, for binary tasks; "
                f"this task is {self.output}"
            )
        if config.output == "classes" and self.score_range is None:
            raise ValueError(f"{self.name}: output='classes' needs the task's score_range")

    def num_outputs_for(self, config: HeadConfig | None = None) -> int:
        """Output width of a head with ``config`` (default: :attr:`head`)."""
        config = self.head if config is None else config
        if config.output == "classes":
            low, high = self.score_range  # type: ignore[misc]
            return int(math.floor(high) - math.ceil(low)) + 1
        return self.num_outputs

    def build_head(self, hidden_size: int, config: HeadConfig | None = None) -> TaskHead:
        """A head for this task (``config`` defaults to :attr:`head`), checked for fit."""
        config = self.head if config is None else config
        self.check_head(config)
        return build_head(config, hidden_size, self.num_outputs_for(config))

    @property
    def divergence(self) -> Divergence:
        """SMART ℓ_s name for the default head (see :meth:`divergence_for`)."""
        return self.divergence_for(self.head)

    def divergence_for(self, config: HeadConfig) -> Divergence:
        """``softmax_kl`` for logits over classes (including STS bins), ``bernoulli_kl`` for a
        single binary logit, ``squared_error`` for a regression score (including cosine)."""
        if config.output == "classes":
            return "softmax_kl"
        return _DIVERGENCE[self.output]

    @property
    def metric_name(self) -> str:
        return "pearson" if self.output == "regression" else "accuracy"

    # -- data --------------------------------------------------------------------------------

    def read(
        self,
        split: str,
        data_dir: str | os.PathLike[str] | None = None,
        strict: bool = False,
    ) -> ReadResult:
        """Read ``split`` (``train``/``dev``) with this task's reader."""
        return self.reader(split, data_dir=data_dir, strict=strict)

    def collate(
        self,
        examples: Sequence[SentenceExample | PairExample],
        tokenizer: Any,
        max_length: int = 128,
        pair_encoding: str | None = None,
    ) -> tuple[dict[str, Any], Tensor | None]:
        """Tokenize ``examples`` into head inputs and a label tensor.

        ``pair_encoding`` (pair tasks; default: :attr:`head`'s): ``cross`` gives one batch of
        ``[CLS] a [SEP] b [SEP]``, ``siamese`` gives ``{"a": batch, "b": batch}``, ``hybrid``
        gives both, ``{"a": batch, "b": batch, "ab": cross batch}``. Labels are
        ``int64`` for multiclass, ``float32`` otherwise, or ``None`` when no example has one.
        """
        examples = list(examples)
        if not examples:
            raise ValueError(f"{self.name}: cannot collate an empty list of examples")
        encoding, first, second = self._texts(examples, pair_encoding)
        inputs: dict[str, Any]
        if encoding == "cross":
            inputs = _batch(tokenizer.encode(first, pairs=second, max_length=max_length))
        else:
            inputs = {
                "a": _batch(tokenizer.encode(first, max_length=max_length)),
                "b": _batch(tokenizer.encode(second, max_length=max_length)),
            }
            if encoding == "hybrid":
                inputs["ab"] = _batch(tokenizer.encode(first, pairs=second, max_length=max_length))
        return inputs, self._labels(examples)

    def lengths(
        self,
        examples: Sequence[SentenceExample | PairExample],
        tokenizer: Any,
        max_length: int = 128,
        pair_encoding: str | None = None,
    ) -> list[int]:
        """Per-example token count that sets a batch's padded length under :meth:`collate`:
        the sentence, the ``[CLS] a [SEP] b [SEP]`` pair (cross and hybrid), or the longer side
        of a Siamese pair. Used to group training batches by length."""
        examples = list(examples)
        if not examples:
            return []
        encoding, first, second = self._texts(examples, pair_encoding)
        if encoding != "siamese":
            return tokenizer.lengths(first, pairs=second, max_length=max_length)
        a = tokenizer.lengths(first, max_length=max_length)
        b = tokenizer.lengths(second, max_length=max_length)
        return [max(x, y) for x, y in zip(a, b, strict=True)]

    def _texts(
        self, examples: list[SentenceExample | PairExample], pair_encoding: str | None
    ) -> tuple[str | None, list[str], list[str] | None]:
        """``(encoding, first texts, second texts or None)``, the examples and the encoding
        checked against this task's kind (``pair_encoding`` defaults to :attr:`head`'s)."""
        encoding = self.head.pair_encoding if pair_encoding is None else pair_encoding
        if self.kind == "single":
            if encoding != "cross":
                raise ValueError(f"{self.name}: a single-sentence task cannot be {encoding}-encoded")
            _expect(examples, SentenceExample, self.name)
            return encoding, [e.text for e in examples], None  # type: ignore[union-attr]
        _expect(examples, PairExample, self.name)
        if encoding not in PAIR_ENCODINGS:
            raise ValueError(f"pair_encoding must be one of {', '.join(PAIR_ENCODINGS)}; got {encoding!r}")
        first = [e.text_a for e in examples]  # type: ignore[union-attr]
        second = [e.text_b for e in examples]  # type: ignore[union-attr]
        return encoding, first, second

    def _labels(self, examples: Sequence[SentenceExample | PairExample]) -> Tensor | None:
        labels = [e.label for e in examples]
        missing = sum(label is None for label in labels)
        if missing == len(labels):
            return None
        if missing:
            raise ValueError(f"{self.name}: {missing} of {len(labels)} examples have no label")
        if self.output == "multiclass":
            return torch.tensor([int(x) for x in labels], dtype=torch.long)  # type: ignore[arg-type]
        return torch.tensor([float(x) for x in labels], dtype=torch.float32)  # type: ignore[arg-type]

    # -- training and evaluation -------------------------------------------------------------

    def loss(self, outputs: Tensor, labels: Tensor, *, label_smoothing: float = 0.0) -> Tensor:
        """Mean loss of a batch: CE, BCE-with-logits, MSE, or CE over bins for a
        ``classes`` head (recognised by its 2-D outputs). ``label_smoothing`` ε mixes a
        classification target with the uniform one: (1 − ε)·y + ε/K."""
        if self.output == "multiclass":
            return F.cross_entropy(outputs.float(), labels.long(), label_smoothing=label_smoothing)
        if self.output == "binary":
            targets = labels.float() * (1 - label_smoothing) + 0.5 * label_smoothing
            return F.binary_cross_entropy_with_logits(outputs.float().reshape(-1), targets)
        if outputs.dim() == 2 and outputs.shape[1] > 1:
            return F.cross_entropy(
                outputs.float(), self._bin_targets(labels), label_smoothing=label_smoothing
            )
        if label_smoothing:
            raise ValueError(f"{self.name}: label smoothing needs class outputs; this head regresses a score")
        return F.mse_loss(outputs.float().reshape(-1), labels.float())

    def check_label_smoothing(self, label_smoothing: float, config: HeadConfig) -> None:
        """Raise ``ValueError`` if ``label_smoothing`` cannot apply to this task with ``config``."""
        if label_smoothing and self.output == "regression" and config.output != "classes":
            raise ValueError(
                f"{self.name}: label_smoothing={label_smoothing} needs class outputs, but this task "
                f"regresses a score with output={config.output!r}; use output='classes' or drop it"
            )

    def predict(self, outputs: Tensor) -> list[int] | list[float]:
        """Predictions in the output-file format: class ints, 0/1 ints, or floats in range."""
        outputs = outputs.detach().float()
        if self.output == "multiclass":
            return outputs.argmax(-1).tolist()
        if self.output == "binary":
            return (outputs.reshape(-1) > 0).long().tolist()
        if outputs.dim() == 2 and outputs.shape[1] > 1:
            values = self._bin_values(outputs.shape[1]).to(outputs.device)
            scores = outputs.softmax(-1) @ values
        else:
            scores = outputs.reshape(-1)
        if self.score_range is not None:
            scores = scores.clamp(*self.score_range)
        return [float(x) for x in scores.tolist()]

    def metric(self, preds: Sequence[float] | Tensor, golds: Sequence[float] | Tensor) -> float:
        """Accuracy (classification) or Pearson r (regression; ``nan`` if constant)."""
        if self.output == "regression":
            return metrics.pearson(_numpy(preds), _numpy(golds))
        return metrics.accuracy(_numpy(preds), _numpy(golds))

    def unit_score(self, value: float) -> float:
        """:meth:`metric` on a 0–1 scale for averaging across tasks: Pearson r as ``(r + 1) / 2``
        (the CS224N overall score's rule for STS), accuracy as it is."""
        return (value + 1.0) / 2.0 if self.output == "regression" else value

    def _bin_values(self, bins: int) -> Tensor:
        low = math.ceil(self.score_range[0]) if self.score_range is not None else 0
        return torch.arange(low, low + bins, dtype=torch.float32)

    def _bin_targets(self, labels: Tensor) -> Tensor:
        low = math.ceil(self.score_range[0]) if self.score_range is not None else 0
        return (labels.float().round() - low).long()


def _expect(examples: Sequence[object], cls: type, task: str) -> None:
    bad = next((e for e in examples if not isinstance(e, cls)), None)
    if bad is not None:
        raise TypeError(f"{task}: expected {cls.__name__} examples; got {type(bad).__name__}")


def _batch(batch: Any) -> dict[str, Tensor]:
    return {
        "input_ids": batch.input_ids,
        "attention_mask": batch.attention_mask,
        "token_type_ids": batch.token_type_ids,
    }


def _numpy(values: Sequence[float] | Tensor) -> Any:
    return values.detach().cpu().numpy() if isinstance(values, Tensor) else values


def inputs_to(inputs: Inputs, device: torch.device | str) -> dict[str, Any]:
    """A copy of (possibly nested) head inputs with every tensor moved to ``device``."""
    return {k: inputs_to(v, device) if isinstance(v, Mapping) else v.to(device) for k, v in inputs.items()}


SST = TaskSpec(
    name="sst",
    kind="single",
    output="multiclass",
    num_outputs=5,
    reader=StandardReader("sst"),
)
PARA = TaskSpec(
    name="para",
    kind="pair",
    output="binary",
    num_outputs=1,
    reader=StandardReader("para"),
)
STS = TaskSpec(
    name="sts",
    kind="pair",
    output="regression",
    num_outputs=1,
    reader=StandardReader("sts"),
    score_range=(0.0, 5.0),
)

#: The built-in tasks by name (also registered as ``minbert_tasks.tasks`` entry points).
BUILTIN_TASKS: Mapping[str, TaskSpec] = {t.name: t for t in (SST, PARA, STS)}
