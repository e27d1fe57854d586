"""The official C2SER prompts (release ``prompt_config.yaml`` / README), verbatim.

Prompts are raw text placed before the speech block, with no chat template and no special tokens.
Stage 1 (explicit chain of thought) asks for speaking style, content and emotion; Stage 2
(implicit, after self-distillation) asks directly for the emotion. The release's ``infer_runtime``
comment calls the Stage 2 prompt "stage1"; the README and the task names below have it right.
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


def prompt_for(stage: int) -> str:
    """The prompt of C2SER stage 1 (explicit CoT) or 2 (implicit)."""
    if stage not in PROMPTS:
        raise ValueError(f"stage must be 1 or 2, got {stage!r}")
    return PROMPTS[stage]
