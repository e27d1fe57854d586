"""The official C2SER prompts (release ``prompt_config.yaml`` / README), verbatim.

Prompts are raw text placed before the speech block, with no chat template and no special tokens.
Stage 1 (explicit chain of thought) asks for speaking style, content and emotion; Stage 2
(implicit, after self-distillation) asks directly for the emotion. The release's ``infer_runtime``
comment calls the Stage 2 prompt "stage1"; the README and the task names below have it right.

``PARAPHRASES`` holds rewordings of each stage's prompt for the stability evaluation (the paper
claims answers that are stable across prompts as well as across samples). Paraphrase 0 is the
official prompt; the others are ours, ask for the same things in the same order, and are never
used in training. ``TRAINING_PARAPHRASES`` holds a disjoint set of rewordings that training may
draw from (``data.prompt_paraphrase``), so that a model can learn that wording does not matter
while the evaluation's paraphrases stay unseen.
"""

from __future__ import annotations

STAGE1_PROMPT = (
    "Please describe the speaking style, content, and the speaker's emotional state of this speech."
)
STAGE2_PROMPT = (
    "Please consider the speaking style, content, and directly provide the speaker's emotion "
    "in this speech."
)
STAGE_TASKS = {1: "<EMOTION> <EXP_DESCRIPTION>", 2: "<EMOTION> <IMP_DESCRIPTION>"}
PROMPTS = {1: STAGE1_PROMPT, 2: STAGE2_PROMPT}
PARAPHRASES: dict[int, tuple[str, ...]] = {
    1: (
        STAGE1_PROMPT,
        "Please describe how this speech is spoken, what is said, and the emotional state of the "
        "speaker.",
        "Describe the speaking style and the content of this speech, then the speaker's emotional "
        "state.",
        "Listen to this speech and describe its speaking style, its content, and the emotional "
        "state of the speaker.",
    ),
    2: (
        STAGE2_PROMPT,
        "Taking the speaking style and the content into account, directly state the speaker's "
        "emotion in this speech.",
        "Considering how this speech is spoken and what is said, directly give the emotion of the "
        "speaker.",
        "Based on the speaking style and content of this speech, directly provide the speaker's "
        "emotion.",
    ),
}

# training-only rewordings (data.prompt_paraphrase); disjoint from PARAPHRASES, which evaluate
TRAINING_PARAPHRASES: dict[int, tuple[str, ...]] = {
    1: (
        "Describe the speaking style and the content of this speech, and the emotional state of "
        "its speaker.",
        "Please describe how the speaker talks, what the speech says, and how the speaker feels.",
        "Tell me about this speech: its speaking style, its content, and the speaker's emotional "
        "state.",
        "Analyse this speech: first its speaking style, then its content, then the speaker's "
        "emotional state.",
        "Explain the speaking style of this speech, summarise its content, and describe the "
        "speaker's emotion.",
        "Characterise the delivery and the content of this speech, then describe the emotional "
        "state of the speaker.",
    ),
    2: (
        "Think about the speaking style and the content, then directly tell me the speaker's "
        "emotion in this speech.",
        "From the way this speech is delivered and what it says, name the speaker's emotion "
        "directly.",
        "Using the speaking style and the content of this speech, directly report the emotion of "
        "the speaker.",
        "What emotion does the speaker express in this speech? Consider the speaking style and "
        "content, and answer directly.",
        "Directly identify the speaker's emotion in this speech, taking its speaking style and "
        "content into consideration.",
        "Pay attention to the speaking style and content of this speech and directly provide the "
        "speaker's emotional state.",
        "Given the tone of delivery and the words spoken, directly state which emotion the "
        "speaker shows in this speech.",
        "Please weigh the speaking style and the content, and give the speaker's emotion in this "
        "speech directly.",
    ),
}


def prompt_for(stage: int, paraphrase: int = 0) -> str:
    """The prompt of C2SER stage 1 (explicit CoT) or 2 (implicit); ``paraphrase`` > 0 picks one
    of our rewordings (``PARAPHRASES``), 0 is the official prompt."""
    if stage not in PROMPTS:
        raise ValueError(f"stage must be 1 or 2, got {stage!r}")
    options = PARAPHRASES[stage]
    if not 0 <= paraphrase < len(options):
        raise ValueError(f"paraphrase must be in 0..{len(options) - 1}, got {paraphrase!r}")
    return options[paraphrase]
