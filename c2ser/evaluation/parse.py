"""An LLM judge for model answers: the optional alternative to the rule parser
(:func:`c2ser.core.parse.parse_emotion`), as the paper's evaluation did (``judge.model=<dir>`` in
evaluate.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from c2ser.core.labels import EMOTIONS
from c2ser.core.parse import parse_emotion
from c2ser.inference.hardware import resolve_device

JUDGE_PROMPT = (
    "A speech emotion recognition model answered as follows about a recording:\n\n{answer}\n\n"
    "Which emotion does the answer conclude the speaker feels? Reply with exactly one word from: "
    f"{', '.join(EMOTIONS)}. Reply none if the answer names no emotion."
)


def judge_emotions(
    texts: Sequence[str | None],
    model_dir: str,
    batch_size: int = 16,
    device: str | None = None,
    max_new_tokens: int = 8,
) -> list[str | None]:
    """Labels for ``texts`` from a local instruction-tuned causal LM (greedy, batched).

    The paper maps answers to labels with an LLM (Qwen2.5-14B, spec §4, unverified) and does not
    publish its prompt; :data:`JUDGE_PROMPT` is ours. The judge's short reply is read with
    :func:`parse_emotion`, so a reply outside the 7 labels gives ``None``. Identical answers are
    judged once (Stage 2 answers repeat a lot); empty ones are ``None`` without a call.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    unique = sorted({t for t in texts if t})
    if not unique:
        return [None] * len(texts)
    device = resolve_device(device)
    tok = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    labels: dict[str, str | None] = {}
    for start in range(0, len(unique), batch_size):
        batch = unique[start : start + batch_size]
        prompts = [_judge_prompt(tok, t) for t in batch]
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        with torch.inference_mode():
            out = model.generate(
                **enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id
            )
        replies = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        labels.update({t: parse_emotion(r) for t, r in zip(batch, replies, strict=True)})
    return [labels.get(t) if t else None for t in texts]


def _judge_prompt(tok: Any, answer: str) -> str:
    instruction = JUDGE_PROMPT.format(answer=answer.strip())
    if getattr(tok, "chat_template", None):
        messages = [{"role": "user", "content": instruction}]
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return instruction + "\nAnswer:"
