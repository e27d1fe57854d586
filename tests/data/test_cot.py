"""Chain-of-thought targets: templates fill in both languages, deterministically; the CLI."""

import json

import pytest

from c2ser.cli.main import main
from c2ser.core.errors import BadInputError, SkipReport
from c2ser.core.labels import EMOTIONS
from c2ser.data.cot import (
    LEVELS,
    add_cot_targets,
    explicit_target,
    implicit_target,
    load_templates,
    rewrite_is_faithful,
    rewrite_with_llm,
)
from c2ser.data.cot_manifest import make_cot_manifest
from c2ser.data.manifest import Utterance

TEXT = {
    "en": "I told you we would make it.",
    "zh": "不知道艾德林小姐有没有给我们准备好吃的点心呢。",
}
ZH_NAMES = {"angry": "生气", "happy": "高兴", "neutral": "中性", "sad": "悲伤"}


def utt(uid="u1", emotion="happy", language="en", text=None, **style):
    style = style or {"speed": "low", "pitch": "high", "volume": "medium"}
    return Utterance(
        id=uid,
        wav="x.wav",
        emotion=emotion,
        text=TEXT[language] if text is None else text,
        language=language,
        extra=dict(style),
    )


@pytest.mark.parametrize("language", ["en", "zh"])
@pytest.mark.parametrize("emotion", EMOTIONS)
def test_explicit_target_contains_style_transcript_and_emotion(language, emotion):
    t = load_templates(language)
    u = utt(f"{language}-{emotion}", emotion, language)
    text = explicit_target(u)
    assert TEXT[language] in text
    assert t.emotions[emotion] in text
    for key, level in u.extra.items():
        assert t.levels[key][level] in text
    # order of the official example: style, then the quoted transcript, then the emotion
    assert text.index(TEXT[language]) < text.rindex(t.emotions[emotion])
    assert "{" not in text and "}" not in text
    other = [t.emotions[e] for e in EMOTIONS if e != emotion]
    reason = text[text.index(TEXT[language]) + len(TEXT[language]) :]
    assert not [w for w in other if w in reason], "a reason names another emotion"


def test_every_phrasing_and_level_fills():
    for language in ("en", "zh"):
        t = load_templates(language)
        words = {k: t.levels[k]["medium"] for k in ("speed", "pitch", "volume")}
        for phrasing in t.explicit:
            filled = phrasing.format(**words, text="T", emotion="E", reason="R")
            assert "T" in filled and "E" in filled and "R" in filled
        assert set(t.emotions) == set(EMOTIONS)


def test_chinese_names_and_implicit_answers():
    for emotion, name in ZH_NAMES.items():
        assert implicit_target(utt(emotion=emotion, language="zh")) == f"这条语音的情感为{name}"
    assert implicit_target(utt(emotion="happy")) == "The speaker's emotion is happy."


def test_official_example_pattern_in_chinese():
    u = utt("vo_EQAST002_1_paimon_07", "happy", "zh", speed="low", pitch="high", volume="medium")
    texts = {explicit_target(u, seed) for seed in range(40)}
    assert (
        "说话者以缓慢的语速、高昂的语调和中等的音量说道：“不知道艾德林小姐有没有给我们准备好吃的点心呢。”"
        "通过分析语音特征，推测情绪为高兴，"
    ) in "\n".join(texts)


def test_choice_is_deterministic_and_varied():
    a = [explicit_target(utt(f"u{i}")) for i in range(30)]
    b = [explicit_target(utt(f"u{i}")) for i in range(30)]
    assert a == b
    assert len(set(a)) >= 4, "phrasings should vary across utterances"
    assert explicit_target(utt("u0"), seed=0) != explicit_target(utt("u0"), seed=1) or any(
        explicit_target(utt(f"u{i}"), 0) != explicit_target(utt(f"u{i}"), 1) for i in range(10)
    )


def test_language_falls_back_to_script():
    u = utt(language="zh")
    u.language = None
    assert "情绪" in explicit_target(u) or "情感" in explicit_target(u)


def test_bad_inputs_are_clear_errors_or_counted_skips():
    no_style = Utterance(id="a", wav="x", emotion="sad", text="hi", language="en")
    with pytest.raises(
        BadInputError,
        match=r"a: missing style attribute\(s\) speed, pitch, volume.*style-attributes",
    ):
        explicit_target(no_style)
    with pytest.raises(BadInputError, match="not in"):
        explicit_target(utt(speed="very", pitch="low", volume="low"))
    with pytest.raises(BadInputError, match="no entry"):
        explicit_target(utt(emotion="bored"))
    with pytest.raises(BadInputError, match="transcript"):
        explicit_target(utt(text=""))
    report = SkipReport()
    kept = add_cot_targets([no_style, utt("b")], skip_bad=True, report=report)
    assert [u.id for u in kept] == ["b"] and len(report) == 1
    assert kept[0].extra["implicit_target"] == "The speaker's emotion is happy."
    assert LEVELS == ("low", "medium", "high")


