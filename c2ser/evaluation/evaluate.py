"""Evaluate C2SER on a test set: inference, emotion parsing, WA/UA/macro-F1, figures.

``python evaluate.py`` (Hydra, ``conf/evaluate.yaml``) calls :func:`run_evaluation`, which

1. reads the test set (:class:`EvalSet`, the ``eval_set`` group: Emo-Emilia or the demo test split)
   and checks that *every* audio file (and feature file, when a features folder is given) exists
   before any model is loaded: a 2-hour run must not die at utterance 1,317. Missing files are an
   error listing the count and the first 10 (all of them in ``missing_inputs.txt``). The set is
   named from its data (:mod:`c2ser.evaluation.sets`: ``emo_emilia`` only for the released
   manifest);
2. runs batched, resumable inference (:func:`c2ser.inference.generate.run_inference`) into
   ``results.jsonl`` of the run directory, or reads existing outputs (``predictions=FILE``).
   One rule for bad entries (bad manifest lines, missing inputs, utterances whose inference
   fails): the run stops with one line, unless ``skip_bad=true``, which counts them, prints
   them and scores the rest (failed inferences count as wrong);
3. parses every answer with :func:`c2ser.evaluation.parse.parse_emotion` (re-parsed from the raw
   text, so old outputs are scored with the current parser), or with a local LLM judge
   (``judge.model``, :func:`c2ser.evaluation.parse.judge_emotions`). Unparseable answers and
   utterances whose inference failed are **wrong**, and listed in ``unparsed.jsonl`` with the
   reason;
4. scores WA/UA/macro-F1 overall and per language (``language`` field, else the ``ZH_``/``EN_``
   id prefix) with :func:`c2ser.evaluation.scoring.score_rows`: each set gets ``parse_rate``
   and 95 % bootstrap intervals ``ci`` that resample speakers (the manifest's ``speaker``;
   without one, utterances, as ``metrics.json``'s ``bootstrap.unit`` says). For Stage 1 the
   chain of thought is scored too (``cot``: stated pitch / volume / speed bins and quoted
   transcript against the manifest, :mod:`c2ser.evaluation.cot_score`). Writes
   ``metrics.json``, ``summary.md``, ``predictions.jsonl`` (the labels, for paired tests in
   ``c2ser report``) and ``confusion_<all|zh|en>.png``;
5. with ``stability.runs`` x ``stability.prompts`` > 1, decodes the set again with sampling
   (``stability.decoding``, seeds ``stability.seed + i``, prompt paraphrases
   ``0..prompts-1``) into ``stability/run_<i>.jsonl`` (paraphrase 0) and
   ``stability/prompt_<p>/run_<i>.jsonl``, and adds
   :func:`c2ser.evaluation.stability.stability_report` + ``stability.png``.

``metrics.json`` also records what was evaluated (checkpoint, stage, data ``split``, the model's
``use_ssl`` / ``use_whisper`` and, when the checkpoint is ``<train run>/model``, that run's task and data
stage), which ``c2ser report`` uses to name systems and ablations.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from c2ser.core.errors import BadInputError, SkipReport
from c2ser.core.figures import plot_confusion
from c2ser.core.io import atomic_write_text, read_jsonl, write_json_atomic, write_jsonl_atomic
from c2ser.core.labels import EMOTIONS
from c2ser.core.parse import parse_emotion
from c2ser.data.manifest import Utterance, read_manifest
from c2ser.evaluation.bootstrap import N_RESAMPLES
from c2ser.evaluation.cot_score import score_cot
from c2ser.evaluation.parse import judge_emotions
from c2ser.evaluation.scoring import Parser, row_language, score_rows
from c2ser.evaluation.sets import set_name
from c2ser.evaluation.stability import plot_stability, stability_report
from c2ser.models.bundle import C2SER_SUBDIR, is_bundle
from c2ser.models.checkpoint import CONFIG_FILE, read_config

KIND = "c2ser-evaluation"  # marks our metrics.json (train runs write a metrics.json too)
SHOW_MISSING = 10
PREDICTIONS = "predictions.jsonl"  # per-utterance labels, read by `c2ser report` for paired tests


@dataclass
class EvalSet:
    """A labelled test set (the ``eval_set`` group of ``conf/evaluate.yaml``).

    ``name`` (None: from the data, :func:`c2ser.evaluation.sets.set_name`) is what reports call
    the set; ``split`` keeps only the manifest rows of that split (the demo corpus' ``test``); a split the
    manifest does not have is an error, never a silent fallback to other rows;
    ``features`` is the folder of Emotion2Vec-S ``<id>.npy`` files for models that use them;
    ``demo_corpus`` (kwargs of :func:`c2ser.data.demo.build_demo_corpus`) synthesises a missing
    demo manifest, as the training data modules do.
    """

    manifest: str
    name: str | None = None
    audio_root: str | None = None
    features: str | None = None
    split: str | None = None
    demo_corpus: dict[str, Any] | None = None

    def utterances(
        self, skip_bad: bool = False, report: SkipReport | None = None
    ) -> list[Utterance]:
        """The rows to evaluate; bad manifest lines stop, or with ``skip_bad`` go to ``report``."""
        path = Path(self.manifest)
        if not path.exists() and self.demo_corpus is not None:
            from c2ser.data.demo import build_demo_corpus

            build_demo_corpus(path.parent, **self.demo_corpus)
        utts = read_manifest(path, self.audio_root, skip_bad, set(EMOTIONS), report)
        if not utts:
            raise BadInputError(f"{path}: no utterances")
        if self.split is None:
            return utts
        kept = [u for u in utts if u.split == self.split]
        if not kept:
            splits = sorted({u.split for u in utts if u.split is not None})
            has = f"its splits are {', '.join(splits)}" if splits else "it has no 'split' field"
            raise BadInputError(
                f"{path}: no utterances in split {self.split!r} ({has}); choose one with "
                "eval_set.split=<name>, or eval_set.split=null to evaluate every row"
            )
        return kept

    def references(self, skip_bad: bool = False) -> list[Utterance] | None:
        """The utterances when the manifest exists (nothing is synthesised), else ``None``: the
        speakers, transcripts and style bins for scoring existing predictions."""
        return self.utterances(skip_bad) if Path(self.manifest).is_file() else None

    def set_name(self, utts: Sequence[Utterance]) -> str:
        return set_name(self.name, self.manifest, self.split, utts)


def check_inputs(
    utts: Sequence[Utterance],
    features: str | Path | None = None,
    skip_bad: bool = False,
    listing: str | Path | None = None,
) -> tuple[list[Utterance], list[str]]:
    """(utterances whose inputs exist, ``"<id>: <missing path>"`` for the others).

    Raises :class:`BadInputError` when something is missing and ``skip_bad`` is off, or when
    nothing is left; ``listing`` (if given) receives the complete list of missing files.
    """
    kept, missing = [], []
    for u in utts:
        paths = [Path(u.wav)] + ([Path(features) / f"{u.id}.npy"] if features else [])
        absent = [str(p) for p in paths if not p.is_file()]
        if absent:
            missing.extend(f"{u.id}: {p}" for p in absent)
        else:
            kept.append(u)
    if not missing:
        return kept, missing
    if listing is not None:
        atomic_write_text(listing, "\n".join(missing) + "\n")
    where = f"; full list in {listing}" if listing is not None else ""
    head = f"{len(missing)} input file(s) missing for {len(utts) - len(kept)} of {len(utts)} "
    first = "\n  ".join(missing[:SHOW_MISSING])
    if not skip_bad:
        raise BadInputError(
            f"{head}utterances{where}. First {min(len(missing), SHOW_MISSING)}:\n  {first}\n"
            "Point eval_set.audio_root (and eval_set.features) at the folders holding them, or set "
            "skip_bad=true to evaluate the rest."
        )
    if not kept:
        raise BadInputError(
            f"{head}utterances{where}: nothing left to evaluate (skip_bad=true). "
            f"First missing: {missing[0]}"
        )
    return kept, missing


def system_info(checkpoint: str | Path | None) -> dict[str, Any]:
    """What a checkpoint is: the model's input switches and, for ``<train run>/model``, how that
    run trained (task class, data stage, init_from) from its ``.hydra/config.yaml``."""
    if checkpoint is None:
        return {}
    ckpt = Path(checkpoint)
    info: dict[str, Any] = {"checkpoint": str(ckpt)}
    model_dir = ckpt / C2SER_SUBDIR if is_bundle(ckpt) else ckpt  # a bundle: its C2SER-LLM
    if (model_dir / CONFIG_FILE).is_file():
        model = read_config(model_dir)
        info.update({k: model[k] for k in ("use_ssl", "use_whisper") if k in model})
    train_cfg = ckpt.parent / ".hydra" / "config.yaml"
    if train_cfg.is_file():
        import yaml

        cfg = yaml.safe_load(train_cfg.read_text(encoding="utf-8")) or {}
        task, data = cfg.get("task") or {}, cfg.get("data") or {}
        info["train"] = {
            "run_dir": str(ckpt.parent),
            "task_name": cfg.get("task_name"),
            "task": str(task.get("_target_", "")).rsplit(".", 1)[-1],
            "data_stage": data.get("stage"),
            "init_from": task.get("init_from"),
        }
    return info


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}"


def _with_ci(rep: dict[str, Any], key: str) -> str:
    ci = (rep.get("ci") or {}).get(key)
    return _pct(rep[key]) + (f" [{_pct(ci[0])}, {_pct(ci[1])}]" if ci else "")


def summary_markdown(metrics: dict[str, Any]) -> str:
    """The per-language table (WA/UA/F1 in % with 95 % intervals, parse rate) with counts, the
    chain-of-thought scores (Stage 1) and stability, as printed and saved."""
    split = metrics.get("split")
    lines = [
        f"# Evaluation: {metrics['dataset']}, stage {metrics['stage']}",
        "",
        f"- source: {metrics['source']}" + (f"; split {split}" if split else ""),
        f"- utterances: {metrics['n']} scored; {metrics['n_unparsed']} unparsed, counted wrong "
        f"({metrics['n_failed']} of them failed in inference, see unparsed.jsonl); "
        f"{metrics['n_missing']} skipped for missing inputs"
        + (f", {metrics['n_bad_lines']} bad manifest lines" if metrics.get("n_bad_lines") else ""),
    ]
    if metrics.get("answer_tokens"):
        t = metrics["answer_tokens"]
        lines.append(f"- answer length: median {t['median']:g} tokens, mean {t['mean']:.1f}")
    if metrics.get("bootstrap"):
        b = metrics["bootstrap"]
        lines.append(
            f"- [95% CI]: {b['resamples']} bootstrap resamples by {b['unit']}; {b['note']}"
        )
    lines += [
        "",
        "| set | n | WA | UA | macro-F1 | parse rate | unparsed |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rep in [("all", metrics["overall"]), *metrics["languages"].items()]:
        lines.append(
            f"| {name} | {rep['n']} | {_with_ci(rep, 'wa')} | {_with_ci(rep, 'ua')} "
            f"| {_with_ci(rep, 'f1')} | {_pct(rep.get('parse_rate'))} | {rep['invalid']} |"
        )
    if metrics.get("cot"):
        lines += _cot_lines(metrics["cot"])
    if metrics.get("stability"):
        lines += _stability_lines(metrics["stability"])
    return "\n".join(lines) + "\n"


def _cot_lines(cot: dict[str, Any]) -> list[str]:
    keys = ("pitch_acc", "volume_acc", "speed_acc", "style_acc", "style_parse_rate",
            "transcript_similarity")  # fmt: skip
    lines = [
        "",
        "Chain of thought (stated style bins and quoted transcript vs the manifest, %):",
        "",
        "| set | n | pitch | volume | speed | style | style stated | transcript sim |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, c in [("all", cot), *cot["languages"].items()]:
        lines.append(f"| {name} | {c['n']} | " + " | ".join(_pct(c[k]) for k in keys) + " |")
    return lines


def _stability_lines(st: dict[str, Any]) -> list[str]:
    kappa = "—" if st.get("fleiss_kappa") is None else f"{st['fleiss_kappa']:.3f}"
    lines = [
        "",
        f"Stability over {st['runs']} sampled decodings ({st['decoding']}): "
        f"UA {_pct(st['ua_mean'])} ± {_pct(st['ua_std'])}; all runs agree on "
        f"{_pct(st['agreement'])}% of utterances (flip rate {_pct(st.get('flip_rate'))}%, mean "
        f"pairwise agreement {_pct(st['pairwise_agreement'])}%); Fleiss' kappa {kappa}; "
        f"invalid answers {_pct(st.get('invalid_rate'))}%.",
    ]
    if st.get("by_prompt"):
        lines += [
            f"Across the {st['prompts']} prompts: std of their mean UA "
            f"{_pct(st['ua_std_prompts'])}.",
            "",
            "| prompt | runs | UA mean | UA std | flip rate | Fleiss' kappa | invalid |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for b in st["by_prompt"]:
            k = "—" if b["fleiss_kappa"] is None else f"{b['fleiss_kappa']:.3f}"
            lines.append(
                f"| {b['prompt']} | {b['runs']} | {_pct(b['ua_mean'])} | {_pct(b['ua_std'])} "
                f"| {_pct(b['flip_rate'])} | {k} | {_pct(b['invalid_rate'])} |"
            )
    return lines


def write_report(
    out_dir: str | Path,
    metrics: dict[str, Any],
    unparsed: list[dict],
    predictions: list[dict] | None = None,
) -> Path:
    """metrics.json, summary.md, unparsed.jsonl, predictions.jsonl and confusion PNGs."""
    out = Path(out_dir)
    write_json_atomic(out / "metrics.json", metrics)
    atomic_write_text(out / "summary.md", summary_markdown(metrics))
    write_jsonl_atomic(out / "unparsed.jsonl", unparsed)
    if predictions is not None:
        write_jsonl_atomic(out / PREDICTIONS, predictions)
    for name, rep in [("all", metrics["overall"]), *metrics["languages"].items()]:
        title = f"{metrics['dataset']} {name}: UA {_pct(rep['ua'])}%"
        plot_confusion(
            np.asarray(rep["confusion"]), rep["labels"], out / f"confusion_{name}.png", title
        )
    return out


def _token_stats(rows: Sequence[dict[str, Any]]) -> dict[str, float] | None:
    counts = [r["n_tokens"] for r in rows if isinstance(r.get("n_tokens"), int)]
    if not counts:
        return None
    return {
        "median": statistics.median(counts),
        "mean": statistics.fmean(counts),
        "max": max(counts),
    }


def _infer(
    cfg: Any, utts: list[Utterance], out: Path, decoding: str, seed: int, **options: Any
) -> list[dict]:
    """Run (or resume) inference for ``utts`` into ``out``; rows in manifest order, with a
    placeholder row (``text`` None, ``error``) for every utterance that failed (``skip_bad``;
    without it the first failure stops the run). ``options``: ``prompt``, ``temperature``,
    ``top_p`` of :func:`run_inference`."""
    from c2ser.inference.generate import run_inference

    overrides = {"llm_dtype": cfg.dtype} if cfg.get("dtype") else {}
    summary = run_inference(
        cfg.checkpoint, utts, out, stage=cfg.stage, features=cfg.eval_set.get("features"),
        batch_size=cfg.batch_size, decoding=decoding, seed=seed, device=cfg.get("device"),
        max_new_tokens=cfg.max_new_tokens, parse=parse_emotion, skip_bad=cfg.skip_bad,
        **options, **overrides,
    )  # fmt: skip
    if summary.failed:
        print(f"skip_bad: {out.name}: {summary.failed.summary('failed')}; counted wrong, "
              "listed in unparsed.jsonl")  # fmt: skip
    errors = summary.failed.reasons_by_where()
    done = {str(r["index"]): r for r in read_jsonl(out)} if out.exists() else {}
    return [
        done.get(u.id)
        or {
            "index": u.id,
            "text": None,
            "emotion": u.emotion,
            "language": u.language,
            "error": f"inference failed: {errors.get(u.id, 'no output')}",
        }
        for u in utts
    ]


def _stability_decodings(cfg: Any) -> int:
    return cfg.stability.runs * cfg.stability.get("prompts", 1)


def run_evaluation(cfg: Any) -> dict[str, Any]:
    """The whole evaluation for a composed ``conf/evaluate.yaml`` (see module doc); writes into
    ``cfg.paths.output_dir`` and returns the metrics."""
    from hydra.utils import instantiate

    out = Path(cfg.paths.output_dir)
    dataset = instantiate(cfg.eval_set)
    utts, n_missing, n_bad_lines = None, 0, 0
    if cfg.get("predictions"):
        if _stability_decodings(cfg) > 1 and not cfg.stability.get("predictions"):
            raise BadInputError(
                "stability.runs/prompts > 1 decode again and need checkpoint=...; to score "
                "existing sampled outputs give stability.predictions=[run1.jsonl,run2.jsonl,...]"
            )
        rows = read_jsonl(cfg.predictions)
        references = dataset.references(cfg.skip_bad) or []
        source = f"predictions {cfg.predictions}"
        # without the manifest, the predictions' own ids and labels say which set it is
        found = references or [
            Utterance(id=str(r["index"]), wav="", emotion=r.get("emotion")) for r in rows
        ]
        named_after = dataset.manifest if references else cfg.predictions
        name = set_name(dataset.name, named_after, dataset.split, found)
    else:
        if not cfg.get("checkpoint"):
            raise BadInputError("give checkpoint=<model dir> (or predictions=<results.jsonl>)")
        listing = out / "missing_inputs.txt"
        bad_lines = SkipReport()
        all_utts = dataset.utterances(cfg.skip_bad, bad_lines)
        n_bad_lines = len(bad_lines)
        if bad_lines:
            print(f"skip_bad: {dataset.manifest}: {bad_lines.summary('skipped')} manifest lines")
        name = dataset.set_name(all_utts)
        utts, missing = check_inputs(all_utts, dataset.features, cfg.skip_bad, listing)
        n_missing = len(all_utts) - len(utts)
        if missing:
            print(f"skip_bad: skipped {n_missing} utterance(s) with missing inputs ({listing})")
        rows = _infer(cfg, utts, out / "results.jsonl", cfg.decoding, cfg.seed)
        references = utts
        source = f"checkpoint {cfg.checkpoint} ({cfg.decoding} decoding)"
    by_id = {u.id: u for u in references}
    speakers = {i: u.speaker for i, u in by_id.items() if u.speaker}
    boot = cfg.get("bootstrap") or {}
    scored = score_rows(
        rows, _parser(cfg, [rows]), speakers=speakers,
        n_resamples=boot.get("resamples", N_RESAMPLES), seed=boot.get("seed", 0),
    )  # fmt: skip
    judge = (cfg.get("judge") or {}).get("model")
    metrics = {
        "kind": KIND,
        "dataset": name,
        "split": dataset.split,
        "stage": cfg.stage,
        "source": source,
        "decoding": None if cfg.get("predictions") else cfg.decoding,
        "parser": f"llm judge {judge}" if judge else "rules (c2ser.evaluation.parse)",
        "system": {"name": cfg.get("system"), **system_info(cfg.get("checkpoint"))},
        "n": scored["overall"]["n"],
        "n_unparsed": len(scored["unparsed"]),
        "n_failed": sum(1 for r in rows if r.get("text") is None),
        "n_missing": n_missing,
        "n_bad_lines": n_bad_lines,
        "answer_tokens": _token_stats(rows),
        "overall": scored["overall"],
        "languages": scored["languages"],
        "bootstrap": scored.get("bootstrap"),
    }
    cot = score_cot(rows, by_id) if cfg.stage == 1 else None
    if cot is not None:
        metrics["cot"] = cot
    stability = _stability(cfg, rows, utts, out, name)
    if stability is not None:
        metrics["stability"] = stability
    predictions = [
        {"index": r["index"], "emotion": r["emotion"], "language": row_language(r),
         "speaker": speakers.get(str(r["index"])) or r.get("speaker"),
         "pred_emotion": scored["predictions"][str(r["index"])]}
        for r in rows
    ]  # fmt: skip
    write_report(out, metrics, scored["unparsed"], predictions)
    return metrics


def _stability(
    cfg: Any, rows: list[dict[str, Any]], utts: list[Utterance] | None, out: Path, name: str
) -> dict[str, Any] | None:
    """Decode ``stability.runs`` seeds x ``stability.prompts`` paraphrases more times (or read
    ``stability.predictions``) and measure the spread of UA and the agreement over the
    utterances of the main evaluation."""
    st = cfg.stability
    prompts = None
    if st.get("predictions"):
        runs_rows = [read_jsonl(p) for p in st.predictions]
        decoding = f"{len(runs_rows)} given prediction files"
    elif _stability_decodings(cfg) > 1 and utts is not None:
        from c2ser.inference.generate import DECODING

        sampling = {}
        if DECODING[st.decoding]["do_sample"]:
            sampling = {"temperature": st.get("temperature"), "top_p": st.get("top_p")}
        n_prompts = st.get("prompts", 1)
        runs_rows, prompts = [], []
        for p in range(n_prompts):
            folder = out / "stability" / (f"prompt_{p}" if p else "")
            for i in range(st.runs):
                path = folder / f"run_{i}.jsonl"
                runs_rows.append(
                    _infer(cfg, utts, path, st.decoding, st.seed + i, prompt=p, **sampling)
                )
                prompts.append(p)
        prompts = prompts if n_prompts > 1 else None
        knobs = "".join(f", {k} {v:g}" for k, v in sampling.items() if v is not None)
        decoding = (
            f"{st.decoding} decoding{knobs}, seeds {st.seed}..{st.seed + st.runs - 1}, "
            f"prompt paraphrases 0..{n_prompts - 1}"
        )
    else:
        return None
    parse = _parser(cfg, runs_rows)
    runs = []
    for found in runs_rows:
        by_id = {str(r["index"]): r for r in found}
        texts = [(by_id.get(str(r["index"])) or {}).get("text") for r in rows]
        runs.append([parse(t, row_language(r)) if t else None for t, r in zip(texts, rows)])
    report = stability_report(runs, [r["emotion"] for r in rows], prompts=prompts)
    plot_stability(report, out / "stability.png", title=f"{name}: {decoding}")
    return {**report, "decoding": decoding}


def _parser(cfg: Any, row_lists: Sequence[Sequence[dict[str, Any]]]) -> Parser:
    """The rule parser, or (``judge.model`` set) the LLM judge's labels for every answer."""
    judge = cfg.get("judge") or {}
    if not judge.get("model"):
        return parse_emotion
    texts = sorted({r["text"] for rows in row_lists for r in rows if r.get("text")})
    device = judge.get("device") or cfg.get("device")
    found = judge_emotions(texts, judge.model, judge.get("batch_size", 16), device)
    labels = dict(zip(texts, found))
    return lambda text, language=None: labels.get(text)
