"""Load and save :class:`MinBert` weights in Hugging Face folder layout."""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import Tensor

from minbert_tasks.model.bert import MinBert
from minbert_tasks.model.config import BertConfig

__all__ = [
    "CheckpointError",
    "load_pretrained",
    "load_state_dict_file",
    "load_state_into",
    "save_pretrained",
]

CONFIG_NAME = "config.json"
SAFETENSORS_NAME = "model.safetensors"
TORCH_BIN_NAME = "pytorch_model.bin"

#: Checkpoint keys that are dropped silently: buffers MinBert recomputes, and
#: pre-training heads (MLM / NSP) it does not have.
_HARMLESS_EXACT = frozenset({"embeddings.position_ids", "embeddings.token_type_ids"})
_HARMLESS_PREFIXES = ("cls.",)
_POOLER_PREFIX = "pooler."
_SHOWN = 10


class CheckpointError(ValueError):
    """A checkpoint is unreadable, not a minbert-tasks checkpoint, or its tensors do not fit the
    model its config describes; the message names the file."""


def _fmt_keys(kind: str, keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    more = f", ... ({len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
    return f"{len(keys)} {kind} key(s): {shown}{more}"


def _normalise_key(key: str) -> str:
    """Strip a ``bert.`` prefix and map TF-era LayerNorm names (gamma/beta)."""
    if key.startswith("bert."):
        key = key[len("bert.") :]
    if ".LayerNorm." in key:
        if key.endswith(".gamma"):
            key = key[: -len(".gamma")] + ".weight"
        elif key.endswith(".beta"):
            key = key[: -len(".beta")] + ".bias"
    return key


def _is_harmless(key: str) -> bool:
    return key in _HARMLESS_EXACT or key.startswith(_HARMLESS_PREFIXES)


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read a ``.safetensors`` or PyTorch ``.bin`` state dict onto the CPU (no pickled code)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise CheckpointError(
            f"{path}: expected a state dict (mapping of name -> tensor), got {type(state).__name__}."
        )
    return dict(state)


def _find_weights(folder: Path) -> Path:
    for name in (SAFETENSORS_NAME, TORCH_BIN_NAME):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"No weights in {folder}: expected {SAFETENSORS_NAME} or {TORCH_BIN_NAME}.")


def load_state_into(
    model: MinBert,
    state: Mapping[str, Tensor],
    *,
    strict: bool = True,
    source: str = "state dict",
) -> None:
    """Copy ``state`` into ``model`` after normalising checkpoint key names.

    Keys may carry a ``bert.`` prefix; position-id buffers and ``cls.*`` heads are
    ignored. Missing pooler weights only warn (the pooler keeps its random init).

    Raises:
        CheckpointError: with ``strict`` and any other missing or unexpected key, or
            (always) a tensor whose shape differs from the model's.
    """
    normalised: dict[str, Tensor] = {}
    for raw_key, tensor in state.items():
        key = _normalise_key(raw_key)
        if _is_harmless(key):
            continue
        if key in normalised:
            raise CheckpointError(
                f"{source}: key {raw_key!r} duplicates {key!r} after removing the 'bert.' prefix."
            )
        normalised[key] = tensor

    expected = model.state_dict()
    missing = sorted(set(expected) - set(normalised))
    unexpected = sorted(set(normalised) - set(expected))
    missing_pooler = [k for k in missing if k.startswith(_POOLER_PREFIX)]
    missing_other = [k for k in missing if not k.startswith(_POOLER_PREFIX)]

    mismatched = [
        f"{k}: checkpoint {tuple(normalised[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(normalised) & set(expected))
        if normalised[k].shape != expected[k].shape
    ]
    if mismatched:
        raise CheckpointError(
            f"{source}: {_fmt_keys('shape-mismatched', mismatched)}. "
            "Does config.json describe the same architecture as the weights?"
        )
    if strict and (missing_other or unexpected):
        parts = []
        if missing_other:
            parts.append(_fmt_keys("missing", missing_other))
        if unexpected:
            parts.append(_fmt_keys("unexpected", unexpected))
        raise CheckpointError(
            f"{source} does not match MinBert: "
            + "; ".join(parts)
            + ". Is this a BERT checkpoint? Pass strict=False to load the overlap anyway."
        )
    if not strict and (missing_other or unexpected):
        parts = []
        if missing_other:
            parts.append(_fmt_keys("missing", missing_other) + " (left at random init)")
        if unexpected:
            parts.append(_fmt_keys("unexpected", unexpected) + " (ignored)")
        warnings.warn(f"{source}: loading non-strictly; " + "; ".join(parts), stacklevel=3)
    if missing_pooler:
        warnings.warn(
            f"{source} has no pooler weights (common for sentence-transformers checkpoints); "
            "the pooler is left at random initialisation.",
            stacklevel=3,
        )
    model.load_state_dict({k: v for k, v in normalised.items() if k in expected}, strict=False)


def load_pretrained(folder: str | os.PathLike[str], *, strict: bool = True) -> MinBert:
    """Build a :class:`MinBert` from a Hugging Face BERT folder.

    Reads ``config.json`` and ``model.safetensors`` (preferred) or ``pytorch_model.bin``.
    The model is returned in eval mode, float32, on the CPU.

    Raises:
        FileNotFoundError: the folder, its ``config.json`` or its weights are missing.
        CheckpointError: the weights do not match (see :func:`load_state_into`).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"BERT checkpoint folder not found: {folder}")
    config = BertConfig.from_json(folder / CONFIG_NAME)
    weights = _find_weights(folder)
    model = MinBert(config)
    load_state_into(model, load_state_dict_file(weights), strict=strict, source=str(weights))
    return model.eval()


def new_file_mode() -> int:
    """The permissions ``open(path, "w")`` would give a new file (``0o666`` less the umask):
    ``mkstemp``'s temporary files are ``0o600``, and a file renamed into place keeps them."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _atomic_write(target: Path, write: Callable[[Path], object]) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, new_file_mode())
    try:
        write(Path(tmp))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_pretrained(model: MinBert, folder: str | os.PathLike[str]) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``folder`` (created if needed).

    Each file is written to a temporary name and moved into place with ``os.replace``,
    so a crash never leaves a half-written file. The result loads with
    :func:`load_pretrained` and with ``transformers.BertModel.from_pretrained``.
    Returns the folder path.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    config_text = json.dumps(model.config.to_dict(), indent=2, sort_keys=True) + "\n"

    _atomic_write(folder / SAFETENSORS_NAME, lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))
    _atomic_write(folder / CONFIG_NAME, lambda p: p.write_text(config_text, encoding="utf-8"))
    return folder
