"""Check a manifest and its audio up front, so that a long job does not die on entry 90 000."""

from __future__ import annotations

import os
from collections.abc import Sequence

from c2ser.core.errors import SkipReport
from c2ser.data.audio import AudioError, audio_seconds, load_audio
from c2ser.data.manifest import Utterance, read_manifest


def validate_manifest(
    manifest: str | os.PathLike,
    audio_root: str | os.PathLike | None = None,
    labels: Sequence[str] | None = None,
    max_seconds: float | None = None,
    decode: bool = False,
) -> tuple[list[Utterance], SkipReport]:
    """Return the usable utterances and a report of every bad line or file (never raises for
    bad entries; a missing manifest still raises)."""
    report = SkipReport()
    utts = read_manifest(manifest, audio_root, skip_bad=True, labels=labels, report=report)
    usable = []
    for u in utts:
        try:
            seconds = audio_seconds(u.wav)
            if decode or seconds == 0:
                load_audio(u.wav)
            if max_seconds is not None and seconds > max_seconds:
                raise AudioError(f"{u.wav}: {seconds:.1f} s is longer than {max_seconds:.1f} s")
        except AudioError as e:
            report.add(u.id, str(e))
            continue
        usable.append(u)
    return usable, report
