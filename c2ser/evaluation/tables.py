"""The paper's tables from evaluation runs, with the paper's reported numbers beside ours.

Each run directory is an ``evaluate.py`` run: its ``metrics.json`` (scores, dataset, stage, and
what the checkpoint is) and its resolved ``.hydra/config.yaml`` (the ``system`` name given on the
command line, if any). A run is named by:

- its **stage**: Stage 2 = "C2SER Implicit (Stage 2)", Stage 1 = "C2SER Explicit (Stage 1)";
- its **ablation**, from switches of the evaluated model: ``use_ssl=false`` -> "w/o Emotion2Vec-S",
  ``use_whisper=false`` -> "w/o Whisper", and a Stage 2 model trained on implicit answers only
  (the explicit stage skipped: ``task=cot_sft data.stage=2``) -> "w/o CoT"; none -> "full";
- or by ``system=...`` given to evaluate.py, which wins (and, when it is an ablation label such as
  "w/o CoT", also sets the ablation).

Tables, one set per dataset (the evaluate ``data.name``):

- **main**: UA / macro-F1 (and WA, per-language UA/F1, stability when measured) per run, with
  the paper's UA / F1 for the same system, and the decoding and parse rate of each run when they
  differ (a model's generated answers beside its closed-set scores, ``decoding=score``); paper-only systems (e.g. Qwen2-Audio) follow with
  their reported numbers. When measured: the 95 % bootstrap interval of UA, the chain-of-thought
  scores of Stage 1 runs (style accuracy, transcript similarity) and, with two or more runs that
  wrote ``predictions.jsonl``, a paired bootstrap test of each run's UA against the first full
  system's on the utterances both scored: "Δ UA vs <run> (p)";
- **ablation**: Stage 2 runs, UA and the change from our full system (the first full Stage 2
  run by name), beside the paper's; ablations only the paper has follow.

Paper values come from ``conf/paper/c2ser_reported.yaml``; those with ``verified: false`` are
marked with a dagger. Everything is in percent.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from c2ser.core.errors import BadInputError
from c2ser.core.io import read_jsonl
from c2ser.evaluation.evaluate import KIND, PREDICTIONS
from c2ser.evaluation.scoring import compare_predictions

STAGE_NAMES = {1: "C2SER Explicit (Stage 1)", 2: "C2SER Implicit (Stage 2)"}
FULL = "full"
NO_SSL, NO_WHISPER, NO_COT = "w/o Emotion2Vec-S", "w/o Whisper", "w/o CoT"
DAGGER = "†"
CSV_FIELDS = (
    "table", "dataset", "system", "run", "run_dir", "stage", "decoding", "wa", "ua", "f1",
    "ua_ci_lo", "ua_ci_hi", "parse_rate", "ua_zh", "f1_zh", "ua_en", "f1_en", "ua_std",
    "agreement", "style_acc", "transcript_similarity", "ref_run", "delta_ua_ref",
    "p_ref", "ua_drop", "paper_ua", "paper_f1", "paper_ua_drop", "paper_verified",
)  # fmt: skip


@dataclass
class RunResult:
    """One evaluation run, named."""

    run_dir: Path
    dataset: str
    stage: int
    system: str
    ablation: str
    metrics: dict[str, Any] = field(repr=False)

    @property
    def run(self) -> str:
        return self.run_dir.name

    @property
    def predictions(self) -> list[dict[str, Any]] | None:
        """The run's per-utterance labels (``predictions.jsonl``), if it wrote them."""
        path = self.run_dir / PREDICTIONS
        return read_jsonl(path) if path.is_file() else None


def ablation_of(stage: int, info: dict[str, Any]) -> str:
    """ "full" or the removed parts (``" + "``-joined) from the evaluated model's switches."""
    removed = []
    if info.get("use_ssl") is False:
        removed.append(NO_SSL)
    if info.get("use_whisper") is False:
        removed.append(NO_WHISPER)
    train = info.get("train") or {}
    if stage == 2 and train.get("task") == "CotSFTTask" and train.get("data_stage") == 2:
        removed.append(NO_COT)
    return " + ".join(removed) or FULL


