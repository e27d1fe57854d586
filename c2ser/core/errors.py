"""Bad input and the report of what was skipped because of it.

Every layer raises :class:`BadInputError` for problems the user can fix (a manifest line, an
audio or feature file, a label): the entry points print its message as one line, without a
traceback. With ``skip_bad`` the same problems become entries of a :class:`SkipReport` instead,
counted by kind and listed at the end of a run.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


class BadInputError(ValueError):
    """Bad user input (manifest line, audio file, label); the message says what and where."""


_PATH = re.compile(r"\S*[/\\]\S*")  # a token with a path separator
_DETAILS = re.compile(r"\s*\([^)]*\)")  # "(allowed: ...)", "(Errno 2)"

# The one rule for bad entries, said the same way by every runner that stops on one.
SKIP_HINT = "use --skip-bad (Hydra: skip_bad=true) to count, report and skip bad entries"


@dataclass(frozen=True)
class Skip:
    """One skipped item: ``where`` (an utterance id or ``file:line``) and why."""

    where: str
    reason: str

    @property
    def kind(self) -> str:
        """The reason's category, what a summary groups by: its first ``": "``-separated part
        without paths and parenthesised details (``too long: 31.2 s > 30 s`` -> ``too long``,
        ``/a/x.wav: audio file not found`` -> ``audio file not found``); a one-word prefix keeps
        the part after it (``audio: audio file not found``)."""
        text = _DETAILS.sub("", self.reason)
        parts = [" ".join(_PATH.sub("", p).split()) for p in text.split(": ")]
        parts = [p for p in parts if p]
        if not parts:
            return self.reason
        if " " not in parts[0] and len(parts) > 1:
            return f"{parts[0]}: {parts[1]}"
        return parts[0]

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

    def by_kind(self) -> dict[str, list[Skip]]:
        """The entries grouped by kind, the largest group first."""
        groups: dict[str, list[Skip]] = {}
        for s in self.entries:
            groups.setdefault(s.kind, []).append(s)
        return dict(sorted(groups.items(), key=lambda kv: -len(kv[1])))

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


@contextmanager
def reading(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Turn any failure of reading a checkpoint or model directory into one
    :class:`BadInputError` line that names the file and what is wrong with it.

    Checkpoint readers fail in many ways a user can fix (a truncated download, a wrong path, a
    raw pickle, another model's state dict) and each library reports them with its own
    exception (``RuntimeError: PytorchStreamReader failed``, ``UnpicklingError``, ``KeyError``,
    ``SafetensorError``, ...). Every place that reads a checkpoint wraps the read in this
    context, so the entry points print ``error: <path>: not a readable <what> (<why>)``.
    """
    try:
        yield
    except BadInputError:
        raise
    except Exception as e:  # every reader's error becomes the user's one line
        if not os.path.exists(path):
            raise BadInputError(f"{path}: not found (expected a {what})") from None
        raise BadInputError(f"{path}: not a readable {what} ({_why(e)})") from None


def _why(e: Exception) -> str:
    """A short, one-line reason for a reader's exception."""
    text = " ".join(str(e).split())
    if "PytorchStreamReader" in text or "central directory" in text:
        return f"truncated or corrupt zip archive: {text}"
    if "magic number" in text:
        return "not a torch.save zip file (a raw pickle or another format)"
    if isinstance(e, FileNotFoundError) and e.filename:
        return f"{e.filename} not found"
    if isinstance(e, IsADirectoryError):
        return "a directory, expected a file"
    if isinstance(e, EOFError):
        return "truncated file"
    if isinstance(e, KeyError) and e.args and " " not in str(e.args[0]):
        return f"missing entry {text}; the file is probably another model's checkpoint"
    if isinstance(e, KeyError):
        text = " ".join(str(e.args[0]).split())  # our own message, without KeyError's quotes
    return f"{type(e).__name__}: {text}"[:300]
