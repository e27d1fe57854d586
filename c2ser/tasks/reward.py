"""The verifiable emotion reward of Stage 3 (:mod:`c2ser.tasks.grpo`): a pure function of an answer.

``reward = correct * [parsed label == reference]
         + correct * similarity[reference][parsed]   (a wrong label near the right one, optional)
         + format  * [the answer parses, ended by itself, and has <= max_tokens tokens]``

The label is read with the parser evaluation uses (:func:`c2ser.core.parse.parse_emotion`:
synonyms, negations, the stated conclusion first, English and Chinese), so the policy is trained
on exactly what it is scored on. The format term pays for a short, finished, parseable answer:
without it a group whose answers are all wrong has no signal that keeps the policy answering at
all. Partial credit follows EMO-RL's emotion-similarity weighting: confusing fear with surprise is
less wrong than fear with happiness; the matrix is the config's (symmetric, zero by default).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from c2ser.core.labels import EMOTIONS
from c2ser.core.parse import parse_emotion


@dataclass(frozen=True)
class EmotionReward:
    """Scores one answer (see the module doc).

    Args:
        correct: reward of the right label.
        format: reward of a parseable answer that ended (EOD) within ``max_tokens`` tokens.
        max_tokens: the answer's token budget (EOD not counted).
        similarity: ``{label: {label: credit in [0, 1)}}``, read both ways; credit x ``correct``
            is paid for a wrong label. Empty: no partial credit.
    """

    correct: float = 1.0
    format: float = 0.2
    max_tokens: int = 30
    similarity: dict[str, dict[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for a, row in self.similarity.items():
            for b, credit in row.items():
                if a not in EMOTIONS or b not in EMOTIONS:
                    raise ValueError(f"similarity names {a!r}/{b!r}; labels: {EMOTIONS}")
                if not 0 <= credit < 1:
                    raise ValueError(f"similarity[{a}][{b}] = {credit}: must be in [0, 1)")

    def credit(self, reference: str, pred: str | None) -> float:
        """Label credit in [0, 1]: 1 for the reference, the similarity for a near label."""
        if pred is None:
            return 0.0
        if pred == reference:
            return 1.0
        sim = self.similarity
        return sim.get(reference, {}).get(pred) or sim.get(pred, {}).get(reference) or 0.0

    def __call__(
        self, text: str, reference: str, language: str | None, tokens: int, finished: bool
    ) -> tuple[float, str | None]:
        """The reward of ``text`` (``tokens`` long; ``finished``: ended by EOD) and its label."""
        pred = parse_emotion(text, language)
        well_formed = pred is not None and finished and tokens <= self.max_tokens
        return self.correct * self.credit(reference, pred) + self.format * well_formed, pred
