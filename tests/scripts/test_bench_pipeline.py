"""scripts/bench_pipeline.py runs end to end at toy size (random bundle, 2 short utterances)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_pipeline_smoke(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    from bench_pipeline import main

    argv = ["--n", "2", "--min-seconds", "0.5", "--max-seconds", "1.0", "--batch-size", "2",
            "--max-new-tokens", "2", "--official-max-new-tokens", "2", "--no-record"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| official loop (extract per file, then Stage 1, 4-beam official decoding) | 1 |" in out
    assert "**Pipeline score / official loop: " in out
    assert "- command: `python scripts/bench_pipeline.py --n 2" in out
