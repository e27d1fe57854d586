"""Bad input and the report of what was skipped because of it.

Every layer raises :class:`BadInputError` for problems the user can fix (a manifest line, an
audio or feature file, a label): the entry points print its message as one line, without a
traceback. With ``skip_bad`` the same problems become entries of a :class:`SkipReport` instead,
counted by kind and listed at the end of a run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


class BadInputError(ValueError):
    """Bad user input (manifest line, audio file, label); the message says what and where."""


@dataclass(frozen=True)
class Skip:
    """One skipped item: ``where`` (an utterance id or ``file:line``) and why."""

    where: str
    reason: str

    @property
    def kind(self) -> str:
        """The reason's category, its text before the first colon (``too long: 3001 frames``)."""
        return self.reason.split(":")[0]

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass
class SkipReport:
    """Skipped items in order, for the end-of-run summary and for callers that need the reason
    of one item (:meth:`reasons_by_where`), without parsing printed lines back apart."""

    entries: list[Skip] = field(default_factory=list)

    def add(self, where: str, reason: str) -> None:
        self.entries.append(Skip(where, reason))

    @property
    def items(self) -> list[str]:
        """``"<where>: <reason>"`` lines, as printed."""
        return [str(s) for s in self.entries]

    @property
    def reasons(self) -> Counter:
        """How many items were skipped per kind of reason."""
        return Counter(s.kind for s in self.entries)

    def reasons_by_where(self) -> dict[str, str]:
        return {s.where: s.reason for s in self.entries}

    def __len__(self) -> int:
        return len(self.entries)

    def summary(self, verb: str = "skipped") -> str:
        """``skipped 3 (2 too long, 1 missing feature file)``; ``verb`` names what happened."""
        if not self.entries:
            return f"{verb} 0"
        by = ", ".join(f"{n} {r}" for r, n in self.reasons.most_common())
        return f"{verb} {len(self.entries)} ({by})"
