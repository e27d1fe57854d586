"""Score the explicit chain of thought of Stage 1 answers: the speaking style it states and the
transcript it quotes, against the manifest.

Stage 1 is trained to describe speed, pitch and volume, quote the transcript, then conclude
(``c2ser/resources/cot_templates``). Whether the emotion is right says nothing about whether
those steps are; here they are checked one by one:

- :func:`parse_style` reads the bin (``low|medium|high``) the answer states for each of pitch,
  volume and speed, in English ("a fast speaking rate", "high-pitched", "slow in tempo", "the
  volume is moderate", "speaks loudly") and Chinese (以缓慢的语速, 语调高昂, 音调较高, 音量中等,
  声音洪亮). A level word counts for the style keyword it stands next to in the same clause
  (before it first, as in "a low volume"; else after it, as in "语速缓慢"); a word that names
  both (loudly, 洪亮) counts when no keyword phrase does. The quoted transcript is ignored, so
  the speaker's words ("a high price") are not read as style.
- :func:`transcript_similarity` compares the first quoted span with the reference text
  (difflib ratio of the lower-cased texts without punctuation or spaces; 0 when nothing is
  quoted).
- :func:`score_cot` aggregates both over answers, overall and per language, against the
  utterances' ``extra["pitch"|"volume"|"speed"]`` bins and ``text``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from c2ser.evaluation.scoring import row_language

STYLE_KEYS = ("pitch", "volume", "speed")
LEVELS = ("low", "medium", "high")
QUOTED = re.compile(r"[\"“「『]([^\"”」』]*)[\"”」』]")

# English: keywords naming the attribute, and the level words each attribute reads.
_EN_KEYWORDS = {
    "pitch": "pitch pitched intonation",
    "volume": "volume loudness",
    "speed": "speed pace paced tempo rate",
}
_EN_LEVELS = {
    "pitch": {
        "low": "low lower deep",
        "medium": "medium moderate normal average mid middle steady even",
        "high": "high higher raised elevated shrill",
    },
    "volume": {
        "low": "low lower soft quiet small faint weak",
        "medium": "medium moderate normal average mid middle",
        "high": "high higher loud strong large raised",
    },
    "speed": {
        "low": "slow slower leisurely unhurried",
        "medium": "medium moderate normal average steady even",
        "high": "fast faster quick rapid brisk hurried high",
    },
}
# words that name attribute and level at once, read when no keyword phrase gives the level
_EN_STANDALONE = {
    "loudly": ("volume", "high"), "loud": ("volume", "high"), "shouting": ("volume", "high"),
    "softly": ("volume", "low"), "quietly": ("volume", "low"), "whispering": ("volume", "low"),
    "quickly": ("speed", "high"), "rapidly": ("speed", "high"), "hurriedly": ("speed", "high"),
    "slowly": ("speed", "low"),
}  # fmt: skip
_EN_STOP = {",", ".", ";", "!", "?", "and", "but", "while", "whereas", "with", "or", "then"}
_EN_TOKEN = re.compile(r"[a-z]+|[^\sa-z]")

_ZH_KEYWORDS = {
    "pitch": "语调 音调 音高 声调 调子",
    "volume": "音量 声量 嗓门",
    "speed": "语速 速度 节奏 语气节奏",
}
_ZH_LEVELS = {
    "pitch": {
        "low": "低沉 深沉 较低 偏低 低",
        "medium": "平稳 适中 中等 正常 一般",
        "high": "高昂 高亢 较高 偏高 尖锐 上扬 高",
    },
    "volume": {
        "low": "较小 偏小 微弱 轻柔 较低 小 轻 低",
        "medium": "中等 适中 正常 一般 平稳",
        "high": "较大 偏大 响亮 洪亮 较高 大 高",
    },
    "speed": {
        "low": "缓慢 较慢 偏慢 慢",
        "medium": "适中 中等 正常 平稳 一般",
        "high": "较快 偏快 急促 迅速 飞快 快",
    },
}
_ZH_STANDALONE = {
    "洪亮": ("volume", "high"), "响亮": ("volume", "high"), "大声": ("volume", "high"),
    "小声": ("volume", "low"), "轻声": ("volume", "low"), "低声": ("volume", "low"),
    "急促": ("speed", "high"), "缓慢": ("speed", "low"),
    "高亢": ("pitch", "high"), "低沉": ("pitch", "low"),
}  # fmt: skip
_ZH_CLAUSE = re.compile(r"[，,。.；;：:、！!？?\s]|和|与|以及|并且")
_ZH_ADVERB = "(?:[的为是很较更偏稍略挺颇]|非常|十分|比较|相对|有些|有点|显得|较为|相当)*"


def _word_map(levels: Mapping[str, str]) -> dict[str, str]:
    return {w: level for level, words in levels.items() for w in words.split()}


_EN_WORDS = {k: _word_map(v) for k, v in _EN_LEVELS.items()}
_EN_KEY_OF = {w: k for k, words in _EN_KEYWORDS.items() for w in words.split()}
_ZH_WORDS = {k: _word_map(v) for k, v in _ZH_LEVELS.items()}


def _zh_alternation(words: Sequence[str]) -> str:
    return "|".join(sorted(words, key=len, reverse=True))


_ZH_KEY_RE = re.compile(_zh_alternation([w for ws in _ZH_KEYWORDS.values() for w in ws.split()]))
_ZH_KEY_OF = {w: k for k, words in _ZH_KEYWORDS.items() for w in words.split()}
_ZH_BEFORE = {
    k: re.compile(f"({_zh_alternation(list(words))})的?$") for k, words in _ZH_WORDS.items()
}
_ZH_AFTER = {
    k: re.compile(f"^{_ZH_ADVERB}({_zh_alternation(list(words))})")
    for k, words in _ZH_WORDS.items()
}
_ZH_STANDALONE_RE = re.compile(_zh_alternation(list(_ZH_STANDALONE)))


def _unquoted(text: str) -> str:
    return QUOTED.sub(" ", text)


def _english_style(text: str) -> dict[str, str]:
    tokens = _EN_TOKEN.findall(text.lower())
    tokens = [t for t in tokens if t != "-"]  # "high-pitched" -> high, pitched
    found: dict[str, str] = {}
    for i, tok in enumerate(tokens):
        key = _EN_KEY_OF.get(tok)
        if key is None or key in found:
            continue
        level = _nearest(tokens[max(0, i - 3) : i][::-1], _EN_WORDS[key])
        if level is None:
            after = [t for t in tokens[i + 1 : i + 5] if t != ":"]
            level = _nearest(after, _EN_WORDS[key])
        if level is not None:
            found[key] = level
    for tok in tokens:
        if tok in _EN_STANDALONE:
            key, level = _EN_STANDALONE[tok]
            found.setdefault(key, level)
    return found


def _nearest(window: Sequence[str], words: Mapping[str, str]) -> str | None:
    """The level of the first level word in ``window`` before a clause boundary."""
    for tok in window:
        if tok in _EN_STOP:
            return None
        if tok in words:
            return words[tok]
    return None


def _chinese_style(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for m in _ZH_KEY_RE.finditer(text):
        key = _ZH_KEY_OF[m.group(0)]
        if key in found:
            continue
        before = _ZH_CLAUSE.split(text[: m.start()])[-1]
        after = _ZH_CLAUSE.split(text[m.end() :])[0]
        hit = _ZH_BEFORE[key].search(before) or _ZH_AFTER[key].search(after)
        if hit:
            found[key] = _ZH_WORDS[key][hit.group(1)]
    for m in _ZH_STANDALONE_RE.finditer(text):
        key, level = _ZH_STANDALONE[m.group(0)]
        found.setdefault(key, level)
    return found


def parse_style(answer: str | None) -> dict[str, str]:
    """``{attribute: level}`` for the attributes the answer states (see module doc); both
    languages are read, as models switch languages."""
    if not answer:
        return {}
    body = _unquoted(answer)
    return {**_chinese_style(body), **_english_style(body)}


def quoted_transcript(answer: str | None) -> str | None:
    """The first quoted span of an answer, or ``None``."""
    m = QUOTED.search(answer or "")
    return m.group(1) if m else None


def _normalise(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.lower())


def transcript_similarity(answer: str | None, text: str) -> float:
    """Similarity in [0, 1] of the answer's first quoted span to the reference transcript
    (difflib ratio, punctuation-, space- and case-insensitive); 0 when nothing is quoted."""
    quoted = quoted_transcript(answer)
    if quoted is None:
        return 0.0
    return difflib.SequenceMatcher(None, _normalise(quoted), _normalise(text)).ratio()


def _aggregate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(items)}
    accs = []
    for key in STYLE_KEYS:
        judged = [it["style"].get(key) == it["ref"][key] for it in items if it["ref"].get(key)]
        out[f"{key}_acc"] = sum(judged) / len(judged) if judged else None
        if judged:
            accs.append(out[f"{key}_acc"])
    out["style_acc"] = sum(accs) / len(accs) if accs else None
    stated = [key in it["style"] for it in items for key in STYLE_KEYS]
    out["style_parse_rate"] = sum(stated) / len(stated) if stated else 0.0
    sims = [it["similarity"] for it in items if it["similarity"] is not None]
    out["transcript_similarity"] = sum(sims) / len(sims) if sims else None
    out["transcript_quote_rate"] = sum(it["quoted"] for it in items) / len(items) if items else 0.0
    return out


def score_cot(
    rows: Sequence[Mapping[str, Any]], references: Mapping[str, Any]
) -> dict[str, Any] | None:
    """Chain-of-thought scores of Stage 1 answers.

    Args:
        rows: result rows (``index``, answer ``text``, optional ``language``); a row without text
            states nothing and quotes nothing.
        references: id -> :class:`~c2ser.data.manifest.Utterance` (its ``text`` and
            ``extra`` pitch / volume / speed bins; an utterance lacking a bin is not judged on it).

    Returns:
        ``None`` when no row has a reference; else ``n``, ``pitch_acc``, ``volume_acc``,
        ``speed_acc``, ``style_acc`` (their mean), ``style_parse_rate`` (share of the three
        attributes stated, over answers), ``transcript_similarity``, ``transcript_quote_rate``
        (accuracies and similarity ``None`` when nothing could be judged), and the same per
        language under ``languages``.
    """
    items = []
    for row in rows:
        utt = references.get(str(row["index"]))
        if utt is None:
            continue
        answer = row.get("text")
        ref = {k: str(utt.extra[k]).lower() for k in STYLE_KEYS if utt.extra.get(k)}
        items.append(
            {
                "language": row_language(row),
                "style": parse_style(answer),
                "ref": ref,
                "quoted": quoted_transcript(answer) is not None,
                "similarity": transcript_similarity(answer, utt.text) if utt.text else None,
            }
        )
    if not items:
        return None
    langs = sorted({it["language"] for it in items})
    return {
        **_aggregate(items),
        "languages": {lang: _aggregate([it for it in items if it["language"] == lang])
                      for lang in langs},
    }  # fmt: skip
