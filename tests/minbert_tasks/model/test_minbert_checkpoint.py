"""load_pretrained / save_pretrained on tiny random models (no real weights needed)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from minbert_tasks.model import BertConfig, CheckpointError, MinBert, load_pretrained, save_pretrained
from minbert_tasks.model.checkpoint import load_state_into

CFG = BertConfig.tiny()


def _model(seed: int = 0) -> MinBert:
    torch.manual_seed(seed)
    return MinBert(CFG).eval()


def _write_folder(folder: Path, state: dict[str, torch.Tensor], *, fmt: str = "safetensors") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(CFG.to_dict()))
    state = {k: v.contiguous().clone() for k, v in state.items()}
    if fmt == "safetensors":
        save_file(state, str(folder / "model.safetensors"))
    else:
        torch.save(state, folder / "pytorch_model.bin")
    return folder


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(1, CFG.vocab_size, (2, 6), generator=torch.Generator().manual_seed(3))
    return ids, torch.ones_like(ids)


def test_save_load_round_trip(tmp_path: Path) -> None:
    model = _model()
    folder = save_pretrained(model, tmp_path / "ckpt")
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json",
        "model.safetensors",
    ]  # no temp leftovers
    loaded = load_pretrained(folder)
    assert loaded.config == CFG
    assert not loaded.training
    ids, mask = _inputs()
    torch.testing.assert_close(loaded(ids, mask), model(ids, mask), atol=0, rtol=0)
    torch.testing.assert_close(loaded.pool(loaded(ids, mask)), model.pool(model(ids, mask)), atol=0, rtol=0)


def test_save_overwrites_existing(tmp_path: Path) -> None:
    save_pretrained(_model(0), tmp_path)
    save_pretrained(_model(1), tmp_path)
    ids, mask = _inputs()
    torch.testing.assert_close(load_pretrained(tmp_path)(ids, mask), _model(1)(ids, mask))


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_hf_style_prefix_and_harmless_extras_are_accepted(tmp_path: Path, fmt: str) -> None:
    model = _model()
    state = {f"bert.{k}": v for k, v in model.state_dict().items()}
    state["bert.embeddings.position_ids"] = torch.arange(CFG.max_position_embeddings)[None]
    state["cls.predictions.bias"] = torch.zeros(CFG.vocab_size)
    state["cls.seq_relationship.weight"] = torch.zeros(2, CFG.hidden_size)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load_pretrained(_write_folder(tmp_path, state, fmt=fmt))
    ids, mask = _inputs()
    torch.testing.assert_close(loaded(ids, mask), model(ids, mask))


def test_missing_and_unexpected_keys_raise_listing_both(tmp_path: Path) -> None:
    state = _model().state_dict()
    del state["encoder.layer.1.output.dense.weight"]
    state["encoder.layer.7.attention.self.query.weight"] = torch.zeros(CFG.hidden_size, CFG.hidden_size)
    with pytest.raises(CheckpointError) as info:
        load_pretrained(_write_folder(tmp_path, state))
    msg = str(info.value)
    assert "1 missing key(s): encoder.layer.1.output.dense.weight" in msg
    assert "1 unexpected key(s): encoder.layer.7.attention.self.query.weight" in msg
    assert "model.safetensors" in msg and "strict=False" in msg


def test_many_missing_keys_are_truncated_with_count() -> None:
    model = _model()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("encoder.")}
    n_missing = sum(1 for k in model.state_dict() if k.startswith("encoder."))
    with pytest.raises(CheckpointError, match=rf"{n_missing} missing key\(s\): .*\({n_missing - 10} more\)"):
        load_state_into(MinBert(CFG), state)


def test_non_strict_loads_overlap_and_warns() -> None:
    source = _model(0)
    state = source.state_dict()
    del state["encoder.layer.1.output.dense.weight"]
    state["junk.weight"] = torch.zeros(1)
    target = _model(1)
    kept = target.encoder.layer[1].output.dense.weight.detach().clone()
    with pytest.warns(UserWarning, match="loading non-strictly"):
        load_state_into(target, state, strict=False)
    torch.testing.assert_close(
        target.embeddings.word_embeddings.weight, source.embeddings.word_embeddings.weight
    )
    torch.testing.assert_close(target.encoder.layer[1].output.dense.weight, kept)


def test_missing_pooler_only_warns(tmp_path: Path) -> None:
    state = {k: v for k, v in _model().state_dict().items() if not k.startswith("pooler.")}
    with pytest.warns(UserWarning, match="no pooler weights"):
        loaded = load_pretrained(_write_folder(tmp_path, state))
    assert loaded.pool(loaded(*_inputs())).shape == (2, CFG.hidden_size)


def test_shape_mismatch_names_key_and_shapes(tmp_path: Path) -> None:
    state = _model().state_dict()
    state["embeddings.word_embeddings.weight"] = torch.zeros(50, CFG.hidden_size)
    with pytest.raises(
        CheckpointError,
        match=r"embeddings.word_embeddings.weight: checkpoint \(50, 32\) vs model \(100, 32\)",
    ):
        load_pretrained(_write_folder(tmp_path, state))


def test_missing_paths_give_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="folder not found: .*does-not-exist") as info:
        load_pretrained(tmp_path / "does-not-exist")
    assert "\n" not in str(info.value)
    with pytest.raises(FileNotFoundError, match=r"config file not found: .*config\.json"):
        load_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(CFG.to_dict()))
    with pytest.raises(FileNotFoundError, match="expected model.safetensors or pytorch_model.bin"):
        load_pretrained(tmp_path)


def test_saved_folder_loads_in_transformers(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    model = _model()
    save_pretrained(model, tmp_path)
    hf = transformers.BertModel.from_pretrained(str(tmp_path)).eval()
    ids, mask = _inputs()
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(model(ids, mask), ref, atol=1e-5, rtol=1e-5)
