"""Task heads on top of :class:`~minbert_tasks.model.MinBert`.

A head is configured by one record, :class:`HeadConfig`, and built with :func:`build_head`::

    head = build_head(HeadConfig(pooling="mean", stack="mlp", mlp_layers=2), hidden_size=384,
                      num_outputs=5)
    logits = head(encoder, inputs)                     # inputs: a tokenized batch (dict)

The encoder is passed in, not owned: heads hold only task-specific parameters, so the shared
encoder's parameters live in one place (the per-task gradient buffer of ``gradbalance``) and the
heads' gradients accumulate normally.

Pipeline, in order (every step masked, so padding never changes a result):

1. encode: ``cross`` — one sequence per example (a single sentence, or a pair the caller encoded
   jointly as ``[CLS] a [SEP] b [SEP]``); ``siamese`` — each sentence of a pair on its own;
   ``hybrid`` — both: the siamese pipeline below and a cross-encoded pair through its own
   feature stack, the two outputs averaged (a two-view ensemble in one head: a bi-encoder
   compares sentence vectors, a cross-encoder attends across the pair, and their errors differ).
2. optional CNN over hidden states (``cnn=True``): ``GELU(Conv1d(k=3, padding=1))``, plus the
   input when ``residual=True``; padded positions are zeroed before and after the convolution.
3. pooling: ``cls`` (hidden state of [CLS]), ``mean`` (mean over real tokens), ``max``
   (max-over-time over real tokens) or ``pooler`` (BERT's ``tanh(dense(h[CLS]))``).
4. siamese only: features ``(u, v, |u − v|)``, plus ``u ⊙ v`` with ``pair_product=True`` (the
   InferSent features, Conneau et al. 2017, §3.2; the product's sum is the dot product a
   bi-encoder such as MiniLM was trained to compare with). With ``pair_symmetric=True`` the
   output is the mean of the stack's outputs on ``(u, v)`` and ``(v, u)``, so a pair scores the
   same in either order, as paraphrase and similarity labels do.
5. feature stack: ``linear`` (dropout, then the output layer) or ``mlp`` (``mlp_layers`` ×
   [Linear, GELU, dropout] after an input dropout, then the output layer).
6. output: ``linear`` — the output layer's ``num_outputs`` values (``[B]`` when it is 1): logits
   for classification, the raw score for regression; ``classes`` — the same layer, read by the
   task as logits over integer score bins (STS as 6-way classification, predicted as the
   expected bin); ``cosine`` (siamese only) — ``5 · cos(u', v')``, where u', v' are u, v after
   the stack's hidden layers (no output layer; with ``linear`` just dropout). Regressing
   ``5·cos`` on a 0–5 score is sentence-transformers' CosineSimilarityLoss (cos on score/5):
   unrelated pairs aim at orthogonal embeddings, not opposite ones, which keeps a pretrained
   sentence encoder's geometry (``2.5·(cos+1)`` pushed score-0 pairs to cos = −1 and cost
   MiniLM 0.13 STS Pearson in one epoch here). Predictions are clamped to the task's range.
   ``cosine_logit`` (siamese, binary tasks) — the logit ``s · (cos(u', v') − t)`` with a
   learned scale ``s`` (initially 20, the usual contrastive temperature of 0.05) and threshold
   ``t`` (initially 0.8): a pair is a paraphrase when its sentence vectors point the same way,
   the rule a bi-encoder was trained on (Reimers & Gurevych 2019, §3), and a rule that cannot
   depend on sentence order.

For SMART, which perturbs the embedding-layer output once and continues from there, every head
splits its forward: ``head(encoder, inputs) == head.forward_from_embeddings(encoder,
head.embed(encoder, inputs), inputs)``. For a siamese head the embeddings are a tuple
``(emb_a, emb_b)``; :meth:`TaskHead.embedding_mask` gives the matching padding mask(s), and
:meth:`TaskHead.smart_view` packs everything as one tensor for a regulariser that wants that.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "CLS_LINEAR",
    "Encoder",
    "HeadConfig",
    "Inputs",
    "MEAN_CNN_RESIDUAL_MLP2",
    "POOLER_MLP1",
    "PRESETS",
    "SIAMESE_COSINE",
    "SIAMESE_MEAN",
    "TaskHead",
    "build_head",
    "masked_max",
    "masked_mean",
]

Pooling = Literal["cls", "mean", "max", "pooler"]
Stack = Literal["linear", "mlp"]
PairEncoding = Literal["cross", "siamese", "hybrid"]
Output = Literal["linear", "classes", "cosine", "cosine_logit"]

#: A tokenized batch: ``{"input_ids", "attention_mask", "token_type_ids"}`` for single sentences
#: and cross-encoded pairs, ``{"a": {...}, "b": {...}}`` for siamese pairs, and
#: ``{"a": {...}, "b": {...}, "ab": {...}}`` (``ab`` cross-encoded) for hybrid pairs.
Inputs = Mapping[str, Any]


class Encoder(Protocol):
    """What a head calls on the shared encoder it is passed (:class:`~minbert_tasks.model.MinBert`)."""

    def embed(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """Embedding-layer output ``[B, L, H]``."""

    def encode(self, embeddings: Tensor, attention_mask: Tensor) -> Tensor:
        """The transformer layers' last hidden states ``[B, L, H]`` from embeddings."""

    def pool(self, hidden: Tensor) -> Tensor:
        """BERT's pooler, ``tanh(dense(h[CLS]))`` ``[B, H]``."""


