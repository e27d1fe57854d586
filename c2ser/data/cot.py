"""Chain-of-thought training targets: explicit (Stage 1) and implicit (Stage 2) answers.

The paper fills a template with the binned speaking style (speed, pitch, volume), the transcript
and the gold emotion, then lets an LLM polish it into a > 40-token description. The official
release ships neither, only one example answer:

    说话者以缓慢的速度、高昂的语调和中等音量的声音说道：“……”通过分析语音特征，推测情绪为快乐，……

so this module writes targets of that shape (style -> quoted transcript -> emotion + a short
reason) from per-language template files in ``c2ser/resources/cot_templates/<lang>.yaml``, with
several phrasings each. The phrasing and the reason are picked from a hash of (seed, utterance
id): varied across the corpus, identical on every run. :func:`rewrite_with_llm` optionally
rewrites the drafts with a local instruction-tuned causal LM, the paper's polishing step.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from c2ser.core.errors import BadInputError, SkipReport
from c2ser.core.language import language_of
from c2ser.data.manifest import Utterance

TEMPLATE_DIR = Path(__file__).resolve().parents[1] / "resources" / "cot_templates"
STYLE_KEYS = ("speed", "pitch", "volume")
LEVELS = ("low", "medium", "high")


@dataclass(frozen=True)
class CotTemplates:
    """One language's template file: level words, emotion names, reasons and phrasings."""

    language: str
    levels: dict[str, dict[str, str]]
    emotions: dict[str, str]
    reasons: dict[str, list[str]]
    explicit: list[str]
    implicit: str

    @classmethod
    def from_file(cls, path: Path, language: str) -> CotTemplates:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        t = cls(
            language=language, **{k: data[k] for k in cls.__dataclass_fields__ if k != "language"}
        )
        missing = [
            f"levels.{k}.{v}" for k in STYLE_KEYS for v in LEVELS if v not in t.levels.get(k, {})
        ]
        missing += [f"reasons.{e}" for e in t.emotions if not t.reasons.get(e)]
        if missing or not t.explicit:
            raise ValueError(f"{path}: incomplete template file (missing {missing or 'explicit'})")
        return t


@lru_cache(maxsize=8)
def load_templates(language: str, template_dir: str | None = None) -> CotTemplates:
    """Templates for ``language`` (``en``/``zh``) from ``template_dir`` or the packaged ones."""
    path = Path(template_dir or TEMPLATE_DIR) / f"{language}.yaml"
    if not path.is_file():
        raise BadInputError(f"no CoT templates for language {language!r} ({path} not found)")
    return CotTemplates.from_file(path, language)


def utterance_language(utt: Utterance) -> str:
    """The utterance's language (:func:`c2ser.core.language.language_of`), ``en`` when nothing
    tells: the templates need one."""
    return language_of(utt.language, utt.id, utt.text, default="en")


def _pick(options: Sequence[str], seed: int, utt_id: str, salt: str) -> str:
    """Deterministic choice keyed by (seed, id): stable across runs, machines and Python hashes."""
    digest = hashlib.sha256(f"{seed}\x00{utt_id}\x00{salt}".encode()).digest()
    return options[int.from_bytes(digest[:8], "big") % len(options)]


def _emotion_name(t: CotTemplates, utt: Utterance) -> str:
    if utt.emotion not in t.emotions:
        raise BadInputError(
            f"{utt.id}: emotion {utt.emotion!r} has no entry in the {t.language} CoT templates "
            f"(known: {', '.join(t.emotions)})"
        )
    return t.emotions[utt.emotion]


def style_levels(utt: Utterance) -> dict[str, str]:
    """The utterance's speed/pitch/volume bins (``low|medium|high``), validated."""
    missing = [k for k in STYLE_KEYS if utt.extra.get(k) in (None, "")]
    if missing:
        raise BadInputError(
            f"{utt.id}: missing style attribute(s) {', '.join(missing)}; add them with "
            "`c2ser style-attributes --manifest M --out M2` first"
        )
    levels = {k: str(utt.extra[k]).lower() for k in STYLE_KEYS}
    bad = [f"{k}={v!r}" for k, v in levels.items() if v not in LEVELS]
    if bad:
        raise BadInputError(f"{utt.id}: style attribute(s) {', '.join(bad)} not in {LEVELS}")
    return levels


def explicit_target(utt: Utterance, seed: int = 0, template_dir: str | None = None) -> str:
    """The Stage 1 answer: style -> quoted transcript -> emotion with a short reason."""
    t = load_templates(utterance_language(utt), template_dir)
    if not (utt.text or "").strip():
        raise BadInputError(f"{utt.id}: no transcript ('text'), needed for the explicit CoT")
    words = {k: t.levels[k][v] for k, v in style_levels(utt).items()}
    return _pick(t.explicit, seed, utt.id, "explicit").format(
        **words,
        text=utt.text.strip(),
        emotion=_emotion_name(t, utt),
        reason=_pick(t.reasons[utt.emotion], seed, utt.id, "reason"),
    )


