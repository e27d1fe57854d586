"""Chain-of-thought scoring on hand-written Stage 1 answers in English and Chinese."""

from __future__ import annotations

import itertools

import pytest

from c2ser.data.cot import load_templates
from c2ser.data.manifest import Utterance
from c2ser.evaluation.cot_score import (
    parse_style,
    quoted_transcript,
    score_cot,
    transcript_similarity,
)

LEVELS = ("low", "medium", "high")


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_training_phrasing_parses_to_its_bins(lang):
    """All phrasings x all 27 bin combinations of the templates Stage 1 is trained on; the
    transcript carries style words of its own that must not be read."""
    t = load_templates(lang)
    text = "It is a high price, said slowly and loudly." if lang == "en" else "声音太大了，说慢点。"
    for phrasing, (speed, pitch, volume) in itertools.product(
        t.explicit, itertools.product(LEVELS, repeat=3)
    ):
        answer = phrasing.format(
            speed=t.levels["speed"][speed], pitch=t.levels["pitch"][pitch],
            volume=t.levels["volume"][volume], text=text, emotion="x", reason=t.reasons["sad"][0],
        )  # fmt: skip
        assert parse_style(answer) == {"speed": speed, "pitch": pitch, "volume": volume}, answer


@pytest.mark.parametrize(
    ("answer", "style"),
    [
        ("She speaks quickly in a high-pitched voice, quite loudly.",
         {"speed": "high", "pitch": "high", "volume": "high"}),
        ("The pitch is low, the volume moderate and the pace fast.",
         {"pitch": "low", "volume": "medium", "speed": "high"}),
        ("The speaker talks slowly and softly, with a deep pitch.",
         {"speed": "low", "volume": "low", "pitch": "low"}),
        ("A fast-paced delivery at normal volume.", {"speed": "high", "volume": "medium"}),
        ("The speaking rate is slow.", {"speed": "low"}),
        ('He says "speak up, the volume is low" with a medium pitch.', {"pitch": "medium"}),
        ("The speaker sounds sad.", {}),
        ("说话者音调较高，语速缓慢，声音洪亮。", {"pitch": "high", "speed": "low", "volume": "high"}),
        ("语速很快，音调偏低，音量适中", {"speed": "high", "pitch": "low", "volume": "medium"}),
        ("以缓慢的速度、高昂的语调和中等音量的声音说道", {"speed": "low", "pitch": "high", "volume": "medium"}),
        ("她小声地说，语调平稳。", {"volume": "low", "pitch": "medium"}),
        ("说话者语气急促，声音低沉。", {"speed": "high", "pitch": "low"}),
        ("这条语音的情感为高兴", {}),
        ("", {}),
    ],
)  # fmt: skip
def test_other_phrasings(answer, style):
    assert parse_style(answer) == style


def test_transcript_similarity():
    answer = 'The speaker says: "my KEYS fell, under the seat!" and sounds sad.'
    assert quoted_transcript(answer) == "my KEYS fell, under the seat!"
    assert transcript_similarity(answer, "My keys fell under the seat.") == 1.0
    assert transcript_similarity('says "abce"', "abcd") == pytest.approx(0.75)  # 2*3/8
    assert transcript_similarity("说道：“你好吗”然后", "你好。") == pytest.approx(0.8)  # 2*2/5
    assert transcript_similarity("no quote at all", "anything") == 0.0
    assert transcript_similarity(None, "anything") == 0.0


def _utt(idx, lang, text, **bins):
    return Utterance(id=idx, wav="x.wav", emotion="sad", text=text, language=lang, extra=bins)


def test_score_cot_against_the_manifest():
    refs = {
        "EN_1": _utt("EN_1", "en", "I lost it.", pitch="low", volume="high", speed="low"),
        "EN_2": _utt("EN_2", "en", "Fine then.", pitch="high", volume="low", speed="medium"),
        "ZH_1": _utt("ZH_1", "zh", "你好", pitch="medium", volume="medium", speed="high"),
        "ZH_2": _utt("ZH_2", "zh", "再见"),  # no bins: judged on its transcript only
    }
    rows = [
        # pitch, volume, speed right; transcript exact
        {"index": "EN_1", "text": 'Low pitch, high volume, slow pace: "I lost it." Sad.'},
        # pitch right, volume wrong, speed not stated; nothing quoted
        {"index": "EN_2", "text": "A high pitch and a loud voice; the speaker is angry."},
        # failed inference: states and quotes nothing
        {"index": "ZH_1", "text": None, "language": "zh"},
        {"index": "ZH_2", "text": "语速较快：“再见”", "language": "zh"},
        {"index": "EN_9", "text": "not in the manifest: ignored"},
    ]
    cot = score_cot(rows, refs)
    assert cot["n"] == 4
    assert (cot["pitch_acc"], cot["volume_acc"], cot["speed_acc"]) == (2 / 3, 1 / 3, 1 / 3)
    assert cot["style_acc"] == pytest.approx((2 / 3 + 1 / 3 + 1 / 3) / 3)
    assert cot["style_parse_rate"] == pytest.approx((3 + 2 + 0 + 1) / 12)
    assert cot["transcript_similarity"] == pytest.approx((1 + 0 + 0 + 1) / 4)
    assert cot["transcript_quote_rate"] == 0.5
    en, zh = cot["languages"]["en"], cot["languages"]["zh"]
    assert (en["n"], en["pitch_acc"], en["speed_acc"], en["transcript_similarity"]) == (
        2, 1.0, 0.5, 0.5,
    )  # fmt: skip
    assert (zh["n"], zh["pitch_acc"], zh["style_parse_rate"]) == (2, 0.0, pytest.approx(1 / 6))
    assert score_cot(rows, {}) is None
    no_bins = score_cot([rows[3]], refs)
    assert no_bins["style_acc"] is None and no_bins["transcript_similarity"] == 1.0
