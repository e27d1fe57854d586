"""What every batched inference run shares: one summary, and "retry a failed batch one by one".

Feature extraction (:mod:`c2ser.inference.extract`) and generation
(:mod:`c2ser.inference.generate`) both process a manifest in batches, skip what an earlier run
finished, and must not lose a whole batch to one bad utterance or to an out-of-memory error:
:func:`run_or_retry_singly` runs a batch and, when it fails, runs each item alone, so that only
the items that fail alone are counted as failed (in :class:`RunSummary`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from c2ser.core.errors import SKIP_HINT, BadInputError, SkipReport

Item = TypeVar("Item")
Result = TypeVar("Result")
RETRIED = (RuntimeError, ValueError)  # out of memory, a bad input inside the model


@dataclass
class RunSummary:
    """What a run did: ``done`` new outputs, ``skipped`` ids an earlier run had finished,
    ``failed`` with reasons, the ``audio_seconds`` processed, generated ``tokens`` and the
    ``seconds`` spent processing."""

    done: int = 0
    skipped: int = 0
    failed: SkipReport = field(default_factory=SkipReport)
    audio_seconds: float = 0.0
    tokens: int = 0
    seconds: float = 0.0

    def line(self, finished: str = "already done") -> str:
        """One line for the end of a run; ``finished`` says where the skipped outputs are."""
        rate = self.done / self.seconds if self.seconds else 0.0
        text = (
            f"done {self.done}, skipped {self.skipped} ({finished}), "
            f"{self.failed.summary('failed')}; {rate:.2f} utt/s"
        )
        if self.audio_seconds:
            text += f", real-time factor {self.seconds / self.audio_seconds:.4f}"
        return text


def failer(report: SkipReport, skip_bad: bool) -> Callable[[str, str], None]:
    """``fail(where, reason)``, the one rule for a bad item: with ``skip_bad`` it is counted in
    ``report``, else the run stops with one :class:`BadInputError` line naming it."""

    def fail(where: str, reason: str) -> None:
        if not skip_bad:
            raise BadInputError(f"{where}: {reason} ({SKIP_HINT})")
        report.add(where, reason)

    return fail


def run_or_retry_singly(
    items: Sequence[Item],
    run: Callable[[list[Item]], Result],
    fail: Callable[[Item, Exception], None],
) -> list[tuple[list[Item], Result]]:
    """``run(items)``; if it raises (:data:`RETRIED`), ``run([item])`` for every item, and
    ``fail(item, error)`` for each one that fails alone. Returns ``(items, result)`` of every
    call that succeeded, in order."""
    items = list(items)
    if not items:
        return []
    try:
        return [(items, run(items))]
    except RETRIED as e:
        if len(items) == 1:
            fail(items[0], e)
            return []
    return [done for item in items for done in run_or_retry_singly([item], run, fail)]
