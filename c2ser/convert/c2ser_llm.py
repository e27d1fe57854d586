"""Official ``C2SER_llm.pt`` (+ its ``config.yaml``) -> a :class:`C2SER` ``from_pretrained`` directory.

The release is a flat bf16 state dict of the whole wenet ``LLMASR_Model`` (1128 keys, 16 GB,
including every Qwen2-7B weight). Output::

    out_dir/config.json         C2SERConfig (sizes read from the tensors, LoRA from config.yaml)
    out_dir/model.safetensors   speech side + LoRA, in c2ser names
    out_dir/llm/                the base Qwen2 as a plain transformers directory (sharded
                                safetensors + config + tokenizer), LoRA kept unmerged for parity

Key map (spec section 6): wenet encoder -> transformers ``WhisperEncoder`` names, ``down_sample_2``
-> ``downsampler``, ``speech_transformer`` -> ``connector``, ``speech_llama_proj`` -> ``projection``,
``speech_token_emded`` rows ``speech_token_num`` + (0, 1) -> ``speech_embed`` (BOS, EOS),
``llama_model.base_model.model.*`` -> ``llm.*`` with or without peft's ``.base_layer`` (pre-0.7
naming) and with or without the ``.default`` adapter name. Dropped on purpose: the top-level
``embed_tokens``/``lm_head`` aliases, ``ln_speech`` and ``speaker_head`` (never used for text).
Any other unmapped key, and any expected key or shape not found, is an error.

Memory: the checkpoint is memory-mapped by the safe unpickler (no pickled code runs) and tensors
are written shard by shard, so peak RAM is about one 2 GB shard, not the 16 GB file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from c2ser.convert.safe_pickle import load_checkpoint
from c2ser.core.errors import BadInputError, reading
from c2ser.core.io import atomic_directory, atomic_write_path
from c2ser.models.bundle import C2SER_SUBDIR, check_empty, complete_bundle
from c2ser.models.c2ser_llm import C2SER, C2SERConfig
from c2ser.models.checkpoint import LLM_SUBDIR, config_dict, is_base_llm_key, write_model_files

LLM_PREFIX = "llama_model.base_model.model."
DROPPED = re.compile(r"^(embed_tokens\.weight|lm_head\.weight|ln_speech\..*|speaker_head\..*)$")
SHARD_BYTES = 2 * 1024**3

_WENET_BLOCK = [  # wenet encoder-layer names -> (whisper encoder, connector) names
    (r"self_attn\.linear_(q|k|v)\.", r"self_attn.\2_proj.", r"attn.\2."),  # \1: layer
    (r"self_attn\.linear_out\.", "self_attn.out_proj.", "attn.out."),
    (r"norm1\.", "self_attn_layer_norm.", "attn_norm."),
    (r"norm2\.", "final_layer_norm.", "ffn_norm."),
    (r"feed_forward\.w_1\.", "fc1.", "ffn.0."),
    (r"feed_forward\.w_2\.", "fc2.", "ffn.3."),
]
RULES: list[tuple[str, str]] = [
    (r"encoder\.embed\.conv\.0\.", "encoder.conv1."),
    (r"encoder\.embed\.conv\.2\.", "encoder.conv2."),
    (r"encoder\.after_norm\.", "encoder.layer_norm."),
    (r"speech_transformer\.embed\.out\.0\.", "connector.input_proj."),
    (r"speech_transformer\.embed\.out\.1\.", "connector.input_norm."),
    (r"speech_transformer\.embed\.pos_enc\.pe$", "connector.pe"),
    (r"speech_transformer\.after_norm\.", "connector.norm."),
    (r"down_sample_2\.conv\.(\d+)\.", r"downsampler.conv.\1."),
    (r"speech_llama_proj\.", "projection."),
    *[(rf"encoder\.encoders\.(\d+)\.{a}", rf"encoder.layers.\1.{w}") for a, w, _ in _WENET_BLOCK],
    *[(rf"speech_transformer\.encoders\.(\d+)\.{a}", rf"connector.blocks.\1.{c}")
      for a, _, c in _WENET_BLOCK],
]  # fmt: skip

# Qwen2-7B (the release's llm_path), used when no --llm directory is given and shapes match.
QWEN2_7B: dict[str, Any] = dict(
    model_type="qwen2", architectures=["Qwen2ForCausalLM"], vocab_size=152064, hidden_size=3584,
    intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
    max_position_embeddings=131072, max_window_layers=28, sliding_window=131072,
    use_sliding_window=False, rope_theta=1_000_000.0, rms_norm_eps=1e-6, hidden_act="silu",
    initializer_range=0.02, attention_dropout=0.0, tie_word_embeddings=False,
    bos_token_id=151643, eos_token_id=151643, use_cache=True,
)  # fmt: skip


def convert(
    checkpoint: str | os.PathLike,
    config_yaml: str | os.PathLike,
    out_dir: str | os.PathLike,
    llm_dir: str | os.PathLike | None = None,
    dtype: str = "bfloat16",
) -> Path:
    """Convert the release into ``out_dir`` (must not exist or be empty); returns its path.

    ``llm_dir`` (a local Qwen2 directory) supplies the LLM config when the checkpoint's LLM is
    not Qwen2-7B-shaped. Every check runs before anything is written, and the directory is
    assembled under a temporary name and renamed into place, so a failure leaves nothing behind.
    """
    import yaml

    out = Path(out_dir)
    check_empty(out)
    with reading(config_yaml, "C2SER-LLM config.yaml"):
        yaml_cfg = yaml.safe_load(Path(config_yaml).read_text()) or {}
        if not isinstance(yaml_cfg, dict):
            raise ValueError(f"expected a mapping, got {type(yaml_cfg).__name__}")
    with reading(checkpoint, "C2SER-LLM checkpoint"):
        state = load_checkpoint(checkpoint)
        if not isinstance(state, dict) or "speech_llama_proj.weight" not in state:
            raise BadInputError(
                f"{checkpoint}: not a C2SER-LLM state dict (no speech_llama_proj.weight)"
            )
        llm_config = _llm_config(state, llm_dir)
        cfg = _c2ser_config(state, yaml_cfg, llm_config, dtype)
        mapped = _map_keys(state, int(yaml_cfg.get("speech_token_num", 4097)))
        _check(state, mapped, cfg)

    with atomic_directory(out) as tmp:
        to = getattr(torch, dtype)
        speech = {
            k: _fetch(state, src).to(to) for k, src in mapped.items() if not is_base_llm_key(k)
        }
        write_model_files(tmp, config_dict(cfg, llm_path=LLM_SUBDIR, llm_config=None), speech)
        del speech
        _write_llm(state, mapped, llm_config, tmp / LLM_SUBDIR, to)
    return out


def convert_bundle(
    checkpoint: str | os.PathLike,
    config_yaml: str | os.PathLike,
    out_dir: str | os.PathLike,
    emotion2vec: str | os.PathLike,
    llm_dir: str | os.PathLike | None = None,
    dtype: str = "bfloat16",
) -> Path:
    """Convert the release into a model bundle (:mod:`c2ser.models.bundle`) with its
    Emotion2Vec-S (a directory from ``c2ser convert emotion2vec-s``): what ``c2ser predict``
    and the Python pipeline load. The release read the first 10 Emotion2Vec-S frames
    (``official`` utterance features), which the bundle records."""
    out = Path(out_dir)
    check_empty(out)
    source = {
        "kind": "converted from the official C2SER release",
        "checkpoint": Path(checkpoint).name,
        "config": Path(config_yaml).name,
        "emotion2vec": str(emotion2vec),
        "llm": str(llm_dir) if llm_dir else None,
        "dtype": dtype,
    }
    with atomic_directory(out) as tmp:
        convert(checkpoint, config_yaml, tmp / C2SER_SUBDIR, llm_dir, dtype)
        complete_bundle(tmp, emotion2vec, source, utterance_mode="official")
    return out


Source = tuple[str, Callable[[torch.Tensor], torch.Tensor] | None]


def _map_keys(state: dict[str, Any], speech_token_num: int) -> dict[str, Source]:
    """c2ser key -> (official key, optional transform); unknown official keys are an error."""
    mapped: dict[str, Source] = {}
    unexpected = []
    rows = [speech_token_num, speech_token_num + 1]  # BOS, EOS
    for key in state:
        if DROPPED.match(key):
            continue
        if key == "encoder.embed.pos_enc.pe":
            mapped["encoder.embed_positions.weight"] = (key, lambda t: t[0])
        elif key == "speech_token_emded.weight":
            mapped["speech_embed.weight"] = (key, lambda t: t[rows])
        elif key.startswith(LLM_PREFIX):
            mapped[_llm_key(key[len(LLM_PREFIX) :])] = (key, None)
        else:
            for pattern, target in RULES:
                if re.match(pattern, key):
                    mapped[re.sub(pattern, target, key, count=1)] = (key, None)
                    break
            else:
                unexpected.append(key)
    if unexpected:
        raise KeyError(
            f"unexpected keys in checkpoint: {unexpected[:10]} ({len(unexpected)} total)"
        )
    return mapped


def _llm_key(key: str) -> str:
    """c2ser key of an LLM tensor (peft >= 0.7 names minus ``.base_layer``; see :func:`_check`)."""
    lora = re.match(r"(.*)\.(lora_[AB])(?:\.default)?\.weight$", key)
    if lora:
        return f"llm.base_model.model.{lora[1]}.{lora[2]}.default.weight"
    return "llm.base_model.model." + key.replace(".base_layer", "")


def _fetch(state: dict[str, Any], src: Source) -> torch.Tensor:
    key, transform = src
    return transform(state[key]) if transform else state[key]


def _check(state: dict[str, Any], mapped: dict[str, Source], cfg: C2SERConfig) -> None:
    """Compare names and shapes with a C2SER built on the meta device (no memory used)."""
    with torch.device("meta"):
        model = C2SER(cfg)
    expected = {k.replace(".base_layer", ""): v.shape for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(mapped))
    unexpected = sorted(set(mapped) - set(expected))
    if missing or unexpected:
        raise KeyError(
            f"checkpoint does not match the model: missing {missing[:8]} ({len(missing)}), "
            f"unexpected {unexpected[:8]} ({len(unexpected)})"
        )
    bad = [
        f"{k}: {tuple(_fetch(state, src).shape)} != {tuple(expected[k])}"
        for k, src in mapped.items()
        if _fetch(state, src).shape != expected[k]
    ]
    if bad:
        raise ValueError(f"shape mismatch ({len(bad)}): " + "; ".join(bad[:6]))


def _llm_config(state: dict[str, Any], llm_dir: str | os.PathLike | None) -> dict[str, Any]:
    if llm_dir is not None:
        path = Path(llm_dir) / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (--llm must be a Qwen2 directory)")
        return json.loads(path.read_text())
    vocab, hidden = state[LLM_PREFIX + "model.embed_tokens.weight"].shape
    layers = _count(state, re.escape(LLM_PREFIX) + r"model\.layers\.(\d+)\.")
    if (vocab, hidden, layers) != (QWEN2_7B["vocab_size"], QWEN2_7B["hidden_size"], 28):
        raise ValueError(
            f"the checkpoint's LLM (vocab {vocab}, hidden {hidden}, {layers} layers) is not "
            "Qwen2-7B-shaped; pass --llm DIR (a local Qwen2 directory) for its config"
        )
    return dict(QWEN2_7B)


def _count(state: dict[str, Any], pattern: str) -> int:
    return len({m[1] for k in state if (m := re.match(pattern, k))})


def _c2ser_config(
    state: dict[str, Any], yaml_cfg: dict[str, Any], llm_config: dict[str, Any], dtype: str
) -> C2SERConfig:
    """Sizes from tensor shapes; heads, LoRA scale and dropout from ``config.yaml``."""
    enc = yaml_cfg.get("encoder_conf", {})
    d, n_mels, _ = state["encoder.embed.conv.0.weight"].shape
    lora_a = {k: v for k, v in state.items() if re.search(r"\.lora_A(\.default)?\.weight$", k)}
    rank = next(iter(lora_a.values())).shape[0] if lora_a else 0
    if lora_a and int(yaml_cfg.get("lora_rank", rank)) != rank:
        raise ValueError(f"config.yaml lora_rank {yaml_cfg['lora_rank']} != checkpoint rank {rank}")
    targets = sorted({re.sub(r".*\.(\w+)\.lora_A.*", r"\1", k) for k in lora_a})
    return C2SERConfig(
        n_mels=n_mels,
        encoder_dim=d,
        encoder_layers=_count(state, r"encoder\.encoders\.(\d+)\."),
        encoder_heads=int(enc.get("attention_heads", 16)),
        encoder_ffn=state["encoder.encoders.0.feed_forward.w_1.weight"].shape[0],
        encoder_max_positions=state["encoder.embed.pos_enc.pe"].shape[1],
        connector_layers=_count(state, r"speech_transformer\.encoders\.(\d+)\."),
        connector_heads=4,  # hard-coded in the release's llmasr_model.py
        connector_ffn=state["speech_transformer.encoders.0.feed_forward.w_1.weight"].shape[0],
        connector_max_positions=state["speech_transformer.embed.pos_enc.pe"].shape[1],
        dropout=float(enc.get("dropout_rate", 0.1)),
        ssl_dim=min(768, d),  # Emotion2Vec-S rows are zero-padded to the encoder width
        llm_config=llm_config,
        llm_dtype=dtype,
        lora_r=rank,
        lora_alpha=int(yaml_cfg.get("lora_alpha", 32)),
        lora_dropout=float(yaml_cfg.get("lora_dropout", 0.1)),
        lora_targets=targets or list(C2SERConfig().lora_targets),
    )


def _write_llm(
    state: dict[str, Any],
    mapped: dict[str, Source],
    llm_config: dict[str, Any],
    out: Path,
    dtype: torch.dtype,
) -> None:
    """The base LLM as a transformers directory: 2 GB safetensors shards + index + config."""
    from safetensors.torch import save_file
    from transformers import AutoConfig

    from c2ser.data.tokenizer import load_tokenizer

    prefix = "llm.base_model.model."
    names = [k for k in mapped if k.startswith(prefix) and "lora_" not in k]
    if llm_config.get("tie_word_embeddings"):
        names.remove(prefix + "lm_head.weight")
    shards: list[list[str]] = [[]]
    size = 0
    for name in names:
        nbytes = _fetch(state, mapped[name]).numel() * dtype.itemsize
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
    out.mkdir(parents=True)
    weight_map, total = {}, 0
    for i, shard in enumerate(shards, 1):
        file = (
            "model.safetensors"
            if len(shards) == 1
            else f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        )
        tensors = {n[len(prefix) :]: _fetch(state, mapped[n]).to(dtype).contiguous() for n in shard}
        atomic_write_path(
            out / file, lambda p, t=tensors: save_file(t, str(p), metadata={"format": "pt"})
        )
        total += sum(t.numel() * t.element_size() for t in tensors.values())
        weight_map.update(dict.fromkeys(tensors, file))
        del tensors
    if len(shards) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    rest = {k: v for k, v in llm_config.items() if k not in ("model_type", "transformers_version")}
    config = AutoConfig.for_model(llm_config.get("model_type", "qwen2"), **rest)
    config.dtype = dtype
    config.save_pretrained(out)
    load_tokenizer().save_pretrained(out)
