"""Qwen2 special token ids and the Emotion2Vec-S feature layout that C2SER is built around.

They live here, not in the tokenizer or the models, because the data pipeline (targets end with
``EOD_ID``, features have ``SSL_ROWS`` rows), the models and the converters must agree on them
without importing each other.
"""

from __future__ import annotations

EOD_ID = 151643  # <|endoftext|>: Qwen2's eos, appended to every C2SER target
IM_START_ID, IM_END_ID = 151644, 151645
PAD_TOKEN, PAD_ID = "[PAD]", 151646  # added by the official model, never fed to the LLM
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
SSL_ROWS = 10  # official Emotion2Vec-S utterance rows (``utt_x``: the first 10 frames)
