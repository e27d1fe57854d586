"""The offline Qwen2 tokenizer reproduces Qwen2's ids; tiny Qwen2 directories load like real ones."""

from __future__ import annotations

from c2ser.core.tokens import EOD_ID, IM_END_ID, IM_START_ID, PAD_ID
from c2ser.data.tokenizer import load_tokenizer
from tests.factories import make_tiny_qwen2


def test_special_token_ids():
    tok = load_tokenizer()
    ids = tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "[PAD]"])
    assert ids == [EOD_ID, IM_START_ID, IM_END_ID, PAD_ID] == [151643, 151644, 151645, 151646]
    assert tok.eos_token_id == EOD_ID and tok.pad_token_id == PAD_ID
    assert len(tok) == 151647


def test_known_ids_and_roundtrip():
    tok = load_tokenizer()
    assert tok("Hello world", add_special_tokens=False).input_ids == [9707, 1879]
    assert tok("12", add_special_tokens=False).input_ids == [16, 17]  # Qwen2 splits digits
    zh = "说话者以缓慢的速度、高昂的语调说道：“不知道艾德林小姐有没有给我们准备好吃的点心呢。”"
    ids = tok(zh, add_special_tokens=False).input_ids
    assert max(ids) < EOD_ID and tok.decode(ids) == zh
    assert tok.decode([*ids, EOD_ID], skip_special_tokens=True) == zh


def test_cache_is_built_atomically(tmp_path, monkeypatch):
    monkeypatch.setenv("C2SER_CACHE", str(tmp_path))
    tok = load_tokenizer.__wrapped__()
    assert tok("Hello world").input_ids == [9707, 1879]
    assert [p.name for p in (tmp_path / "tokenizer").iterdir()] == ["v1"]  # no temp dir left


def test_make_tiny_qwen2(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = make_tiny_qwen2(tmp_path / "qwen2", hidden=32, layers=1, heads=2, kv_heads=1)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.hidden_size == 32 and model.config.vocab_size > PAD_ID
    assert AutoTokenizer.from_pretrained(out)("Hello world").input_ids == [9707, 1879]
