"""Which language an utterance is in: the one rule that manifests, chain-of-thought targets and
scoring share, so that a target is written and scored in the same language.

In order: the explicit ``language`` field; the Emo-Emilia id prefix (``ZH_...`` / ``EN_...``);
the script of the transcript (any CJK character: ``zh``, other text: ``en``); else ``default``.
"""

from __future__ import annotations

import re

CJK = re.compile(r"[\u3400-\u9fff]")
ID_PREFIXES = {"zh": "zh", "en": "en"}


def language_from_id(index: str) -> str | None:
    """``zh``/``en`` from an Emo-Emilia id prefix (``ZH_0001``), else ``None``."""
    return ID_PREFIXES.get(str(index).split("_", 1)[0].lower())


def language_of(
    language: str | None, index: str, text: str | None = None, default: str = "unk"
) -> str:
    """The utterance's language by the rule of the module docstring (lower case)."""
    if language:
        return str(language).lower()
    found = language_from_id(index)
    if found:
        return found
    if text and text.strip():
        return "zh" if CJK.search(text) else "en"
    return default