def write_manifest(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def rows():
    return [
        {
            "index": "EN_1",
            "emotion": "angry",
            "wav": "a.wav",
            "text": TEXT["en"],
            "speed": "high",
            "pitch": "high",
            "volume": "high",
        },
        {
            "index": "ZH_1",
            "emotion": "sad",
            "wav": "b.wav",
            "text": TEXT["zh"],
            "speed": "low",
            "pitch": "low",
            "volume": "low",
        },
    ]


def test_cli_adds_fields(tmp_path, capsys):
    m = write_manifest(tmp_path / "m.jsonl", rows())
    out = tmp_path / "cot.jsonl"
    assert main(["cot-data", "--manifest", str(m), "--out", str(out)]) == 0
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [g["index"] for g in got] == ["EN_1", "ZH_1"]
    assert "angry" in got[0]["cot_target"] and got[1]["implicit_target"] == "这条语音的情感为悲伤"
    assert got[0]["wav"] == "a.wav"  # relative to the output manifest
    assert "2 utterances" in capsys.readouterr().out


def test_cli_missing_style_is_one_line_error_or_skip(tmp_path, capsys):
    bad = [*rows(), {"index": "EN_2", "emotion": "sad", "wav": "c.wav", "text": "x"}]
    m = write_manifest(tmp_path / "m.jsonl", bad)
    out = tmp_path / "cot.jsonl"
    assert main(["cot-data", "--manifest", str(m), "--out", str(out)]) == 2
    assert "c2ser style-attributes" in capsys.readouterr().err
    assert not out.exists()
    assert main(["cot-data", "--manifest", str(m), "--out", str(out), "--skip-bad"]) == 0
    assert len(out.read_text().splitlines()) == 2
    assert "skipped 1" in capsys.readouterr().out


def test_faithfulness_check():
    u = utt()
    assert rewrite_is_faithful('He says "i told you, we would make it" and sounds happy.', u)
    assert not rewrite_is_faithful("He sounds happy.", u)
    assert not rewrite_is_faithful(f'"{TEXT["en"]}" sad', u)


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory):
    from tests.factories import make_tiny_qwen2

    return make_tiny_qwen2(tmp_path_factory.mktemp("llm") / "qwen2", hidden=32, heads=2, kv_heads=1)


def test_rewrite_plumbing_with_tiny_random_llm(tiny_llm, tmp_path):
    """A random LM never keeps the transcript, so every draft survives; batching and resume."""
    utts = add_cot_targets([utt(f"u{i}", language=("en", "zh")[i % 2]) for i in range(3)])
    drafts = {u.id: u.extra["cot_target"] for u in utts}
    seen = []
    out = rewrite_with_llm(
        utts, str(tiny_llm), batch_size=2, max_new_tokens=4, on_batch=seen.append
    )
    assert out == drafts
    assert [len(b) for b in seen] == [2, 1] and not any(ok for b in seen for _, ok in b.values())
    again = rewrite_with_llm(utts, str(tiny_llm), done={"u0": "kept"}, max_new_tokens=2)
    assert again["u0"] == "kept"

    m = write_manifest(tmp_path / "m.jsonl", rows())
    counts = make_cot_manifest(m, tmp_path / "o.jsonl", rewrite_llm=str(tiny_llm), max_new_tokens=2)
    assert counts == {"written": 2, "skipped": 0, "rewritten": 0}
    assert not (tmp_path / "o.jsonl.rewrite.partial.jsonl").exists()


@pytest.mark.parametrize("language", ["en", "zh"])
def test_every_phrasing_and_reason_parses_to_the_gold_emotion(language):
    """The evaluation parser reads each template answer (all phrasings x reasons) as its label,
    also when the quoted transcript names another emotion."""
    parse = pytest.importorskip("c2ser.evaluation.parse").parse_emotion
    t = load_templates(language)
    text = "I am so angry and sad!" if language == "en" else "我好生气又难过！"
    for emotion in EMOTIONS:
        for key in ("low", "medium", "high"):
            words = {k: t.levels[k][key] for k in ("speed", "pitch", "volume")}
            for phrasing in t.explicit:
                for reason in t.reasons[emotion]:
                    answer = phrasing.format(
                        **words, text=text, emotion=t.emotions[emotion], reason=reason
                    )
                    assert parse(answer, language) == emotion, answer
        assert parse(t.implicit.format(emotion=t.emotions[emotion]), language) == emotion
