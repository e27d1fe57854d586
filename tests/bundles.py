"""A model bundle built the way a user builds one from the release: official-format tiny
checkpoints (a C2SER_llm.pt state dict + config.yaml, an Emotion2Vec-S fairseq checkpoint.pt),
converted with ``c2ser convert``. Shared by the pipeline, predict and bundle tests."""

from __future__ import annotations

from pathlib import Path

from c2ser.convert.c2ser_llm import convert_bundle
from c2ser.convert.emotion2vec_s import convert as convert_e2vs
from tests.convert.test_c2ser_llm_convert import D, _write, official_state
from tests.convert.test_emotion2vec_s_convert import fairseq_cfg, official_state_dict, save_official
from tests.factories import make_tiny_qwen2

E2VS_HEADS = 4


def official_checkpoints(tmp: Path) -> dict[str, Path]:
    """Paths of the released-format files: ``checkpoint``, ``config``, ``llm``, ``emotion2vec``
    (converted: the C2SER-LLM converter takes the Emotion2Vec-S directory)."""
    from transformers import AutoModelForCausalLM

    llm = make_tiny_qwen2(tmp / "qwen2", tie_word_embeddings=False)
    qwen = AutoModelForCausalLM.from_pretrained(llm)
    ckpt, conf = _write(tmp, official_state(qwen, old_peft=False))
    e2vs_pt = save_official(
        tmp / "emotion2vec_s.pt",
        official_state_dict(dim=D, heads=E2VS_HEADS),
        fairseq_cfg(dim=D, heads=E2VS_HEADS),
    )
    e2vs = convert_e2vs(e2vs_pt, tmp / "e2vs")
    return {"checkpoint": ckpt, "config": conf, "llm": llm, "emotion2vec": e2vs}


def official_bundle(tmp: Path) -> Path:
    """``c2ser convert c2ser-llm ... --emotion2vec`` of :func:`official_checkpoints`, float32."""
    files = official_checkpoints(tmp)
    return convert_bundle(
        files["checkpoint"], files["config"], tmp / "bundle", files["emotion2vec"],
        llm_dir=files["llm"], dtype="float32",
    )  # fmt: skip
