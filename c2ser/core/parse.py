"""Map free-text model answers (English or Chinese) to one of the 7 Emo-Emilia emotions.

The rule, in order:

1. Quoted spans (“…”, "…", 「…」) are removed: the explicit chain of thought quotes the
   transcript, and words *said* by the speaker ("I'm so angry!") are not the model's verdict.
2. Every emotion word is located (synonyms and inflections per language; longest match first,
   so 惊恐 is fear and not surprise). Mentions preceded by a negation ("not angry", "isn't
   really sad", 不生气, 没有难过) are dropped.
3. If the text states a conclusion ("emotion is", "feels", 情绪为, 情感为, 推测…), the first
   mention after the *last* such cue wins: the explicit CoT describes pitch and pace before it
   concludes, and may add a justification after ("…为快乐，透露出一种期待和兴奋的喜悦").
4. Otherwise the *last* mention wins (conclusions come at the end), and no mention -> ``None``,
   which evaluation counts as wrong and lists as unparsed.

Ambiguous words are assigned as follows (our choices, the nearest of the 7 classes; the paper
maps answers with an LLM judge whose mapping is not published): excited -> happy;
anxious/worried/nervous -> fearful; frustrated/annoyed -> angry; disappointed -> sad;
calm/flat -> neutral; 惊喜 (pleasant surprise) -> surprised. Words too often used in another
sense are left out: "content" (the speech content), "surprisingly" (an intensifier), 恐怕
("perhaps").

The rules are pure functions, so training tasks (validation answers), inference (``c2ser infer``)
and evaluation all parse with the same code; :func:`c2ser.evaluation.parse.judge_emotions` is the
optional LLM-judge alternative.
"""

from __future__ import annotations

import re

from c2ser.core.labels import EMOTIONS

_EN = {
    "angry": "angry angrily anger angered furious fury mad annoyed annoyance irritated irritation "
    "rage raging enraged frustrated frustration outraged hostile",
    "happy": "happy happily happiness joy joyful joyous glad cheerful delighted delight excited "
    "excitement pleased elated contented jubilant",
    "neutral": "neutral neutrality calm calmly flat indifferent unemotional emotionless",
    "sad": "sad sadly sadness sorrow sorrowful unhappy upset depressed depression melancholy "
    "grief grieving gloomy disappointed disappointment heartbroken miserable",
    "surprised": "surprised surprise surprising astonished astonishment amazed "
    "amazement shocked shock startled",
    "fearful": "fearful fear fearfully afraid scared frightened terrified terror anxious anxiety "
    "nervous worried worry panic panicked",
    "disgusted": "disgusted disgust disgusting disgustedly repulsed revolted revulsion contempt "
    "gross grossed",
}
_ZH = {
    "angry": "生气 愤怒 恼怒 气愤 恼火 发火 愤慨 不满 暴躁 怒",
    "happy": "高兴 开心 快乐 喜悦 愉快 兴奋 欢快 愉悦 欣喜 喜",
    "neutral": "中性 平静 平淡 中立 平和 无明显情绪 无明显情感",
    "sad": "悲伤 难过 伤心 沮丧 失落 哀伤 悲痛 忧伤 低落 悲",
    "surprised": "惊讶 吃惊 震惊 惊奇 诧异 惊喜 意外",
    "fearful": "恐惧 害怕 惊恐 恐慌 畏惧 担心 焦虑 紧张 惊慌 怕",
    "disgusted": "厌恶 恶心 反感 嫌弃 憎恶 讨厌 嫌恶",
}
_EN_WORD = {w: e for e, words in _EN.items() for w in words.split()}
_ZH_WORD = {w: e for e, words in _ZH.items() for w in words.split()}
_EN_RE = re.compile(r"\b(" + "|".join(sorted(_EN_WORD, key=len, reverse=True)) + r")\b")
_ZH_GUARD = {"怕": "(?<!恐)"}  # 恐怕 is "I'm afraid (that)" = "perhaps", not fear
_ZH_RE = re.compile(
    "|".join(_ZH_GUARD.get(w, "") + w for w in sorted(_ZH_WORD, key=len, reverse=True))
)
_NO_EMOTION_EN = re.compile(r"\bno (particular|specific|obvious|clear|strong) emotions?\b")

_QUOTES = re.compile(r"“[^”]*”|\"[^\"]*\"|「[^」]*」|『[^』]*』")
_NEG_EN = re.compile(
    r"\b(not|n't|no|never|without|neither|nor|hardly|rather than|instead of)\b(\s+\w+){0,2}\s*$"
)
_SCOPE_END = re.compile(r".*([,;.!?]|\bbut\b|\byet\b|\bwhile\b|\bthough\b)", re.S)
_NEG_ZH = re.compile(r"(不|没|没有|并非|并不|毫无|无|非|不是|不太|不再)$")
_CUE = re.compile(
    r"emotion(al state)?s?\s*(is|was|would be|seems to be|appears to be|:|of)|"
    r"(feel|feels|felt|feeling|sounds|sound)\b|(expresses|conveys|shows|indicates|suggests)\b|"
    r"情绪[为是：:]|情感[为是：:]|情绪状态[为是：:]|推测|判断|感到|表现出|流露出"
)


def _mentions(text: str) -> list[tuple[int, str]]:
    """(position, emotion) of every non-negated emotion word."""
    found = []
    for m in _EN_RE.finditer(text):
        before = text[max(0, m.start() - 30) : m.start()]
        before = _SCOPE_END.sub("", before)  # a negation does not reach across "but" or a comma
        if not _NEG_EN.search(before):
            found.append((m.start(), _EN_WORD[m.group(1)]))
    for m in _NO_EMOTION_EN.finditer(text):
        found.append((m.start(), "neutral"))
    for m in _ZH_RE.finditer(text):
        if not _NEG_ZH.search(text[max(0, m.start() - 3) : m.start()]):
            found.append((m.start(), _ZH_WORD[m.group(0)]))
    return sorted(found)


def parse_emotion(text: str, language: str | None = None) -> str | None:
    """The emotion a model answer states, or ``None`` when it states none (see module doc).

    ``language`` is accepted for API symmetry; answers are parsed with both lexicons because
    models switch languages (a Chinese prompt answered in English and vice versa).
    """
    if not text:
        return None
    lowered = text.lower()
    unquoted = _QUOTES.sub(" ", lowered)
    body = unquoted if _mentions(unquoted) else lowered
    mentions = _mentions(body)
    if not mentions:
        return None
    cues = [m.end() for m in _CUE.finditer(body)]
    if cues:
        after = [e for pos, e in mentions if pos >= cues[-1]]
        if after:
            return after[0]
    return mentions[-1][1]


assert set(_EN) == set(_ZH) == set(EMOTIONS)
