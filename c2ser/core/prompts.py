"""The official C2SER prompts (release ``prompt_config.yaml`` / README), verbatim.

Prompts are raw text placed before the speech block, with no chat template and no special tokens.
Stage 1 (explicit chain of thought) asks for speaking style, content and emotion; Stage 2
(implicit, after self-distillation) asks directly for the emotion. The release's ``infer_runtime``
comment calls the Stage 2 prompt "stage1"; the README and the task names below have it right.

``PARAPHRASES`` holds rewordings of each stage's prompt for the stability evaluation (the paper
claims answers that are stable across prompts as well as across samples). Paraphrase 0 is the
official prompt; the others are ours, ask for the same things in the same order, and are never
used in training.
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


def prompt_for(stage: int, paraphrase: int = 0) -> str:
    """The prompt of C2SER stage 1 (explicit CoT) or 2 (implicit); ``paraphrase`` > 0 picks one
    of our rewordings (``PARAPHRASES``), 0 is the official prompt."""
    if stage not in PROMPTS:
        raise ValueError(f"stage must be 1 or 2, got {stage!r}")
    options = PARAPHRASES[stage]
    if not 0 <= paraphrase < len(options):
        raise ValueError(f"paraphrase must be in 0..{len(options) - 1}, got {paraphrase!r}")
    return options[paraphrase]
