"""A minimal BERT encoder in plain PyTorch (:class:`MinBert`).

Parameter names match Hugging Face ``BertModel`` exactly (without the ``bert.``
prefix), so pretrained checkpoints load with a plain ``load_state_dict``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minbert_tasks.model.config import BertConfig

__all__ = ["MinBert"]


def _compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype matmuls on ``x`` produce: the autocast dtype under AMP, else ``x.dtype``."""
    device_type = x.device.type
    if hasattr(torch, "get_autocast_dtype") and torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return x.dtype


class BertEmbeddings(nn.Module):
    """Word + position + token-type embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(
            config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id
        )
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor) -> Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(positions)[None]
            + self.token_type_embeddings(token_type_ids)
        )
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    """Multi-head self-attention via ``F.scaled_dot_product_attention``."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.dropout_p = config.attention_probs_dropout_prob
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)

    def _heads(self, x: Tensor) -> Tensor:
        b, length, _ = x.shape
        return x.view(b, length, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, hidden: Tensor, mask: Tensor) -> Tensor:
        q = self._heads(self.query(hidden))
        k = self._heads(self.key(hidden))
        v = self._heads(self.value(hidden))
        if mask.dtype != q.dtype:  # e.g. autocast disabled inside encode(); keep SDPA happy
            mask = mask.to(q.dtype)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout_p if self.training else 0.0
        )
        b, _, length, _ = out.shape
        return out.transpose(1, 2).reshape(b, length, self.num_heads * self.head_dim)


class BertSelfOutput(nn.Module):
    """Attention output projection, dropout, residual and post-LayerNorm."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, attended: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dropout(self.dense(attended)) + residual)


class BertAttention(nn.Module):
    """Self-attention block: ``self`` (projections) and ``output`` (residual + norm)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, hidden: Tensor, mask: Tensor) -> Tensor:
        return self.output(self.self(hidden, mask), hidden)


class BertIntermediate(nn.Module):
    """Feed-forward expansion with exact (erf) GELU."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)

    def forward(self, hidden: Tensor) -> Tensor:
        return F.gelu(self.dense(hidden))


class BertOutput(nn.Module):
    """Feed-forward projection back to hidden size, dropout, residual and post-LayerNorm."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, expanded: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dropout(self.dense(expanded)) + residual)


class BertLayer(nn.Module):
    """One post-LayerNorm transformer encoder layer."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, hidden: Tensor, mask: Tensor) -> Tensor:
        attended = self.attention(hidden, mask)
        return self.output(self.intermediate(attended), attended)


class BertEncoder(nn.Module):
    """A stack of :class:`BertLayer` (``encoder.layer.{i}``)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, hidden: Tensor, mask: Tensor) -> Tensor:
        for layer in self.layer:
            hidden = layer(hidden, mask)
        return hidden


class BertPooler(nn.Module):
    """``tanh(dense(h[CLS]))``."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: Tensor) -> Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


class MinBert(nn.Module):
    """A BERT encoder: embeddings, ``num_hidden_layers`` encoder layers and a pooler.

    ``forward(ids, mask, types)`` equals ``encode(embed(ids, types), mask)``; the split
    lets a regulariser (e.g. SMART) perturb the embedding output and continue from there.

    Args:
        config: architecture hyper-parameters. Weights are randomly initialised as in
            BERT (normal with std 0.02, LayerNorm at identity); use
            :func:`~minbert_tasks.model.load_pretrained` for pretrained weights.
    """

    def __init__(self, config: BertConfig, *, initializer_range: float = 0.02) -> None:
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config)
        self._initializer_range = initializer_range
        self.apply(self._init_module)

    def _init_module(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=self._initializer_range)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=self._initializer_range)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def _check_ids(self, input_ids: Tensor, token_type_ids: Tensor | None) -> None:
        if input_ids.dim() != 2:
            raise ValueError(
                f"MinBert: input_ids must have shape [batch, length], got {tuple(input_ids.shape)}."
            )
        if input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool:
            raise TypeError(f"MinBert: input_ids must be an integer tensor, got {input_ids.dtype}.")
        length = input_ids.shape[1]
        if length > self.config.max_position_embeddings:
            raise ValueError(
                f"MinBert: sequence length {length} exceeds max_position_embeddings="
                f"{self.config.max_position_embeddings}; truncate inputs (e.g. Tokenizer.encode(max_length=...))."
            )
        if token_type_ids is not None and token_type_ids.shape != input_ids.shape:
            raise ValueError(
                f"MinBert: token_type_ids shape {tuple(token_type_ids.shape)} does not match "
                f"input_ids shape {tuple(input_ids.shape)}."
            )

    def embed(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """Embedding-layer output ``[B, L, H]`` (after LayerNorm and dropout)."""
        self._check_ids(input_ids, token_type_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        return self.embeddings(input_ids, token_type_ids)

    def encode(self, embeddings: Tensor, attention_mask: Tensor) -> Tensor:
        """Run the encoder stack on ``embeddings`` ``[B, L, H]``; returns ``[B, L, H]``.

        ``attention_mask`` is ``[B, L]``, 1 for real tokens and 0 for padding; padded
        keys are excluded from attention.
        """
        if embeddings.dim() != 3 or embeddings.shape[-1] != self.config.hidden_size:
            raise ValueError(
                f"MinBert.encode: embeddings must have shape [batch, length, {self.config.hidden_size}], "
                f"got {tuple(embeddings.shape)}."
            )
        if attention_mask.shape != embeddings.shape[:2]:
            raise ValueError(
                f"MinBert.encode: attention_mask shape {tuple(attention_mask.shape)} does not match "
                f"[batch, length] = {tuple(embeddings.shape[:2])}."
            )
        # Additive mask, built once and broadcast over heads and queries: 0 where a key
        # may be attended, dtype-min where it is padding (never NaN, even for all-pad rows).
        # It is built in the dtype attention will run in (the autocast dtype under AMP).
        dtype = _compute_dtype(embeddings)
        keep = attention_mask.to(dtype=torch.bool, device=embeddings.device)
        mask = torch.zeros(keep.shape, dtype=dtype, device=embeddings.device)
        mask = mask.masked_fill(~keep, torch.finfo(dtype).min)[:, None, None, :]
        return self.encoder(embeddings, mask)

    def pool(self, hidden: Tensor) -> Tensor:
        """Pooler output ``[B, H]``: ``tanh(dense(hidden[:, 0]))`` on the [CLS] position."""
        return self.pooler(hidden)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        token_type_ids: Tensor | None = None,
    ) -> Tensor:
        """Last hidden states ``[B, L, H]`` for ``input_ids`` ``[B, L]``."""
        return self.encode(self.embed(input_ids, token_type_ids), attention_mask)
