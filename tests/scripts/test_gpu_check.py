"""scripts/bench_stage1_step.py (its FLOP count, one CPU step, the BENCHMARKS.md section) and
scripts/gpu_check.sh (arguments, stopping at the first error, the CPU dry run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu_check.sh"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    import bench_stage1_step

    return bench_stage1_step


def test_step_flops_agree_with_the_flop_counter(bench):
    """The MFU numerator (PaLM-convention estimate) against torch's count of one forward +
    backward of the tiny model: every matmul, convolution and attention, frozen weights without
    weight gradients, the LM head only on targets."""
    from torch.utils.flop_counter import FlopCounterMode

    model = bench.build_model("tiny", torch.device("cpu")).train()
    batch = bench.make_batch(model, 2, 2.0, 16)
    estimate = bench.step_flops(model, bench.shapes(model, batch, torch.device("cpu")))
    with FlopCounterMode(display=False) as counter:
        out = model(batch["mel"], batch["mel_mask"], batch["ssl"], batch["prompt_ids"],
                    batch["target_ids"])  # fmt: skip
        out.loss.backward()
    assert estimate == pytest.approx(counter.get_total_flops(), rel=0.25)


def test_one_cpu_step_is_recorded(bench, tmp_path, capsys):
    results, md = tmp_path / "rows.json", tmp_path / "BENCH.md"
    argv = ["--device", "cpu", "--preset", "tiny", "--strategy", "none", "--warmup", "0",
            "--steps", "2", "--results", str(results), "--benchmarks-file", str(md)]  # fmt: skip
    assert bench.main(argv) == 0
    (row,) = json.loads(results.read_text())
    assert row["preset"] == "tiny" and row["strategy"] == "none" and row["steps"] == 2
    assert row["step_s_min"] <= row["step_s"] <= row["step_s_max"]
    assert row["tokens_per_s"] == pytest.approx(row["shapes"]["llm_tokens"] / row["step_s"])
    assert row["mfu"] is None and row["peak_rss_gib"] > 0  # no peak known for a CPU
    text = md.read_text()
    section = f"## C2SER Stage 1 training step ({row['machine']})"
    assert section in text and "| tiny | plain (one device, torch AdamW) |" in text
    assert "- command: `python scripts/bench_stage1_step.py --device cpu" in text
    assert bench.main(argv) == 0  # a rerun replaces its row, not adds one
    assert len(json.loads(results.read_text())) == 1


def test_7b_preset_is_the_paper_shape(bench):
    from c2ser.models.c2ser_llm import preset_config

    base, llm, n, seconds, *_ = bench.PRESETS["7b"]
    cfg = preset_config(base, llm_config=llm)
    assert (cfg.encoder_dim, cfg.encoder_layers, cfg.connector_layers) == (1024, 24, 4)
    assert (llm["hidden_size"], llm["num_hidden_layers"], llm["intermediate_size"]) == (
        3584, 28, 18_944,
    )  # fmt: skip
    assert n * seconds * 100 == 3900  # the official dynamic batch's mel-frame budget


def _run(*args, env=None, timeout=120):
    env = {"GPU_CHECK_DIR": str(env["OUT"]) + "/runs", **env} if env else None
    return subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHON": sys.executable, **(env or {})},
    )  # fmt: skip


def test_gpu_check_arguments():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    assert "stage1" in _run("--help").stdout
    bad = _run("nonsense")
    assert bad.returncode == 2 and "unknown argument 'nonsense'" in bad.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_gpu_check_stops_at_preflight_without_cuda(tmp_path):
    done = _run("extract", env={"OUT": str(tmp_path)}, timeout=300)
    assert done.returncode == 1
    assert "torch sees no CUDA device" in done.stdout + done.stderr
    assert "FAILED at step 'preflight'" in done.stderr
    assert (tmp_path / "gpu_check" / "preflight.log").is_file()  # collected even on failure


@pytest.mark.slow
def test_gpu_check_dry_run_on_cpu(tmp_path):
    """Every step at tiny size on the CPU (issue 15 item 8's slow test); BENCHMARKS.md untouched."""
    before = (REPO / "BENCHMARKS.md").read_text()
    done = _run("--dry-run", env={"OUT": str(tmp_path)}, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "all steps passed" in done.stdout
    assert (REPO / "BENCHMARKS.md").read_text() == before
    rows = json.loads((tmp_path / "gpu_check" / "stage1_step.json").read_text())
    assert {r["strategy"] for r in rows} == {"none", "zero2"}
