"""Manifests: the Emo-Emilia jsonl schema (``index, emotion, wav, text`` + optional fields) and
Kaldi ``wav.scp``.

Readers validate every line and raise :class:`BadInputError` naming the file and line number; with
``skip_bad=True`` the bad lines are counted in a :class:`SkipReport` instead, so one malformed line
never silently drops a run or crashes it half-way.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from c2ser.core.errors import SKIP_HINT, BadInputError, SkipReport
from c2ser.core.io import write_jsonl_atomic
from c2ser.core.language import language_from_id

_KNOWN = ("index", "wav", "emotion", "text", "language", "speaker", "split", "fold")


@dataclass
class Utterance:
    """One manifest row. ``id`` is the Emo-Emilia ``index`` (or the wav.scp key)."""

    id: str
    wav: str
    emotion: str | None = None
    text: str | None = None
    language: str | None = None
    speaker: str | None = None
    split: str | None = None
    fold: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        row = {
            "index": self.id,
            **{k: v for k, v in asdict(self).items() if k not in ("id", "extra")},
        }
        row = {k: v for k, v in row.items() if v is not None}
        return {**row, **self.extra}

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> Utterance:
        fold = row.get("fold")
        return cls(
            id=str(row["index"]),
            wav=str(row["wav"]),
            emotion=row.get("emotion"),
            text=row.get("text"),
            language=row.get("language") or language_from_id(str(row["index"])),
            speaker=row.get("speaker"),
            split=row.get("split"),
            fold=int(fold) if fold is not None else None,
            extra={k: v for k, v in row.items() if k not in _KNOWN},
        )


def resolve_wav(wav: str, base: Path, audio_root: Path | None) -> str:
    """Resolve a relative ``wav`` path against ``audio_root`` (or the manifest's directory).

    Emo-Emilia stores ``./Emo-Emilia/wav/<id>.wav``; users usually point ``audio_root`` at the
    folder holding the wavs, so when the joined path does not exist we also try
    ``audio_root/<basename>``.
    """
    p = Path(os.path.expanduser(wav))
    if p.is_absolute():
        return str(p)
    root = audio_root if audio_root is not None else base
    joined = root / p
    if audio_root is not None and not joined.exists() and (audio_root / p.name).exists():
        return str(audio_root / p.name)
    return str(joined)


def _parse_jsonl_line(line: str, labels: set[str] | None) -> Utterance:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise BadInputError(f"malformed JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(row, dict):
        raise BadInputError("malformed line: expected a JSON object")
    missing = [k for k in ("index", "wav") if not row.get(k)]
    if missing:
        raise BadInputError(f"missing field(s) {', '.join(missing)}")
    if labels is not None and row.get("emotion") not in labels:
        raise BadInputError(
            f"unknown label {row.get('emotion')!r} (expected one of {sorted(labels)})"
        )
    return Utterance.from_json(row)


def _parse_scp_line(line: str) -> Utterance:
    parts = line.split(maxsplit=1)
    if len(parts) != 2:
        raise BadInputError("malformed wav.scp line: expected '<id> <path>'")
    return Utterance(id=parts[0], wav=parts[1].strip())


def read_manifest(
    path: str | os.PathLike,
    audio_root: str | os.PathLike | None = None,
    skip_bad: bool = False,
    labels: set[str] | list[str] | None = None,
    report: SkipReport | None = None,
) -> list[Utterance]:
    """Read a ``.jsonl`` manifest or a Kaldi ``wav.scp`` (any other suffix) into utterances.

    Raises :class:`BadInputError` ``"<file>:<line>: <reason>"`` on the first bad line unless
    ``skip_bad``; then bad lines go to ``report``. Duplicate ids are always an error because
    outputs are keyed by id.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: manifest not found")
    base = path.resolve().parent
    root = Path(audio_root).expanduser().resolve() if audio_root else None
    is_jsonl = path.suffix in (".jsonl", ".json")
    label_set = set(labels) if labels is not None else None
    report = report if report is not None else SkipReport()
    out: list[Utterance] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip() or (not is_jsonl and line.startswith("#")):
                continue
            where = f"{path}:{lineno}"
            try:
                utt = _parse_jsonl_line(line, label_set) if is_jsonl else _parse_scp_line(line)
                if utt.id in seen:
                    raise BadInputError(f"duplicate id {utt.id!r} (first on line {seen[utt.id]})")
            except BadInputError as e:
                if not skip_bad:
                    raise BadInputError(f"{where}: {e} ({SKIP_HINT})") from None
                report.add(where, str(e))
                continue
            seen[utt.id] = lineno
            utt.wav = resolve_wav(utt.wav, base, root)
            out.append(utt)
    return out


def write_manifest(path: str | os.PathLike, utts: list[Utterance]) -> Path:
    """Write utterances as Emo-Emilia-style jsonl (atomic)."""
    return write_jsonl_atomic(path, (u.to_json() for u in utts))


def relativize(utts: list[Utterance], base: str | os.PathLike) -> list[Utterance]:
    """Copies of ``utts`` whose wav paths are relative to ``base`` (portable manifests)."""
    base = Path(base).resolve()
    out = []
    for u in utts:
        try:
            wav = str(Path(u.wav).resolve().relative_to(base))
        except ValueError:
            wav = u.wav
        out.append(Utterance(**{**asdict(u), "wav": wav}))
    return out
