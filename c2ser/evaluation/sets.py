"""What a test set is called, decided from its data.

``c2ser report`` puts a set's results beside the paper's numbers for the set of the same name,
so the name must not come from the config group alone: ``eval_set=emo_emilia
eval_set.manifest=my.jsonl`` is not Emo-Emilia. A set is ``emo_emilia`` only when its manifest is the
released test set (:func:`is_emo_emilia`); any other manifest is named after its file.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from c2ser.core.errors import BadInputError
from c2ser.core.labels import EMOTIONS
from c2ser.data.manifest import Utterance

EMO_EMILIA = "emo_emilia"
PER_CELL = 100  # Emo-Emilia: 100 utterances per (language, emotion)
_EMILIA_ID = re.compile(r"^(ZH|EN)_B\d{5}_S\d{5}_W\d{6}$")


def is_emo_emilia(utts: Sequence[Utterance]) -> bool:
    """True for the released Emo-Emilia test set: 1400 Emilia-style ids (``ZH_B00090_S00350_
    W000000``), 100 per language and emotion."""
    if len(utts) != PER_CELL * 2 * len(EMOTIONS) or not all(_EMILIA_ID.match(u.id) for u in utts):
        return False
    cells = Counter((u.id[:2], u.emotion) for u in utts)
    return all(cells[(lang, e)] == PER_CELL for lang in ("ZH", "EN") for e in EMOTIONS)


def set_name(
    name: str | None, manifest: str | Path, split: str | None, utts: Sequence[Utterance]
) -> str:
    """``name`` when given, else ``emo_emilia`` for Emo-Emilia and the manifest's file name
    (with ``_<split>``) for anything else. ``emo_emilia`` is refused on other data, since the
    report would compare it with the paper."""
    if name == EMO_EMILIA and not is_emo_emilia(utts):
        raise BadInputError(
            f"{manifest}: data.name={EMO_EMILIA} is kept for the released Emo-Emilia test set "
            f"(1400 utterances, 100 per language and emotion), which this manifest is not "
            f"({len(utts)} utterances); leave data.name unset to name it after the file"
        )
    if name:
        return name
    if is_emo_emilia(utts):
        return EMO_EMILIA
    return Path(manifest).stem + (f"_{split}" if split else "")
