"""A manifest with chain-of-thought targets (``c2ser cot-data``): ``cot_target`` (Stage 1) and
``implicit_target`` (Stage 2) for every utterance, from the templates of :mod:`c2ser.data.cot`.

With ``rewrite_llm`` each explicit target is polished by a local instruction-tuned causal LM (the
paper's step); a rewrite that drops the transcript or the gold emotion keeps the template text.
The rewrite is resumable: finished batches are kept in ``<out>.rewrite.partial.jsonl`` and
skipped when the same call runs again (a torn last line of a killed run is ignored).
"""

from __future__ import annotations

import json
from pathlib import Path

from c2ser.core.errors import SkipReport
from c2ser.data.cot import add_cot_targets, rewrite_with_llm
from c2ser.data.manifest import read_manifest, relativize, write_manifest


def make_cot_manifest(
    manifest: str | Path,
    out: str | Path,
    seed: int = 0,
    audio_root: str | None = None,
    templates: str | None = None,
    skip_bad: bool = False,
    rewrite_llm: str | None = None,
    batch_size: int = 8,
    max_new_tokens: int = 256,
    device: str | None = None,
) -> dict[str, int]:
    """The command as a function; returns counts (written, skipped, rewritten)."""

    out = Path(out)
    report = SkipReport()
    utts = read_manifest(manifest, audio_root, skip_bad, report=report)
    utts = add_cot_targets(utts, seed, templates, skip_bad, report)
    counts = {"written": len(utts), "skipped": len(report), "rewritten": 0}
    if rewrite_llm:
        partial = out.with_name(out.name + ".rewrite.partial.jsonl")
        done, accepted = _read_partial(partial)
        with open(partial, "a", encoding="utf-8") as f:

            def save(new: dict[str, tuple[str, bool]]) -> None:
                for uid, (text, ok) in new.items():
                    f.write(json.dumps({"index": uid, "text": text, "ok": ok}, ensure_ascii=False))
                    f.write("\n")
                    accepted[uid] = ok
                f.flush()

            texts = rewrite_with_llm(
                utts, rewrite_llm, batch_size, max_new_tokens, device, templates, done, save
            )
        for u in utts:
            u.extra["cot_target"] = texts[u.id]
        counts["rewritten"] = sum(accepted.get(u.id, False) for u in utts)
    for line in report.items:
        print(f"skip: {line}")
    write_manifest(out, relativize(utts, out.resolve().parent))
    if rewrite_llm:
        partial.unlink(missing_ok=True)
    return counts


def _read_partial(path: Path) -> tuple[dict[str, str], dict[str, bool]]:
    """Results of an interrupted rewrite; a torn last line (killed mid-write) is ignored."""
    done: dict[str, str] = {}
    accepted: dict[str, bool] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            done[row["index"]], accepted[row["index"]] = row["text"], bool(row["ok"])
    return done, accepted
