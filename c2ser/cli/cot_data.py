"""``c2ser cot-data``: add chain-of-thought targets to a manifest.

Every utterance needs ``text``, ``emotion`` and the style bins ``speed``, ``pitch``, ``volume``
(``low|medium|high``, written by ``c2ser style-attributes``). The output manifest gets two new
fields: ``cot_target`` (the explicit Stage 1 answer: style -> quoted transcript -> emotion with a
reason, from the language's templates) and ``implicit_target`` (the short Stage 2 answer).

``--rewrite-llm DIR`` polishes each explicit target with a local instruction-tuned causal LM (the
paper used GLM-4-9B-Chat); a rewrite that drops the transcript or the gold emotion is discarded
in favour of the template text. The rewrite is resumable: finished batches are kept in
``<out>.rewrite.partial.jsonl`` and skipped when the same command runs again.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cot-data",
        help="add explicit/implicit chain-of-thought targets to a manifest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--manifest", required=True, help="jsonl manifest with text, emotion, style")
    p.add_argument("--out", required=True, help="output jsonl manifest")
    p.add_argument("--audio-root", help="directory that relative wav paths are resolved against")
    p.add_argument("--seed", type=int, default=0, help="seed of the phrasing choice (default 0)")
    p.add_argument("--templates", help="directory with <lang>.yaml templates (default: packaged)")
    p.add_argument("--skip-bad", action="store_true", help="skip (and count) unusable entries")
    p.add_argument("--rewrite-llm", metavar="DIR", help="local causal LM that rewrites the drafts")
    p.add_argument("--batch-size", type=int, default=8, help="rewrite batch size (default 8)")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--device", help="rewrite device (default: cuda when available)")
    p.set_defaults(func=run)


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
    from c2ser.core.errors import SkipReport
    from c2ser.data.cot import add_cot_targets, rewrite_with_llm
    from c2ser.data.manifest import read_manifest, relativize, write_manifest

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


def run(args: argparse.Namespace) -> int:
    counts = make_cot_manifest(
        args.manifest,
        args.out,
        args.seed,
        args.audio_root,
        args.templates,
        args.skip_bad,
        args.rewrite_llm,
        args.batch_size,
        args.max_new_tokens,
        args.device,
    )
    extra = f", {counts['rewritten']} rewritten by the LLM" if args.rewrite_llm else ""
    print(f"{args.out}: {counts['written']} utterances, skipped {counts['skipped']}{extra}")
    return 0
