"""WordPiece tokenisation into padded tensor batches (:class:`Tokenizer`, :class:`Batch`)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import Tensor

__all__ = ["Batch", "Tokenizer"]

VOCAB_NAME = "vocab.txt"
TOKENIZER_CONFIG_NAME = "tokenizer_config.json"


@attrs.frozen
class Batch:
    """A padded batch of token ids for :class:`~minbert_tasks.model.MinBert`.

    All tensors are ``LongTensor`` of shape ``[batch, length]``; ``num_truncated`` counts
    the inputs of this batch that were cut to fit ``max_length``.
    """

    input_ids: Tensor
    attention_mask: Tensor
    token_type_ids: Tensor
    num_truncated: int = 0

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def to(self, device: torch.device | str) -> Batch:
        """A copy with all tensors moved to ``device``."""
        return attrs.evolve(
            self,
            input_ids=self.input_ids.to(device),
            attention_mask=self.attention_mask.to(device),
            token_type_ids=self.token_type_ids.to(device),
        )


class Tokenizer:
    """BERT WordPiece tokenizer (``tokenizers`` library) producing :class:`Batch` objects.

    Args:
        vocab_file: a BERT ``vocab.txt``.
        lowercase: lowercase (and strip accents) before WordPiece, as uncased BERT does.
        model_max_length: the longest ``max_length`` :meth:`encode` accepts.

    Attributes:
        truncated_total: running count of inputs truncated by :meth:`encode`
            (reset it to 0 whenever convenient).
    """

    def __init__(
        self,
        vocab_file: str | os.PathLike[str],
        *,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        handle_chinese_chars: bool = True,
        model_max_length: int = 512,
    ) -> None:
        from tokenizers import BertWordPieceTokenizer

        vocab_file = Path(vocab_file)
        if not vocab_file.is_file():
            raise FileNotFoundError(f"WordPiece vocabulary not found: {vocab_file}")
        self._tok = BertWordPieceTokenizer(
            str(vocab_file),
            lowercase=lowercase,
            strip_accents=strip_accents,
            handle_chinese_chars=handle_chinese_chars,
        )
        ids = {t: self._tok.token_to_id(t) for t in ("[PAD]", "[CLS]", "[SEP]", "[UNK]")}
        absent = [t for t, i in ids.items() if i is None]
        if absent:
            raise ValueError(f"{vocab_file}: special token(s) {absent} missing from the vocabulary.")
        self.pad_token_id: int = ids["[PAD]"]
        self.cls_token_id: int = ids["[CLS]"]
        self.sep_token_id: int = ids["[SEP]"]
        self.unk_token_id: int = ids["[UNK]"]
        self.lowercase = lowercase
        self.model_max_length = model_max_length
        self.truncated_total: int = 0
        self._tok.enable_padding(pad_id=self.pad_token_id, pad_token="[PAD]")

    @classmethod
    def from_folder(cls, folder: str | os.PathLike[str]) -> Tokenizer:
        """Build from a checkpoint folder's ``vocab.txt`` and optional ``tokenizer_config.json``.

        ``do_lower_case`` (default True), ``strip_accents``, ``tokenize_chinese_chars`` and
        ``model_max_length`` are honoured when present.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"Tokenizer folder not found: {folder}")
        settings: dict[str, Any] = {}
        config_path = folder / TOKENIZER_CONFIG_NAME
        if config_path.is_file():
            try:
                settings = json.loads(config_path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{config_path}: not valid JSON ({exc}).") from exc
        max_len = settings.get("model_max_length", 512)
        if not isinstance(max_len, int) or max_len <= 0 or max_len > 1_000_000:
            max_len = 512  # HF writes a huge sentinel when the limit is unknown
        return cls(
            folder / VOCAB_NAME,
            lowercase=bool(settings.get("do_lower_case", True)),
            strip_accents=settings.get("strip_accents"),
            handle_chinese_chars=bool(settings.get("tokenize_chinese_chars", True)),
            model_max_length=max_len,
        )

    @property
    def vocab_size(self) -> int:
        """Number of entries in the vocabulary."""
        return int(self._tok.get_vocab_size())

    def tokenize(self, text: str) -> list[str]:
        """WordPiece tokens of ``text`` without special tokens (for inspection)."""
        return list(self._tok.encode(text, add_special_tokens=False).tokens)

    def encode(
        self,
        texts: Sequence[str],
        pairs: Sequence[str] | None = None,
        max_length: int = 128,
    ) -> Batch:
        """Tokenise ``texts`` (optionally paired with ``pairs``) into a padded :class:`Batch`.

        Single inputs become ``[CLS] a [SEP]``; pairs ``[CLS] a [SEP] b [SEP]`` with
        token types 0 for the first segment and 1 for the second. Sequences longer than
        ``max_length`` are truncated ("longest_first": tokens are removed from the longer
        segment first); the batch is padded to its longest member.
        """
        encodings = self._encodings(texts, pairs, max_length)
        num_truncated = sum(1 for e in encodings if e.overflowing)
        self.truncated_total += num_truncated
        return Batch(
            input_ids=torch.tensor([e.ids for e in encodings], dtype=torch.long),
            attention_mask=torch.tensor([e.attention_mask for e in encodings], dtype=torch.long),
            token_type_ids=torch.tensor([e.type_ids for e in encodings], dtype=torch.long),
            num_truncated=num_truncated,
        )

    def lengths(
        self,
        texts: Sequence[str],
        pairs: Sequence[str] | None = None,
        max_length: int = 128,
    ) -> list[int]:
        """Token counts (special tokens included, after truncation to ``max_length``) of the
        inputs :meth:`encode` would build; truncation here is not counted in
        :attr:`truncated_total`."""
        if not isinstance(texts, str) and len(texts) == 0:
            return []
        return [sum(e.attention_mask) for e in self._encodings(texts, pairs, max_length)]

    def _encodings(self, texts: Sequence[str], pairs: Sequence[str] | None, max_length: int) -> list[Any]:
        """Checked inputs through the ``tokenizers`` batch encoder (padded, truncated)."""
        texts = self._check_texts(texts, "texts")
        n_special = 2 if pairs is None else 3
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length <= n_special:
            raise ValueError(
                f"Tokenizer.encode: max_length must be an integer > {n_special} "
                f"(room for special tokens plus text), got {max_length!r}."
            )
        if max_length > self.model_max_length:
            raise ValueError(
                f"Tokenizer.encode: max_length={max_length} exceeds the model's limit of "
                f"{self.model_max_length} positions."
            )
        inputs: list[Any]
        if pairs is None:
            inputs = texts
        else:
            pairs = self._check_texts(pairs, "pairs")
            if len(pairs) != len(texts):
                raise ValueError(
                    f"Tokenizer.encode: got {len(texts)} texts but {len(pairs)} pairs; "
                    "they must have the same length."
                )
            inputs = list(zip(texts, pairs, strict=True))

        truncation = self._tok.truncation
        if truncation is None or truncation["max_length"] != max_length:
            self._tok.enable_truncation(max_length, strategy="longest_first")
        return self._tok.encode_batch(inputs)

    @staticmethod
    def _check_texts(texts: Sequence[str], name: str) -> list[str]:
        if isinstance(texts, str):
            raise TypeError(f"Tokenizer.encode: {name} must be a list of strings, not a single string.")
        texts = list(texts)
        if not texts:
            raise ValueError(f"Tokenizer.encode: {name} is empty; pass at least one string.")
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise TypeError(f"Tokenizer.encode: {name}[{bad}] is {type(texts[bad]).__name__}, expected str.")
        return texts