def load_run(run_dir: str | Path) -> RunResult:
    """Read and name one evaluate.py run directory (see module doc)."""
    run_dir = Path(run_dir)
    path = run_dir / "metrics.json"
    if not path.is_file():
        raise BadInputError(f"{run_dir}: no metrics.json (not an evaluate.py run, or unfinished)")
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise BadInputError(f"{path}: malformed JSON ({e.msg})") from None
    if metrics.get("kind") != KIND:
        raise BadInputError(f"{path}: not an evaluate.py metrics file (a training run's?)")
    cfg = _hydra_config(run_dir)
    stage = int(cfg.get("stage", metrics["stage"]))
    info = {**metrics.get("system", {})}
    for key in ("use_ssl", "use_whisper"):  # an explicit model.* in the run's config wins
        if key in (cfg.get("model") or {}):
            info[key] = cfg["model"][key]
    name = cfg.get("system") or info.get("name")
    ablation = ablation_of(stage, info)
    if name in (NO_SSL, NO_WHISPER, NO_COT):
        ablation = name
    if not name:
        name = STAGE_NAMES.get(stage, f"stage {stage}")
        name += f" {ablation}" if ablation != FULL else ""
    return RunResult(run_dir, metrics["dataset"], stage, name, ablation, metrics)


def _hydra_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        return {}
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def load_paper(path: str | Path | None) -> dict[str, Any]:
    """The reported-numbers file (``conf/paper/c2ser_reported.yaml``); empty when ``None``."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: paper numbers file not found")
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def _paper_rows(paper: dict[str, Any], table: str, dataset: str) -> tuple[str, list[dict]]:
    entry = (paper.get(table) or {}).get(dataset) or {}
    return entry.get("table", ""), list(entry.get("rows") or [])


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}"


def _paper(row: dict | None, key: str) -> str:
    if row is None or row.get(key) is None:
        return "—"
    return f"{row[key]:.2f}{'' if row.get('verified') else DAGGER}"


def _scores(run: RunResult, langs: list[str]) -> dict[str, float | None]:
    m = run.metrics
    out = {k: m["overall"][k] for k in ("wa", "ua", "f1")}
    out["ua_ci_lo"], out["ua_ci_hi"] = (m["overall"].get("ci") or {}).get("ua") or (None, None)
    out["parse_rate"] = m["overall"].get("parse_rate")
    for lang in langs:
        rep = m["languages"].get(lang) or {}
        out[f"ua_{lang}"], out[f"f1_{lang}"] = rep.get("ua"), rep.get("f1")
    st = m.get("stability") or {}
    out["ua_std"], out["agreement"] = st.get("ua_std"), st.get("agreement")
    cot = m.get("cot") or {}
    out["style_acc"], out["transcript_similarity"] = (
        cot.get("style_acc"),
        cot.get("transcript_similarity"),
    )
    return out


def _ci(s: dict[str, float | None]) -> str:
    if s["ua_ci_lo"] is None:
        return "—"
    return f"[{_pct(s['ua_ci_lo'])}, {_pct(s['ua_ci_hi'])}]"


def _paired(ref: RunResult, run: RunResult) -> dict[str, Any] | None:
    """Paired bootstrap of ``run``'s UA against ``ref``'s (None: nothing in common)."""
    ref_rows, rows = ref.predictions, run.predictions
    if ref_rows is None or rows is None:
        return None
    return compare_predictions(ref_rows, rows, metric="ua")


def _paired_cell(test: dict[str, Any] | None, is_ref: bool) -> str:
    if is_ref:
        return "(ref)"
    if test is None:
        return "—"
    return f"{100 * test['delta']:+.2f} (p={test['p_value']:.3f})"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    align = ["---" if i < 2 else "---:" for i in range(len(header))]
    return ["| " + " | ".join(r) + " |" for r in (header, align, *rows)]


def build_tables(runs: list[RunResult], paper: dict[str, Any]) -> tuple[str, list[dict]]:
    """(markdown, CSV rows) of the main and ablation tables for every dataset of ``runs``."""
    md = ["# C2SER results", ""]
    csv_rows: list[dict] = []
    for dataset in sorted({r.dataset for r in runs}):
        ours = sorted((r for r in runs if r.dataset == dataset), key=lambda r: (-r.stage, r.system))
        langs = sorted({lang for r in ours for lang in r.metrics["languages"]} & {"zh", "en"})
        md += _main_table(dataset, ours, langs, paper, csv_rows)
        md += _ablation_table(dataset, [r for r in ours if r.stage == 2], paper, csv_rows)
    if _has_unverified(paper):
        md += [
            f"{DAGGER} reported by the paper but not checked against the PDF "
            f"({paper.get('source', 'see the paper numbers file')}).",
            "",
        ]
    return "\n".join(md), csv_rows


def _has_unverified(paper: dict[str, Any]) -> bool:
    tables = [paper.get(t) or {} for t in ("main", "ablation")]
    rows = [row for t in tables for d in t.values() for row in d.get("rows", [])]
    return any(not row.get("verified", False) for row in rows)


def _main_table(
    dataset: str, ours: list[RunResult], langs: list[str], paper: dict, csv_rows: list[dict]
) -> list[str]:
    source, reported = _paper_rows(paper, "main", dataset)
    by_system = {row["system"]: row for row in reported}
    stability = any(r.metrics.get("stability") for r in ours)
    ci = any(r.metrics["overall"].get("ci") for r in ours)
    cot = any(r.metrics.get("cot") for r in ours)
    with_preds = [r for r in ours if (r.run_dir / PREDICTIONS).is_file()]
    ref = next((r for r in with_preds if r.ablation == FULL), None)
    paired = ref is not None and len(with_preds) > 1
    # generated and scored (decoding=score) runs of one model side by side, with their parse rates
    decodings = len({r.metrics.get("decoding") for r in ours}) > 1
    header = ["System", "Run"] + ["Decoding"] * decodings + ["UA"] + ["UA 95% CI"] * ci
    header += ["F1", "WA"] + ["Parse %"] * decodings
    header += [f"{m} {lang}" for lang in langs for m in ("UA", "F1")]
    header += ["UA std", "agree"] * stability
    header += ["Style acc", "Transcript sim"] * cot
    if paired:
        header.append(f"Δ UA vs {ref.run} (p)")
    header += ["Paper UA", "Paper F1"] * bool(reported)
    rows = []
    for run in ours:
        s = _scores(run, langs)
        p = by_system.get(run.system)
        row = [run.system, run.run] + [run.metrics.get("decoding") or "—"] * decodings
        row += [_pct(s["ua"])] + [_ci(s)] * ci + [_pct(s["f1"]), _pct(s["wa"])]
        row += [_pct(s["parse_rate"])] * decodings
        row += [_pct(s[f"{m}_{lang}"]) for lang in langs for m in ("ua", "f1")]
        row += [_pct(s["ua_std"]), _pct(s["agreement"])] * stability
        row += [_pct(s["style_acc"]), _pct(s["transcript_similarity"])] * cot
        test = _paired(ref, run) if paired and run is not ref else None
        row += [_paired_cell(test, run is ref)] * paired
        row += [_paper(p, "ua"), _paper(p, "f1")] * bool(reported)
        rows.append(row)
        extra = {}
        if test is not None:
            extra = {"ref_run": ref.run, "delta_ua_ref": _num(test["delta"]),
                     "p_ref": f"{test['p_value']:.4f}"}  # fmt: skip
        csv_rows.append({**_csv_row("main", run, s, p), **extra})
    for p in reported:
        if p["system"] not in {r.system for r in ours}:
            blank = ["—"] * (len(header) - 4)  # all but system, run and the paper's two
            rows.append([p["system"], "(paper only)", *blank, _paper(p, "ua"), _paper(p, "f1")])
            csv_rows.append(_csv_row("main", None, {}, p, dataset))
    title = f"## {dataset}: main results (%)" + (f", paper: {source}" if source else "")
    return [title, "", *_table(header, rows), ""]


def _ablation_table(
    dataset: str, ours: list[RunResult], paper: dict, csv_rows: list[dict]
) -> list[str]:
    source, reported = _paper_rows(paper, "ablation", dataset)
    if not ours:
        return []
    by_name = {row["system"]: row for row in reported}
    full = next((r for r in ours if r.ablation == FULL), None)
    paper_full = by_name.get(FULL)
    header = ["Ablation", "Run", "UA", "Δ UA"] + ["Paper UA", "Paper Δ"] * bool(reported)
    rows = []
    for run in sorted(ours, key=lambda r: (r.ablation != FULL, r.ablation)):
        s = _scores(run, [])
        drop = s["ua"] - full.metrics["overall"]["ua"] if full else None
        p = by_name.get(run.ablation)
        paper_drop = (
            p["ua"] - paper_full["ua"] if p and paper_full and p.get("ua") is not None else None
        )
        row = [run.ablation, run.run, _pct(s["ua"]), _signed(drop)]
        if reported:
            row += [
                _paper(p, "ua"),
                _signed(paper_drop, 1.0, verified=bool(p and p.get("verified"))),
            ]
        rows.append(row)
        drops = {"ua_drop": _num(drop), "paper_ua_drop": _num(paper_drop, 1.0)}
        csv_rows.append({**_csv_row("ablation", run, s, p), "system": run.ablation, **drops})
    for p in reported:
        if p["system"] not in {r.ablation for r in ours}:
            paper_drop = p["ua"] - paper_full["ua"] if paper_full else None
            signed = _signed(paper_drop, 1.0, verified=bool(p.get("verified")))
            rows.append([p["system"], "(paper only)", "—", "—", _paper(p, "ua"), signed])
    title = f"## {dataset}: ablations of Stage 2 (UA %)" + (f", paper: {source}" if source else "")
    return [title, "", *_table(header, rows), ""]


def _signed(x: float | None, scale: float = 100.0, verified: bool = True) -> str:
    if x is None:
        return "—"
    return f"{scale * x:+.2f}{'' if verified else DAGGER}"


def _num(x: float | None, scale: float = 100.0) -> str:
    return "" if x is None else f"{scale * x:.2f}"


def _csv_row(
    table: str, run: RunResult | None, s: dict, p: dict | None, dataset: str = ""
) -> dict[str, Any]:
    row: dict[str, Any] = {"table": table, "dataset": run.dataset if run else dataset}
    if run is not None:
        row.update(system=run.system, run=run.run, run_dir=str(run.run_dir), stage=run.stage)
        row["decoding"] = run.metrics.get("decoding")
        row.update({k: _num(v) for k, v in s.items()})
    elif p is not None:
        row["system"] = p["system"]
    if p is not None:
        row["paper_ua"], row["paper_f1"] = _num(p.get("ua"), 1.0), _num(p.get("f1"), 1.0)
        row["paper_verified"] = bool(p.get("verified"))
    return row


def write_tables(
    run_dirs: list[str | Path], out: str | Path, paper: str | Path | None = None
) -> dict[str, Any]:
    """Write ``out`` (markdown) and ``out`` with ``.csv``; returns markdown, paths and runs."""
    from c2ser.core.io import atomic_write_text

    if not run_dirs:
        raise BadInputError("no run directories given")
    runs = [load_run(d) for d in run_dirs]
    markdown, rows = build_tables(runs, load_paper(paper))
    out = Path(out)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    csv_path = out.with_suffix(".csv")
    atomic_write_text(out, markdown)
    atomic_write_text(csv_path, buf.getvalue())
    return {"markdown": markdown, "files": [out, csv_path], "runs": runs}