POOLINGS: tuple[str, ...] = ("cls", "mean", "max", "pooler")
STACKS: tuple[str, ...] = ("linear", "mlp")
PAIR_ENCODINGS: tuple[str, ...] = ("cross", "siamese", "hybrid")
#: Encodings that compute siamese sentence vectors (u, v).
SIAMESE_ENCODINGS: tuple[str, ...] = ("siamese", "hybrid")
OUTPUTS: tuple[str, ...] = ("linear", "classes", "cosine", "cosine_logit")
#: Outputs that compare the two sentence vectors by their cosine (siamese heads only).
COSINE_OUTPUTS: tuple[str, ...] = ("cosine", "cosine_logit")
#: Initial scale and threshold of a ``cosine_logit`` head.
COSINE_LOGIT_SCALE = 20.0
COSINE_LOGIT_THRESHOLD = 0.8
# The reports' words for a plain output layer; normalised so that repr and equality agree.
_OUTPUT_ALIASES = {"regression": "linear", "logits": "linear"}


def _one_of(choices: tuple[str, ...]) -> Any:
    def check(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value not in choices:
            raise ValueError(f"{attribute.name} must be one of {', '.join(choices)}; got {value!r}")

    return check


def _output_alias(value: object) -> object:
    return _OUTPUT_ALIASES.get(value, value) if isinstance(value, str) else value


def _count(minimum: int) -> Any:
    def check(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{attribute.name} must be an integer >= {minimum}; got {value!r}")

    return check


def _probability(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{attribute.name} must be a probability in [0, 1); got {value!r}")


@attrs.frozen(kw_only=True)
class HeadConfig:
    """Options of a task head (see the module docstring for the pipeline).

    Args:
        pooling: ``cls``, ``mean``, ``max`` or ``pooler``.
        stack: ``linear`` or ``mlp``.
        mlp_layers: hidden layers of the MLP (MLP[n]); ignored by ``linear``; >= 1.
        mlp_hidden: width of the MLP's hidden layers; ``None`` = the encoder's hidden size.
        dropout: dropout probability in the stack.
        cnn: run a kernel-3 1-D convolution over the hidden states before pooling.
        residual: add the CNN's input to its output (only with ``cnn=True``).
        pair_encoding: ``cross``, ``siamese`` or ``hybrid`` (both, outputs averaged);
            single-sentence tasks use ``cross``.
        pair_product: append ``u ⊙ v`` to the siamese features (``siamese`` or ``hybrid``, not
            with ``output='cosine'``, which compares u and v itself).
        pair_symmetric: average the siamese output over both sentence orders (same conditions;
            the cosine is symmetric already; a hybrid head's cross view still reads the pair in
            its given order).
        output: ``linear`` (alias ``regression``/``logits``), ``classes``, ``cosine`` or
            ``cosine_logit`` (both require ``siamese``).
    """

    pooling: Pooling = attrs.field(default="cls", validator=_one_of(POOLINGS))
    stack: Stack = attrs.field(default="linear", validator=_one_of(STACKS))
    mlp_layers: int = attrs.field(default=1, validator=_count(1))
    mlp_hidden: int | None = attrs.field(default=None, validator=attrs.validators.optional(_count(1)))
    dropout: float = attrs.field(default=0.1, validator=_probability)
    cnn: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    residual: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    pair_encoding: PairEncoding = attrs.field(default="cross", validator=_one_of(PAIR_ENCODINGS))
    pair_product: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    pair_symmetric: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    output: Output = attrs.field(default="linear", converter=_output_alias, validator=_one_of(OUTPUTS))

    def __attrs_post_init__(self) -> None:
        if self.residual and not self.cnn:
            raise ValueError("residual=True needs cnn=True (it is the CNN's skip connection)")
        if self.output in COSINE_OUTPUTS and self.pair_encoding != "siamese":
            raise ValueError(f"output={self.output!r} needs pair_encoding='siamese' (it compares u and v)")
        for option in ("pair_product", "pair_symmetric"):
            if getattr(self, option) and (
                self.pair_encoding not in SIAMESE_ENCODINGS or self.output in COSINE_OUTPUTS
            ):
                raise ValueError(
                    f"{option}=True needs pair_encoding='siamese' or 'hybrid' and an output other than "
                    "'cosine' or 'cosine_logit' (it acts on the (u, v, |u - v|) features); got "
                    f"pair_encoding={self.pair_encoding!r}, output={self.output!r}"
                )


# Named presets (registered as entry points of ``minbert_tasks.heads``).
CLS_LINEAR = HeadConfig()
POOLER_MLP1 = HeadConfig(pooling="pooler", stack="mlp", mlp_layers=1)
MEAN_CNN_RESIDUAL_MLP2 = HeadConfig(pooling="mean", stack="mlp", mlp_layers=2, cnn=True, residual=True)
SIAMESE_MEAN = HeadConfig(pooling="mean", pair_encoding="siamese")
SIAMESE_COSINE = HeadConfig(pooling="mean", pair_encoding="siamese", output="cosine")

PRESETS: dict[str, HeadConfig] = {
    "cls_linear": CLS_LINEAR,
    "pooler_mlp1": POOLER_MLP1,
    "mean_cnn_residual_mlp2": MEAN_CNN_RESIDUAL_MLP2,
    "siamese_mean": SIAMESE_MEAN,
    "siamese_cosine": SIAMESE_COSINE,
}


# --------------------------------------------------------------------------- building blocks


def masked_mean(hidden: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``hidden`` ``[B, L, H]`` over positions where ``mask`` ``[B, L]`` is nonzero."""
    keep = mask.to(hidden.dtype).unsqueeze(-1)
    count = keep.sum(1).clamp_min(1.0)  # an all-padding row gives 0, not NaN
    return (hidden * keep).sum(1) / count


def masked_max(hidden: Tensor, mask: Tensor) -> Tensor:
    """Max-over-time of ``hidden`` ``[B, L, H]`` over real positions (0 for an all-padding row)."""
    keep = mask.to(torch.bool).unsqueeze(-1)
    filled = hidden.masked_fill(~keep, torch.finfo(hidden.dtype).min)
    pooled = filled.amax(1)
    return torch.where(keep.any(1), pooled, torch.zeros_like(pooled))


class SequenceCNN(nn.Module):
    """``GELU(Conv1d(H, H, kernel 3, padding 1))`` over tokens, optionally residual, masked.

    Padding is zeroed before the convolution, so a real token next to padding sees the same
    zeros as at the sequence edge; outputs at padded positions are zeroed too.
    """

    def __init__(self, hidden_size: int, residual: bool) -> None:
        super().__init__()
        self.conv = nn.Conv1d(hidden_size, hidden_size, kernel_size=3, padding=1)
        self.residual = residual

    def forward(self, hidden: Tensor, mask: Tensor) -> Tensor:
        keep = mask.to(hidden.dtype).unsqueeze(-1)
        x = hidden * keep
        out = F.gelu(self.conv(x.transpose(1, 2)).transpose(1, 2))
        if self.residual:
            out = out + x
        return out * keep


def _stack(in_dim: int, hidden_dim: int, layers: int, dropout: float, out_dim: int | None) -> nn.Sequential:
    """Dropout, ``layers`` × [Linear, GELU, Dropout], then ``Linear(out_dim)`` if given."""
    modules: list[nn.Module] = [nn.Dropout(dropout)]
    width = in_dim
    for _ in range(layers):
        modules += [nn.Linear(width, hidden_dim), nn.GELU(), nn.Dropout(dropout)]
        width = hidden_dim
    if out_dim is not None:
        modules.append(nn.Linear(width, out_dim))
    return nn.Sequential(*modules)


def _check_batch(inputs: Inputs, what: str) -> None:
    missing = [k for k in ("input_ids", "attention_mask") if k not in inputs]
    if missing:
        raise KeyError(
            f"{what} lacks {', '.join(missing)}; expected a tokenized batch with input_ids, "
            "attention_mask and token_type_ids"
        )


class TaskHead(nn.Module):
    """A head built from a :class:`HeadConfig`; call it as ``head(encoder, inputs)``.

    Returns ``[B, num_outputs]``, or ``[B]`` when ``num_outputs == 1`` or the output is
    ``cosine``.
    """

    def __init__(self, config: HeadConfig, hidden_size: int, num_outputs: int) -> None:
        super().__init__()
        for what, value in (("hidden_size", hidden_size), ("num_outputs", num_outputs)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{what} must be a positive integer; got {value!r}")
        if config.output in COSINE_OUTPUTS and num_outputs != 1:
            raise ValueError(f"a {config.output} head has exactly one output; got num_outputs={num_outputs}")
        self.config = config
        self.hidden_size = hidden_size
        self.num_outputs = num_outputs
        self.siamese = config.pair_encoding in SIAMESE_ENCODINGS
        self.hybrid = config.pair_encoding == "hybrid"
        self.cnn = SequenceCNN(hidden_size, config.residual) if config.cnn else None

        layers = config.mlp_layers if config.stack == "mlp" else 0
        mlp_hidden = config.mlp_hidden or hidden_size
        if config.output in COSINE_OUTPUTS:
            self.stack = _stack(hidden_size, mlp_hidden, layers, config.dropout, None)
            if config.output == "cosine_logit":
                self.log_scale = nn.Parameter(torch.tensor(math.log(COSINE_LOGIT_SCALE)))
                self.threshold = nn.Parameter(torch.tensor(COSINE_LOGIT_THRESHOLD))
        else:
            in_dim = (4 if config.pair_product else 3) * hidden_size if self.siamese else hidden_size
            self.stack = _stack(in_dim, mlp_hidden, layers, config.dropout, num_outputs)
        # The hybrid head's cross view: the pooled [CLS] a [SEP] b [SEP] through its own stack.
        self.cross_stack = (
            _stack(hidden_size, mlp_hidden, layers, config.dropout, num_outputs) if self.hybrid else None
        )

    def extra_repr(self) -> str:
        return f"hidden_size={self.hidden_size}, num_outputs={self.num_outputs}, config={self.config}"

    # -- the SMART split ---------------------------------------------------------------------

    def embed(self, encoder: Encoder, inputs: Inputs) -> Tensor | tuple[Tensor, ...]:
        """Embedding-layer output: ``[B, L, H]``, ``(emb_a, emb_b)`` for a siamese head, or
        ``(emb_a, emb_b, emb_ab)`` for a hybrid head."""
        if self.siamese:
            return tuple(_embed(encoder, part) for part in self._parts(inputs))
        _check_batch(inputs, "inputs")
        return _embed(encoder, inputs)

    def embedding_mask(self, inputs: Inputs) -> Tensor | tuple[Tensor, ...]:
        """The padding mask(s) matching :meth:`embed` (1 = real token)."""
        return self._masks(inputs) if self.siamese else inputs["attention_mask"]

    def forward_from_embeddings(
        self,
        encoder: Encoder,
        embeddings: Tensor | tuple[Tensor, ...],
        inputs: Inputs,
    ) -> Tensor:
        """Outputs from (possibly perturbed) embeddings; ``inputs`` supplies the masks."""
        if not self.siamese:
            if not isinstance(embeddings, Tensor):
                raise TypeError("a cross/single head takes one embeddings tensor [B, L, H]")
            mask = inputs["attention_mask"]
            return self._output(self._pool(encoder, encoder.encode(embeddings, mask), mask))
        parts = self._parts(inputs)
        if not (isinstance(embeddings, tuple) and len(embeddings) == len(parts)):
            expected = "(emb_a, emb_b, emb_ab)" if self.hybrid else "(emb_a, emb_b)"
            raise TypeError(f"a {self.config.pair_encoding} head takes embeddings as a tuple {expected}")
        masks = tuple(part["attention_mask"] for part in parts)
        siamese = self._siamese_output(encoder, (embeddings[0], embeddings[1]), (masks[0], masks[1]))
        if not self.hybrid:
            return siamese
        assert self.cross_stack is not None
        joint = self._pool(encoder, encoder.encode(embeddings[2], masks[2]), masks[2])
        return 0.5 * (siamese + self._output(joint, self.cross_stack))

    def _siamese_output(
        self, encoder: Encoder, embeddings: tuple[Tensor, Tensor], masks: tuple[Tensor, Tensor]
    ) -> Tensor:
        u, v = self._encode_pair(encoder, embeddings, masks)
        if self.config.output in COSINE_OUTPUTS:
            cos = F.cosine_similarity(self.stack(u), self.stack(v), dim=-1, eps=1e-8)
            if self.config.output == "cosine_logit":
                return self.log_scale.exp() * (cos - self.threshold)
            return 5.0 * cos
        product = self.config.pair_product
        out = self._output(self.pair_features(u, v, product=product))
        if self.config.pair_symmetric:
            out = 0.5 * (out + self._output(self.pair_features(v, u, product=product)))
        return out

    def forward(self, encoder: Encoder, inputs: Inputs) -> Tensor:
        return self.forward_from_embeddings(encoder, self.embed(encoder, inputs), inputs)

    def smart_view(
        self, encoder: Encoder, inputs: Inputs
    ) -> tuple[Callable[[Tensor], Tensor], Tensor, Tensor]:
        """``(forward, embeddings, mask)`` with one embeddings tensor, for regularisers such as
        ``gradbalance.regularizers.SmoothnessRegularizer`` that perturb a single ``[B, L, H]``
        tensor: ``forward(embeddings)`` equals ``self(encoder, inputs)``. A siamese pair's two
        embeddings (a hybrid pair's three) are joined along the token axis (``[B, L_a + L_b,
        H]``) and split again by ``forward``, so the perturbation and its per-example ℓ∞ ball
        cover every sequence.
        """
        embeddings = self.embed(encoder, inputs)
        if isinstance(embeddings, Tensor):  # a cross/single head
            mask = inputs["attention_mask"]
            return (lambda e: self.forward_from_embeddings(encoder, e, inputs)), embeddings, mask
        masks = self._masks(inputs)
        widths = [e.shape[1] for e in embeddings]

        def forward(joined: Tensor) -> Tensor:
            return self.forward_from_embeddings(encoder, joined.split(widths, dim=1), inputs)

        return forward, torch.cat(embeddings, dim=1), torch.cat(masks, dim=1)

    # -- pieces ------------------------------------------------------------------------------

    @staticmethod
    def pair_features(u: Tensor, v: Tensor, product: bool = False) -> Tensor:
        """Siamese features ``(u, v, |u − v|)`` ``[B, 3H]``, or ``(u, v, |u − v|, u ⊙ v)``
        ``[B, 4H]`` with ``product``."""
        features = [u, v, (u - v).abs()]
        if product:
            features.append(u * v)
        return torch.cat(features, dim=-1)

    def pooled(self, encoder: Encoder, inputs: Inputs) -> Tensor | tuple[Tensor, Tensor]:
        """Sentence vector(s) after the CNN and pooling: ``[B, H]``, or the siamese ``(u, v)``
        (for a hybrid head too)."""
        if self.siamese:
            a, b = self._parts(inputs)[:2]
            embeddings = (_embed(encoder, a), _embed(encoder, b))
            return self._encode_pair(encoder, embeddings, (a["attention_mask"], b["attention_mask"]))
        _check_batch(inputs, "inputs")
        mask = inputs["attention_mask"]
        return self._pool(encoder, encoder.encode(_embed(encoder, inputs), mask), mask)

    def _pool(self, encoder: Encoder, hidden: Tensor, mask: Tensor) -> Tensor:
        if self.cnn is not None:
            hidden = self.cnn(hidden, mask)
        pooling = self.config.pooling
        if pooling == "cls":
            return hidden[:, 0]
        if pooling == "pooler":
            return encoder.pool(hidden)
        if pooling == "mean":
            return masked_mean(hidden, mask)
        return masked_max(hidden, mask)

    def _output(self, features: Tensor, stack: nn.Module | None = None) -> Tensor:
        out = (self.stack if stack is None else stack)(features)
        return out.squeeze(-1) if self.num_outputs == 1 else out

    def _encode_pair(
        self,
        encoder: Encoder,
        embeddings: tuple[Tensor, Tensor],
        masks: tuple[Tensor, Tensor],
    ) -> tuple[Tensor, Tensor]:
        # One encoder call for both sides: pad to a common length and stack on the batch.
        # Padded keys are masked out of attention and pooling, so results are unchanged.
        (ea, eb), (ma, mb) = embeddings, masks
        length = max(ea.shape[1], eb.shape[1])
        emb = torch.cat([_pad_to(ea, length), _pad_to(eb, length)], dim=0)
        mask = torch.cat([_pad_to(ma, length), _pad_to(mb, length)], dim=0)
        pooled = self._pool(encoder, encoder.encode(emb, mask), mask)
        return pooled[: ea.shape[0]], pooled[ea.shape[0] :]

    def _masks(self, inputs: Inputs) -> tuple[Tensor, ...]:
        """The padding masks of a siamese or hybrid head's batches (:meth:`_parts`)."""
        return tuple(part["attention_mask"] for part in self._parts(inputs))

    def _parts(self, inputs: Inputs) -> tuple[Inputs, ...]:
        """The batches a siamese (``a``, ``b``) or hybrid (``a``, ``b``, ``ab``) head reads."""
        keys = ("a", "b", "ab") if self.hybrid else ("a", "b")
        if any(k not in inputs for k in keys):
            layout = ", ".join(f"{k!r}: batch" for k in keys)
            raise KeyError(
                f"a {self.config.pair_encoding} head takes inputs {{{layout}}}; got keys "
                f"{sorted(inputs)} (collate with pair_encoding={self.config.pair_encoding!r})"
            )
        for k in keys:
            _check_batch(inputs[k], f"inputs[{k!r}]")
        sizes = {k: len(inputs[k]["input_ids"]) for k in keys}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"the pair's batches hold different numbers of examples: {sizes}")
        return tuple(inputs[k] for k in keys)


def _embed(encoder: Encoder, batch: Inputs) -> Tensor:
    return encoder.embed(batch["input_ids"], batch.get("token_type_ids"))


def _pad_to(x: Tensor, length: int) -> Tensor:
    extra = length - x.shape[1]
    if extra == 0:
        return x
    pad = (0, 0, 0, extra) if x.dim() == 3 else (0, extra)
    return F.pad(x, pad)


def build_head(config: HeadConfig, hidden_size: int, num_outputs: int) -> TaskHead:
    """Build the head described by ``config`` for an encoder of width ``hidden_size``.

    ``num_outputs``: classes for a multi-class task (SST: 5), 1 for a binary logit or a
    regression score, the number of score bins for ``output='classes'`` (STS: 6), 1 for cosine.
    """
    if not isinstance(config, HeadConfig):
        raise TypeError(f"config must be a HeadConfig; got {type(config).__name__}")
    return TaskHead(config, hidden_size, num_outputs)