def implicit_target(utt: Utterance, template_dir: str | None = None) -> str:
    """The Stage 2 answer, e.g. ``The speaker's emotion is happy.`` / ``这条语音的情感为高兴``."""
    t = load_templates(utterance_language(utt), template_dir)
    return t.implicit.format(emotion=_emotion_name(t, utt))


def add_cot_targets(
    utts: Sequence[Utterance],
    seed: int = 0,
    template_dir: str | None = None,
    skip_bad: bool = False,
    report: SkipReport | None = None,
) -> list[Utterance]:
    """Set ``extra["cot_target"]`` and ``extra["implicit_target"]`` on every utterance.

    A missing style attribute, transcript or unknown emotion raises :class:`BadInputError`, or
    with ``skip_bad`` drops the utterance and records why in ``report``.
    """
    out = []
    for utt in utts:
        try:
            cot, imp = explicit_target(utt, seed, template_dir), implicit_target(utt, template_dir)
        except BadInputError as e:
            if not skip_bad:
                raise
            if report is not None:
                report.add(utt.id, str(e).removeprefix(f"{utt.id}: "))
            continue
        utt.extra.update(cot_target=cot, implicit_target=imp)
        out.append(utt)
    return out


REWRITE_INSTRUCTIONS = {
    "en": (
        "Rewrite the following description of a speech recording as one fluent paragraph of "
        "more than 40 words. Keep the speaking rate, pitch and volume, keep the quoted transcript "
        "exactly as it is, and end with the speaker's emotion ({emotion}) and a short reason. "
        "Answer with the paragraph only.\n\n{draft}"
    ),
    "zh": (
        "请将下面这段对语音的描述改写成一段通顺自然、不少于40字的话。保留语速、语调和音量，"
        "原样保留引号中的文本内容，最后说明说话者的情绪（{emotion}）及简短理由。只输出改写后的段落。"
        "\n\n{draft}"
    ),
}


def rewrite_is_faithful(rewrite: str, utt: Utterance, template_dir: str | None = None) -> bool:
    """A rewrite is kept only if it still quotes the transcript and names the gold emotion."""
    t = load_templates(utterance_language(utt), template_dir)
    norm = lambda s: re.sub(r"\W+", "", s.lower())  # noqa: E731 - punctuation/space-insensitive
    return (
        norm(utt.text or "") in norm(rewrite) and _emotion_name(t, utt).lower() in rewrite.lower()
    )


def rewrite_with_llm(
    utts: Sequence[Utterance],
    model_dir: str,
    batch_size: int = 8,
    max_new_tokens: int = 256,
    device: str | None = None,
    template_dir: str | None = None,
    done: dict[str, str] | None = None,
    on_batch: Any = None,
) -> dict[str, str]:
    """Rewrite each ``extra["cot_target"]`` with a local causal LM (greedy, batched, left padded).

    Returns id -> text for every utterance: the rewrite when :func:`rewrite_is_faithful`, else the
    template draft (so a weak model can never corrupt a label). ``done`` holds results of an
    earlier, interrupted run (skipped here); ``on_batch(results)`` is called after each batch with
    the new id -> (text, accepted) pairs so that callers can checkpoint progress.
    """
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    tok = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    results = dict(done or {})
    todo = [u for u in utts if u.id not in results]
    for start in tqdm(range(0, len(todo), batch_size), desc="rewrite", unit="batch"):
        batch = todo[start : start + batch_size]
        prompts = [_rewrite_prompt(tok, u, template_dir) for u in batch]
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        with torch.no_grad():
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
            )
        texts = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        new = {}
        for u, text in zip(batch, texts, strict=True):
            text = " ".join(text.split()) if utterance_language(u) == "en" else text.strip()
            ok = rewrite_is_faithful(text, u, template_dir)
            new[u.id] = (text if ok else u.extra["cot_target"], ok)
        results.update({k: v[0] for k, v in new.items()})
        if on_batch is not None:
            on_batch(new)
    return results


def _rewrite_prompt(tok: Any, utt: Utterance, template_dir: str | None) -> str:
    lang = utterance_language(utt)
    t = load_templates(lang, template_dir)
    instruction = REWRITE_INSTRUCTIONS.get(lang, REWRITE_INSTRUCTIONS["en"]).format(
        emotion=_emotion_name(t, utt), draft=utt.extra["cot_target"]
    )
    if getattr(tok, "chat_template", None):
        messages = [{"role": "user", "content": instruction}]
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return instruction + "\n\n"
