"""Corpus vocabularies: the tokenizer ids a small random LLM keeps (``model.vocab``).

The tiny demo LLM is a random Qwen2 of width 64 over the real tokenizer, whose 151,936-row
vocabulary is 99 % of its parameters and, on a CPU, most of a training step: the LM head and its
152k-way softmax over every target token, and the dense gradients and AdamW moments of 9.7M
embedding rows that the demo's text never uses (a demo Stage 1 step of batch 4: 0.53 s with
them, 0.19 s without, ``scripts/bench_vocab.py``).
A random LLM can just as well have one row per token its corpus uses. :func:`corpus_vocab`
collects them from what training and evaluation write and read; :class:`c2ser.models.c2ser_llm.C2SER`
maps tokenizer ids to those rows at its boundary (the tokenizer, prompts, targets, the parser and
every output stay in Qwen2 ids), with one extra row for any other id.

The vocabulary is built from one split (train by default), so evaluation on held-out speakers
stays honest: their transcripts may hold ids outside it (``coverage`` counts them), which only
the Stage 1 transcript quote can need; every prompt, label word and answer sentence is inside.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from c2ser.core.errors import BadInputError
from c2ser.core.io import atomic_write_text
from c2ser.core.labels import EMOTIONS
from c2ser.core.prompts import PARAPHRASES, TRAINING_PARAPHRASES
from c2ser.core.tokens import EOD_ID, IM_END_ID, IM_START_ID
from c2ser.data.cot import TEMPLATE_DIR, explicit_target, implicit_target
from c2ser.data.manifest import Utterance, read_manifest

_PLACEHOLDER = re.compile(r"\{[^}]*\}")


def _template_texts(template_dir: str | None) -> Iterable[str]:
    """Every string of the CoT template files, split at their placeholders, so that phrasings
    no training utterance happened to draw are covered too."""
    for path in sorted(Path(template_dir or TEMPLATE_DIR).glob("*.yaml")):
        stack: list[Any] = [yaml.safe_load(path.read_text(encoding="utf-8"))]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
            elif isinstance(node, str):
                yield from (p for p in _PLACEHOLDER.split(node) if p.strip())


def corpus_texts(
    utts: Iterable[Utterance], cot_seed: int = 0, template_dir: str | None = None
) -> list[str]:
    """What a C2SER trained on ``utts`` reads and writes: every stage's prompts (both sets of
    paraphrases included), each utterance's transcript and Stage 1 / Stage 2 targets (the
    manifest's, else the templates'), the answer sentence of every label in both languages, and the template
    strings, each also lower-cased (``data.lowercase_english``)."""
    texts = [p for table in (PARAPHRASES, TRAINING_PARAPHRASES) for s in table.values() for p in s]
    for lang in ("en", "zh"):
        texts += [
            implicit_target(Utterance("", "", emotion=e, language=lang), template_dir)
            for e in EMOTIONS
        ]
    for u in utts:
        texts.append(u.text or "")
        texts.append(u.extra.get("implicit_target") or implicit_target(u, template_dir))
        cot = u.extra.get("cot_target")
        if cot or (u.text or "").strip():
            texts.append(cot or explicit_target(u, cot_seed, template_dir))
    texts += _template_texts(template_dir)
    return texts + [t.lower() for t in texts]


def corpus_vocab(texts: Iterable[str], tokenizer: Any) -> list[int]:
    """Sorted tokenizer ids of ``texts`` plus Qwen2's end-of-text and chat markers."""
    ids = {EOD_ID, IM_START_ID, IM_END_ID}
    for text in texts:
        ids.update(tokenizer.encode(text, add_special_tokens=False))
    return sorted(ids)


def manifest_vocab(
    manifest: str | os.PathLike,
    split: str = "train",
    tokenizer: Any = None,
    cot_seed: int = 0,
    template_dir: str | None = None,
) -> tuple[list[int], dict[str, float]]:
    """The vocabulary of ``split`` of a manifest (utterances without ``split`` count as train),
    and its coverage of every split's transcripts: ``{split: share of their ids inside}``."""
    from c2ser.data.tokenizer import load_tokenizer

    tok = tokenizer or load_tokenizer()
    utts = read_manifest(manifest)
    by_split: dict[str, list[Utterance]] = {}
    for u in utts:
        by_split.setdefault(u.split or "train", []).append(u)
    if split not in by_split:
        raise BadInputError(
            f"{manifest}: no utterance with split {split!r} (has {sorted(by_split)})"
        )
    vocab = corpus_vocab(corpus_texts(by_split[split], cot_seed, template_dir), tok)
    inside = set(vocab)
    coverage = {}
    for name, group in sorted(by_split.items()):
        ids = [i for u in group for i in tok.encode(u.text or "", add_special_tokens=False)]
        coverage[name] = sum(i in inside for i in ids) / max(len(ids), 1)
    return vocab, coverage


def write_vocab(vocab: list[int], out: str | os.PathLike) -> Path:
    """Write a vocabulary as the JSON list ``model.vocab`` reads (atomically)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(out, json.dumps(vocab) + "\n")
