"""Batched, resumable C2SER-LLM inference over a manifest -> ``results.jsonl``.

Utterances are sorted by duration (longest first, so memory problems show at once and padding
stays low) and generated in batches with left padding and a KV cache, in eval mode under
``torch.inference_mode``. Each finished batch is appended to the results file in one write + fsync;
a rerun skips ids already there (a line cut by a crash is dropped and redone). Missing audio or
features are reported and skipped per utterance, never losing the rest of the batch.

Decoding presets (``DECODING``):

* ``greedy`` (default) and ``beam`` (4 beams, repetition penalty 1.05) are deterministic;
* ``official`` is the release's setting: 4 beams *with sampling*, ``top_p=0`` / ``top_k=0``,
  repetition penalty 1.05 over generated tokens, at most 400 new tokens. It is **not** random
  in practice. ``top_p=0`` keeps only ``min_tokens_to_keep`` = 2 tokens per beam (one more than
  the number of EOS ids), and each step draws 2 x 4 = 8 continuations *without replacement* from
  those 4 x 2 candidates, i.e. all of them, then sorts them by score. (At the first two steps
  only 2 and 4 candidates have non-zero probability, as the other beams start at -1e9; the
  remaining draws are zero-probability picks that sort last.) So it is a deterministic beam
  search restricted to each beam's 2 best tokens, unlike ``beam`` and ``greedy``. Measured:
  on a tiny random C2SER (``tests/models/conftest.py``, 3 utterances, 20 new tokens, transformers
  5.24) 20 seeds gave one output per utterance, equal to a ``do_sample=False`` 4-beam search with
  a keep-the-2-best logits processor; on a tiny random Qwen2 the same 20 seeds gave one output
  per input under both transformers 5.24 and 4.44.2 (the release's version). A seed can only
  matter where a candidate's probability underflows to 0 (a score gap of about 100 nats to the
  best candidate) and it competes with the other zero-probability picks. The variation seen
  between runs of the release most likely came from its dropout being left on (no ``.eval()``),
  which we never do.
* ``sample`` is plain ancestral sampling (1 beam, ``temperature`` 1.0, nucleus ``top_p`` 0.9, no
  top-k, repetition penalty 1.05): the decoding that really varies with the seed, used by the
  stability evaluation. ``temperature`` / ``top_p`` arguments override the preset's.
* ``score`` (:data:`SCORE`) generates nothing: it scores the 7 Stage 2 answer sentences
  (:mod:`c2ser.inference.score`) and answers with the likeliest, so every answer parses; rows
  also carry ``scores`` (label -> probability).

Every batch starts from ``torch.manual_seed(seed)``, so a run is repeatable, but a sampled output
also depends on the batch it was generated in.

The prompt is the stage's official one unless ``prompt`` gives a paraphrase index
(:data:`c2ser.core.prompts.PARAPHRASES`) or a text.

The model is a C2SER-LLM model directory or a model bundle (:mod:`c2ser.models.bundle`): a
bundle answers with its ``c2ser/`` model, and when no ``features`` folder is given its
Emotion2Vec-S computes the utterance rows the model was trained on (the bundle's
``utterance_mode``) from each batch's audio, as :class:`c2ser.inference.pipeline.Pipeline` does;
with ``features`` the rows are read from the folder as for a model directory.

Output rows: ``index, text`` (raw generation), ``emotion`` (reference, if known), ``language``,
``pred_emotion`` (from the ``parse`` callable, e.g. :func:`c2ser.evaluation.parse.parse_emotion`),
``n_tokens`` and ``seconds`` (the utterance's share of its batch's wall time).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from c2ser.core.errors import BadInputError
from c2ser.core.io import atomic_write_bytes, write_json_atomic, write_jsonl_atomic
from c2ser.core.language import language_of
from c2ser.core.prompts import prompt_for
from c2ser.data.audio import AudioError, audio_seconds, load_audio
from c2ser.data.batching import pad_batch
from c2ser.data.features import load_feature
from c2ser.data.manifest import Utterance, read_manifest
from c2ser.data.mel import log_mel
from c2ser.data.tokenizer import load_tokenizer
from c2ser.inference.emotion2vec_s import Emotion2VecSFeatures, extract_batch, too_short
from c2ser.inference.hardware import resolve_device
from c2ser.inference.provenance import (
    check_provenance,
    model_fingerprint,
    provenance,
    provenance_path,
)
from c2ser.inference.runner import RunSummary, failer, run_or_retry_singly
from c2ser.inference.score import score_labels
from c2ser.models.bundle import C2SER_SUBDIR, E2VS_SUBDIR, is_bundle, read_bundle_config
from c2ser.models.c2ser_llm import C2SER, C2SERConfig
from c2ser.models.checkpoint import CONFIG_FILE, from_pretrained
from c2ser.models.emotion2vec_s import Emotion2VecS

DECODING: dict[str, dict[str, Any]] = {
    "greedy": dict(num_beams=1, do_sample=False),
    "beam": dict(num_beams=4, do_sample=False, repetition_penalty=1.05),
    "official": dict(
        num_beams=4, do_sample=True, top_p=0.0, top_k=0, temperature=1.0,
        repetition_penalty=1.05, length_penalty=1.0, min_length=1,
    ),
    "sample": dict(
        num_beams=1, do_sample=True, temperature=1.0, top_p=0.9, top_k=0,
        repetition_penalty=1.05,
    ),
}  # fmt: skip
MAX_NEW_TOKENS = 400
MAX_E2VS_SECONDS = 60.0  # a bundle's Emotion2Vec-S reads longer audio in chunks (as Pipeline)
SCORE = "score"  # closed-set label scoring instead of generation
DECODINGS = (*DECODING, SCORE)

Parser = Callable[[str, str | None], str | None]


def run_inference(
    model: C2SER | str | os.PathLike,
    manifest: str | os.PathLike | list[Utterance],
    out: str | os.PathLike,
    stage: int = 1,
    features: str | os.PathLike | None = None,
    batch_size: int = 8,
    decoding: str = "greedy",
    seed: int = 0,
    audio_root: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    max_new_tokens: int = MAX_NEW_TOKENS,
    parse: Parser | None = None,
    progress: bool = True,
    prompt: int | str | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    skip_bad: bool = False,
    **model_overrides: Any,
) -> RunSummary:
    """Generate for every utterance of ``manifest`` not yet in ``out``; see the module docstring.

    Args:
        model: a loaded :class:`C2SER` (used on its own device), a directory for
            :func:`c2ser.models.checkpoint.from_pretrained` or a model bundle (its ``c2ser/``
            model; ``model_overrides`` go to it, e.g. ``llm_dtype="float32"``), loaded on
            ``device`` (default: cuda when available).
        manifest: jsonl / wav.scp path (bad lines are reported as failed) or utterances.
        features: directory of Emotion2Vec-S ``<id>.npy`` files, (>= 10, 768) each; required
            when the model uses them, unless ``model`` is a bundle: its Emotion2Vec-S then
            computes them from the audio.
        decoding: a key of ``DECODING``, or ``score`` (:data:`SCORE`).
        parse: ``parse(text, language) -> emotion | None`` filling ``pred_emotion``.
        prompt: ``None`` (the stage's official prompt), a paraphrase index of
            :data:`c2ser.core.prompts.PARAPHRASES`, or the prompt text itself.
        temperature, top_p: override a sampling preset's values (``sample``, ``official``).
        skip_bad: count, report and skip bad utterances (unreadable, too long, missing
            features, generation failures) in the summary; without it the first one raises
            :class:`BadInputError` (results finished before it stay, a rerun resumes).

    ``out`` gets a ``<out>.run.json`` beside it recording what produces its rows
    (:func:`provenance`); resuming into ``out`` with another model, stage, prompt, decoding or
    features is refused instead of mixing results. When the run ends, ``out`` is rewritten in
    manifest order.
    """
    if decoding == SCORE:
        if temperature is not None or top_p is not None:
            raise BadInputError(
                "temperature and top_p only apply to sampling decodings, not 'score'"
            )
        gen = {"decoding": SCORE}
    else:
        gen = generation_kwargs(decoding, max_new_tokens, temperature, top_p)
    prompt_text = prompt if isinstance(prompt, str) else prompt_for(stage, prompt or 0)
    e2vs_dir, utterance_mode = None, None
    if not isinstance(model, C2SER) and is_bundle(model):
        bundle = Path(model)
        utterance_mode = read_bundle_config(bundle).utterance_mode
        model = bundle / C2SER_SUBDIR
        if features is None and (bundle / E2VS_SUBDIR).is_dir():
            e2vs_dir = bundle / E2VS_SUBDIR
    extractor_record = None
    if e2vs_dir is not None:
        extractor_record = {
            "emotion2vec_s_sha256": model_fingerprint(e2vs_dir),
            "utterance_mode": utterance_mode,
        }
    record = provenance(
        model, stage, prompt_text, gen, seed, features if e2vs_dir is None else e2vs_dir,
        model_overrides, extractor_record,
    )  # fmt: skip
    out = Path(out)
    check_provenance(out, record)
    if isinstance(model, C2SER):
        device = next(model.parameters()).device
    else:
        if not (Path(model) / CONFIG_FILE).is_file():
            raise BadInputError(
                f"{model}: not a c2ser model directory (no {CONFIG_FILE}) or model bundle"
            )
        device = resolve_device(device)
        model = from_pretrained(model, device=device, **model_overrides)
    model.eval()
    extractor = None
    if model.config.use_ssl and e2vs_dir is not None:
        e2vs = Emotion2VecS.from_pretrained(e2vs_dir, utterance_mode=utterance_mode)
        extractor = Emotion2VecSFeatures(
            e2vs.to(device).eval(), "utterance", utterance_mode, MAX_E2VS_SECONDS
        )
    elif model.config.use_ssl and (features is None or not Path(features).is_dir()):
        raise BadInputError(
            f"this model uses Emotion2Vec-S utterance features: pass their directory "
            f"(<id>.npy files from `c2ser extract`), or give a model bundle, whose "
            f"Emotion2Vec-S computes them{f'; {features} not found' if features else ''}"
        )
    summary = RunSummary()
    if isinstance(manifest, list):
        utts = manifest
    else:
        utts = read_manifest(manifest, audio_root, skip_bad, report=summary.failed)
    feature_dir = Path(features) if features is not None else None
    fail = failer(summary.failed, skip_bad)
    todo = _pending(utts, _finished_ids(out), model.config, feature_dir, summary, fail)
    write_json_atomic(provenance_path(out), record)
    tokenizer = load_tokenizer()
    prompt_ids = tokenizer.encode(prompt_text, add_special_tokens=False)

    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc=f"infer stage {stage}", unit="utt", disable=not progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(todo), batch_size):
        items = []
        for _, utt in todo[start : start + batch_size]:
            try:
                items.append(_load_item(utt, model, feature_dir, extractor))
            except BadInputError as e:
                fail(utt.id, str(e))
        rows = _generate_rows(
            model, items, prompt_ids, gen, seed, device, tokenizer, parse, fail, extractor
        )
        _append_rows(out, rows)
        summary.done += len(rows)
        summary.tokens += sum(r["n_tokens"] for r in rows)
        summary.seconds += sum(r["seconds"] for r in rows)
        bar.update(len(todo[start : start + batch_size]))
    bar.close()
    _in_manifest_order(out, [u.id for u in utts])
    return summary


def generation_kwargs(
    decoding: str,
    max_new_tokens: int = MAX_NEW_TOKENS,
    temperature: float | None = None,
    top_p: float | None = None,
) -> dict[str, Any]:
    """``generate`` keyword arguments of a ``DECODING`` preset, with sampling overrides.

    A temperature or top_p for a preset that does not sample is an error: transformers would
    ignore it, and the run would not be what was asked for.
    """
    if decoding not in DECODING:
        raise ValueError(f"decoding must be one of {sorted(DECODING)}, got {decoding!r}")
    gen = {**DECODING[decoding], "max_new_tokens": max_new_tokens}
    overrides = {k: v for k, v in (("temperature", temperature), ("top_p", top_p)) if v is not None}
    if overrides and not gen["do_sample"]:
        raise BadInputError(
            f"{' and '.join(sorted(overrides))} only apply to sampling decodings, not {decoding!r}"
        )
    return {**gen, **overrides}


def _pending(
    utts: list[Utterance],
    finished: set[str],
    cfg: C2SERConfig,
    feature_dir: Path | None,
    summary: RunSummary,
    fail: Callable[[str, str], None],
) -> list[tuple[float, Utterance]]:
    """(seconds, utterance) still to do, longest first. Unreadable or too long audio and
    missing feature files fail here, before any generation, so a run without ``skip_bad``
    stops at once."""
    todo = []
    for utt in utts:
        if utt.id in finished:
            summary.skipped += 1
            continue
        try:
            seconds = audio_seconds(utt.wav)
        except AudioError as e:
            fail(utt.id, f"audio: {e}")
            continue
        if cfg.use_whisper and seconds > cfg.max_audio_seconds:
            fail(utt.id, f"too long: {seconds:.1f} s > {cfg.max_audio_seconds:g} s")
            continue
        if (
            cfg.use_ssl
            and feature_dir is not None
            and not (feature_dir / f"{utt.id}.npy").is_file()
        ):
            fail(utt.id, f"features: missing Emotion2Vec-S features {feature_dir / utt.id}.npy")
            continue
        todo.append((seconds, utt))
    return sorted(todo, key=lambda x: -x[0])


def _load_item(
    utt: Utterance,
    model: C2SER,
    feature_dir: Path | None,
    extractor: Emotion2VecSFeatures | None = None,
) -> dict[str, Any]:
    """Mel and features of one utterance (or, with an ``extractor``, the 16 kHz ``wav`` that
    its batch's features are computed from); a :class:`BadInputError` says what is missing."""
    cfg = model.config
    item: dict[str, Any] = {"utt": utt, "mel": None, "ssl": None}
    wav = None
    if cfg.use_whisper or (cfg.use_ssl and extractor is not None):
        try:
            wav = load_audio(utt.wav)
        except AudioError as e:
            raise BadInputError(f"audio: {e}") from None
    if cfg.use_whisper:
        item["mel"] = log_mel(wav, n_mels=cfg.n_mels)
    if cfg.use_ssl and extractor is not None:
        if reason := too_short(extractor.model, len(wav)):
            raise BadInputError(f"audio: {reason}")
        item["wav"] = wav
    elif cfg.use_ssl:
        item["ssl"] = _load_ssl(feature_dir / f"{utt.id}.npy", cfg.ssl_tokens, cfg.ssl_dim)
    return item


def _with_features(
    items: list[dict[str, Any]], extractor: Emotion2VecSFeatures, tokens: int
) -> list[dict[str, Any]]:
    """``items`` with the ``ssl`` rows of their ``wav`` s, computed in one padded batch."""
    rows = extract_batch(
        extractor.model, [it["wav"] for it in items], extractor.level, extractor.utterance_mode,
        extractor.max_samples,
    )  # fmt: skip
    return [{**it, "ssl": r[:tokens]} for it, r in zip(items, rows, strict=True)]


def _load_ssl(path: Path, tokens: int, dim: int) -> torch.Tensor:
    """The first ``tokens`` rows of an Emotion2Vec-S ``.npy`` (official: exactly (10, 768))."""
    if not path.is_file():
        raise BadInputError(f"features: missing Emotion2Vec-S features {path}")
    try:
        return load_feature(path, dim, min_rows=tokens)[:tokens]
    except BadInputError as e:
        raise BadInputError(f"features: {e}") from None


def collate_items(
    items: list[dict[str, Any]], device: torch.device
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """(mel, mel_mask, ssl) of the batch contract from loaded items."""
    mel = mask = ssl = None
    if items[0]["mel"] is not None:
        mel, mask = pad_batch([it["mel"] for it in items])
        mel, mask = mel.to(device), mask.to(device)
    if items[0]["ssl"] is not None:
        ssl = torch.stack([it["ssl"] for it in items]).to(device)
    return mel, mask, ssl


def _generate_rows(
    model: C2SER,
    items: list[dict[str, Any]],
    prompt: list[int],
    gen: dict[str, Any],
    seed: int,
    device: torch.device,
    tokenizer: Any,
    parse: Parser | None,
    fail: Callable[[str, str], None],
    extractor: Emotion2VecSFeatures | None = None,
) -> list[dict[str, Any]]:
    """Generate one batch (first computing its features when an ``extractor`` is given); if the
    batch fails as a whole, its items are retried one at a time."""

    scoring = gen.get("decoding") == SCORE

    def run(batch: list[dict[str, Any]]) -> tuple[list[Any], float]:
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        if extractor is not None:
            batch = _with_features(batch, extractor, model.config.ssl_tokens)
        inputs, prompts = collate_items(batch, device), [prompt] * len(batch)
        if scoring:
            languages = [
                language_of(it["utt"].language, it["utt"].id, it["utt"].text) for it in batch
            ]
            out = score_labels(model, *inputs, prompts, languages)
        else:
            out = model.generate(*inputs, prompts, **gen)
        return out, (time.perf_counter() - t0) / len(batch)

    def failed(item: dict[str, Any], e: Exception) -> None:
        fail(item["utt"].id, f"generation failed: {e}")

    rows = []
    for batch, (ids, share) in run_or_retry_singly(items, run, failed):
        for it, out in zip(batch, ids, strict=True):
            utt = it["utt"]
            row = {"index": utt.id, "emotion": utt.emotion, "language": utt.language}
            if scoring:
                text = out.answer
                row |= {"text": text, "pred_emotion": out.emotion, "scores": out.probs}
                row["n_tokens"] = len(tokenizer.encode(text, add_special_tokens=False))
            else:
                text = tokenizer.decode(out, skip_special_tokens=True)
                row |= {"text": text, "pred_emotion": parse(text, utt.language) if parse else None}
                row["n_tokens"] = len(out)
            rows.append(row | {"seconds": round(share, 4)})
    return rows


def _finished_ids(path: Path) -> set[str]:
    """Ids already in ``path``; a trailing line cut by a crash is removed (and redone)."""
    if not path.is_file():
        return set()
    raw = path.read_bytes()
    lines = raw.splitlines(keepends=True)
    ids, good = set(), 0
    for n, line in enumerate(lines, 1):
        try:
            ids.add(str(json.loads(line)["index"]))
        except (ValueError, KeyError, TypeError):
            if n < len(lines):
                raise BadInputError(f"{path}:{n}: corrupt results line; fix or remove it") from None
            break
        good += len(line)
    if good < len(raw) or (raw and not raw.endswith(b"\n")):
        atomic_write_bytes(path, raw[:good].rstrip(b"\n") + b"\n" if good else b"")
    return ids


def _append_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append whole lines in one write, then fsync: a crash loses at most a partial last line."""
    if not rows:
        return
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # the umask decides
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _in_manifest_order(path: Path, ids: list[str]) -> None:
    """Rewrite ``path`` with its rows in manifest order (batches run longest first); rows of
    ids the manifest no longer has keep their place at the end."""
    if not path.is_file():
        return
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    rank = {i: n for n, i in enumerate(ids)}
    ordered = sorted(rows, key=lambda r: rank.get(str(r["index"]), len(rank)))
    if ordered != rows:
        write_jsonl_atomic(path, ordered)
