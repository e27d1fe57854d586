import pytest

from c2ser.core.parse import parse_emotion

CASES = [
    # official outputs (spec §4)
    ("这条语音的的情感为高兴", "happy"),
    (
        "说话者以缓慢的速度、高昂的语调和中等音量的声音说道：“不知道艾德林小姐有没有给我们准备好吃的点心呢。”"
        "通过分析语音特征，推测情绪为快乐，透露出一种期待和兴奋的喜悦。",
        "happy",
    ),
    # plain English answers
    ("The speaker's emotion is happy.", "happy"),
    ("Happy", "happy"),
    ("The speaker sounds joyful and excited.", "happy"),
    ("The speaker's emotion is angry.", "angry"),
    ("She is furious.", "angry"),
    ("He seems annoyed and irritated.", "angry"),
    ("The emotion is sadness.", "sad"),
    ("The speaker feels upset and unhappy.", "sad"),
    ("Emotion: fear", "fearful"),
    ("The speaker is scared.", "fearful"),
    ("The speaker sounds terrified.", "fearful"),
    ("The speaker is surprised!", "surprised"),
    ("They sound astonished and amazed.", "surprised"),
    ("The speaker's emotion is disgust.", "disgusted"),
    ("That was disgusting, the speaker is repulsed.", "disgusted"),
    ("The emotion is neutral.", "neutral"),
    ("There is no particular emotion in this speech.", "neutral"),
    ("The speaker speaks calmly.", "neutral"),
    # negations
    ("The speaker is not angry but sad.", "sad"),
    ("She isn't really happy; she sounds disappointed.", "sad"),
    ("Not afraid at all, the speaker is simply calm.", "neutral"),
    ("他不生气，只是有点难过。", "sad"),
    ("说话人没有害怕，而是很惊讶。", "surprised"),
    # conclusion rule: style words first, verdict last
    (
        "With a calm pace and low pitch, the speaker says the bus is late. The emotion is sad.",
        "sad",
    ),
    (
        'The speaker speaks fast and loud, saying "I\'m so happy for you"; the emotion is angry.',
        "angry",
    ),
    ('The speaker said: "I am furious!" Overall the speaker sounds happy.', "happy"),
    (
        "Pitch is high and volume is loud. Therefore, the emotional state is surprise, then joy.",
        "surprised",
    ),
    # plain Chinese answers
    ("这条语音的情感为生气", "angry"),
    ("情感为愤怒", "angry"),
    ("这条语音的情感为悲伤", "sad"),
    ("说话人很伤心。", "sad"),
    ("这条语音的情感为惊讶", "surprised"),
    ("他听起来非常震惊。", "surprised"),
    ("这条语音的情感为恐惧", "fearful"),
    ("她很害怕。", "fearful"),
    ("这条语音的情感为厌恶", "disgusted"),
    ("说话人感到恶心。", "disgusted"),
    ("这条语音的情感为中性", "neutral"),
    ("语气平静。", "neutral"),
    ("这条语音的情感为开心", "happy"),
    ("通过分析，推测情绪为惊恐。", "fearful"),  # longest match: fear, not surprise
    # mixed language
    ("情感为 happy", "happy"),
    ("The emotion is 生气", "angry"),
    ("The speaker is not angry.", None),
    ("说话人没有生气。", None),
    ("他并不害怕。", None),
    # words used in another sense
    ("The speaker is sad about the content.", "sad"),
    ("The speech is surprisingly calm.", "neutral"),
    ("推测情绪恐怕是悲伤。", "sad"),
    ("这条语音的情感为惊喜", "surprised"),
    # Stage 1 English CoT (the template's shape)
    (
        'The speaker says "We lost the game" with low pitch, slow speed and low volume. '
        "Judging from these features, the speaker's emotion is sad.",
        "sad",
    ),
    # nothing stated
    ("", None),
    ("The speaker talks about the weather.", None),
    ("说话人在谈论天气。", None),
]


@pytest.mark.parametrize("text, expected", CASES)
def test_parse_table(text, expected):
    assert parse_emotion(text) == expected


def test_table_is_large_enough():
    assert len(CASES) >= 40


@pytest.mark.parametrize("language", ["en", "zh"])
def test_every_training_template_parses_to_its_emotion(language):
    """The parser reads back every Stage 1 / Stage 2 target the CoT templates can produce."""
    from c2ser.core.labels import EMOTIONS
    from c2ser.data.cot import explicit_target, implicit_target, load_templates
    from c2ser.data.manifest import Utterance

    n_phrasings = len(load_templates(language).explicit)
    text = "今天下雨了。" if language == "zh" else "It is raining today."
    for emotion in EMOTIONS:
        for i in range(8 * n_phrasings):
            level = ("low", "medium", "high")[i % 3]
            utt = Utterance(
                id=f"{language}_{emotion}_{i}", wav="x.wav", emotion=emotion, text=text,
                language=language, extra=dict(speed=level, pitch=level, volume=level),
            )  # fmt: skip
            explicit = explicit_target(utt, seed=i)
            assert parse_emotion(explicit, language) == emotion, explicit
        assert parse_emotion(implicit_target(utt), language) == emotion
