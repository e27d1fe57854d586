"""Official-format C2SER-LLM checkpoint -> c2ser: key map, checks, and logits parity (1e-4).

The reference below recomputes the release's eval-mode forward from the official key names with
plain torch ops (wenet encoder, gxl downsampler, wenet connector, BOS/EOS rows, LoRA merged as
W + alpha/r * B @ A) in the release's training layout (each block right-padded, holes in the
attention mask, positions = cumsum(mask) - 1), and the converted model must match it.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
import yaml

from c2ser.convert.c2ser_llm import convert
from c2ser.core.errors import BadInputError
from c2ser.models.c2ser_llm import C2SER
from tests.factories import make_tiny_qwen2

D, HEADS, ENC_FFN, CONN_FFN, LAYERS, SPEECH_TOKENS, R, ALPHA = 64, 4, 128, 96, 2, 4097, 8, 32
LLM = "llama_model.base_model.model."
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "down_proj")


def _whisper_pe(length: int, d: int) -> torch.Tensor:
    inc = math.log(10000) / (d // 2 - 1)
    t = torch.arange(length)[:, None] * torch.exp(-inc * torch.arange(d // 2))[None]
    return torch.cat([t.sin(), t.cos()], 1)[None].bfloat16().float()  # stored bf16-rounded


def _wenet_pe(length: int, d: int) -> torch.Tensor:
    pos = torch.arange(length)[:, None]
    div = torch.exp(torch.arange(0, d, 2) * -(math.log(10000.0) / d))
    pe = torch.zeros(length, d)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
    return pe[None].bfloat16().float()


def official_state(qwen, old_peft: bool, seed: int = 0) -> OrderedDict:
    g = torch.Generator().manual_seed(seed)

    def w(*shape):
        return torch.randn(shape, generator=g) / math.sqrt(shape[-1] if len(shape) > 1 else 10)

    def norm(prefix):
        return {f"{prefix}.weight": 1 + 0.1 * torch.randn(D, generator=g), f"{prefix}.bias": w(D)}

    def block(prefix, ffn, key_bias):
        sd = {}
        for name in ("q", "k", "v", "out"):
            sd[f"{prefix}.self_attn.linear_{name}.weight"] = w(D, D)
            if name != "k" or key_bias:
                sd[f"{prefix}.self_attn.linear_{name}.bias"] = w(D)
        sd |= {
            f"{prefix}.feed_forward.w_1.weight": w(ffn, D),
            f"{prefix}.feed_forward.w_1.bias": w(ffn),
        }
        sd |= {
            f"{prefix}.feed_forward.w_2.weight": w(D, ffn),
            f"{prefix}.feed_forward.w_2.bias": w(D),
        }
        return sd | norm(f"{prefix}.norm1") | norm(f"{prefix}.norm2")

    sd = OrderedDict()
    sd |= {"encoder.embed.conv.0.weight": w(D, 80, 3), "encoder.embed.conv.0.bias": w(D)}
    sd |= {"encoder.embed.conv.2.weight": w(D, D, 3), "encoder.embed.conv.2.bias": w(D)}
    sd["encoder.embed.pos_enc.pe"] = _whisper_pe(1500, D)
    sd |= norm("encoder.after_norm")
    for i in range(LAYERS):
        sd |= block(f"encoder.encoders.{i}", ENC_FFN, key_bias=False)
    sd |= norm("ln_speech")
    sd |= {
        "speech_transformer.embed.out.0.weight": w(D, D),
        "speech_transformer.embed.out.0.bias": w(D),
    }
    sd |= norm("speech_transformer.embed.out.1")
    sd["speech_transformer.embed.pos_enc.pe"] = _wenet_pe(5000, D)
    sd |= norm("speech_transformer.after_norm")
    for i in range(LAYERS):
        sd |= block(f"speech_transformer.encoders.{i}", CONN_FFN, key_bias=True)
    for key, t in qwen.state_dict().items():
        module = key.rsplit(".", 2)[-2]
        if module in TARGETS:
            path, leaf = key.rsplit(".", 1)
            sd[f"{LLM}{path}{'' if old_peft else '.base_layer'}.{leaf}"] = t.clone()
            if leaf == "weight":
                sd[f"{LLM}{path}.lora_A.default.weight"] = w(R, t.shape[1])
                sd[f"{LLM}{path}.lora_B.default.weight"] = 0.5 * w(t.shape[0], R)
        else:
            sd[LLM + key] = t.clone()
    for i in (1, 4, 7):
        sd |= {f"down_sample_2.conv.{i}.weight": w(D, D, 3), f"down_sample_2.conv.{i}.bias": w(D)}
    hidden = qwen.config.hidden_size
    sd |= {"speech_llama_proj.weight": w(hidden, D), "speech_llama_proj.bias": w(hidden)}
    sd["embed_tokens.weight"] = sd[LLM + "model.embed_tokens.weight"]  # aliases, as released
    sd["lm_head.weight"] = sd[LLM + "lm_head.weight"]
    sd["speech_token_emded.weight"] = w(SPEECH_TOKENS + 2, hidden)
    sd |= {"speaker_head.weight": w(SPEECH_TOKENS, hidden), "speaker_head.bias": w(SPEECH_TOKENS)}
    return sd


# ----------------------------------------------------------------------------- reference forward
def _ln(x, sd, p):
    return F.layer_norm(x, x.shape[-1:], sd[f"{p}.weight"], sd[f"{p}.bias"], eps=1e-5)


def _lin(x, sd, p):
    return F.linear(x, sd[f"{p}.weight"], sd.get(f"{p}.bias"))


def _wenet_block(x, sd, p, heads, act):
    h = _ln(x, sd, f"{p}.norm1")
    q, k, v = (_lin(h, sd, f"{p}.self_attn.linear_{n}") for n in "qkv")
    q, k, v = (t.view(t.shape[0], heads, -1).transpose(0, 1) for t in (q, k, v))
    att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), -1) @ v
    x = x + _lin(att.transpose(0, 1).reshape(x.shape), sd, f"{p}.self_attn.linear_out")
    h = _ln(x, sd, f"{p}.norm2")
    return x + _lin(act(_lin(h, sd, f"{p}.feed_forward.w_1")), sd, f"{p}.feed_forward.w_2")


def official_speech(sd, mel, ssl):
    """One utterance, batch 1 (as the release's inference): (T, 80), (10, <=D) -> (10+T/8, H)."""
    x = F.gelu(
        F.conv1d(
            mel.T[None],
            sd["encoder.embed.conv.0.weight"],
            sd["encoder.embed.conv.0.bias"],
            padding=1,
        )
    )
    x = F.gelu(
        F.conv1d(
            x,
            sd["encoder.embed.conv.2.weight"],
            sd["encoder.embed.conv.2.bias"],
            stride=2,
            padding=1,
        )
    )
    x = x[0].T + sd["encoder.embed.pos_enc.pe"][0, : x.shape[-1]]
    for i in range(LAYERS):
        x = _wenet_block(x, sd, f"encoder.encoders.{i}", HEADS, F.gelu)
    x = _ln(x, sd, "encoder.after_norm").T[None]
    for i, stride in ((1, 1), (4, 2), (7, 2)):
        x = F.gelu(F.conv1d(F.pad(x, (2, 0)), sd[f"down_sample_2.conv.{i}.weight"],
                            sd[f"down_sample_2.conv.{i}.bias"], stride=stride))  # fmt: skip
    x = torch.cat([F.pad(ssl, (0, D - ssl.shape[-1])), x[0].T])
    x = _ln(_lin(x, sd, "speech_transformer.embed.out.0"), sd, "speech_transformer.embed.out.1")
    x = x * math.sqrt(D) + sd["speech_transformer.embed.pos_enc.pe"][0, : len(x)]
    for i in range(LAYERS):
        x = _wenet_block(x, sd, f"speech_transformer.encoders.{i}", 4, F.relu)
    return _lin(_ln(x, sd, "speech_transformer.after_norm"), sd, "speech_llama_proj")


def official_logits(sd, qwen_config, mels, ssls, prompts, targets):
    """The release's LLM call: right-padded blocks with holes, positions cumsum - 1 (pads 1)."""
    from transformers import Qwen2ForCausalLM

    base = {}
    for key, t in sd.items():
        if key.startswith(LLM) and "lora_" not in key:
            base[key[len(LLM) :].replace(".base_layer", "")] = t.clone()
    for key in [k for k in sd if ".lora_A." in k]:
        path = key[len(LLM) :].split(".lora_A.")[0]
        b = sd[key.replace("lora_A", "lora_B")]
        base[f"{path}.weight"] += ALPHA / R * b @ sd[key]
    llm = Qwen2ForCausalLM._from_config(qwen_config, attn_implementation="eager").eval()
    llm.load_state_dict(base)
    embed = llm.get_input_embeddings()
    speech = [official_speech(sd, m, s) for m, s in zip(mels, ssls)]
    bos, eos = sd["speech_token_emded.weight"][[SPEECH_TOKENS, SPEECH_TOKENS + 1]].split(1)

    def block(items, pad_embed):
        n = max(len(t) for t in items)
        rows = [torch.cat([t, pad_embed.expand(n - len(t), -1)]) for t in items]
        return torch.stack(rows), torch.tensor([[1] * len(t) + [0] * (n - len(t)) for t in items])

    eod = embed(torch.tensor([151643 % qwen_config.vocab_size]))
    p, pm = block([embed(torch.tensor(x)) for x in prompts], eod)
    s, sm = block(speech, torch.zeros(1, speech[0].shape[-1]))
    t, tm = block([embed(torch.tensor(x)) for x in targets], embed(torch.tensor([0])))
    ones = torch.ones(len(prompts), 1, dtype=torch.long)
    b2 = lambda e: e.expand(len(prompts), 1, -1)  # noqa: E731
    embeds = torch.cat([p, b2(bos), s, b2(eos), t], 1)
    mask = torch.cat([pm, ones, sm, ones, tm], 1)
    pos = (mask.cumsum(1) - 1).masked_fill(mask == 0, 1)
    logits = llm(inputs_embeds=embeds, attention_mask=mask, position_ids=pos).logits
    return [logits[i][mask[i].bool()] for i in range(len(prompts))]


# ----------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    from transformers import AutoModelForCausalLM

    path = make_tiny_qwen2(tmp_path_factory.mktemp("llm") / "qwen2", hidden=64, layers=2,
                           vocab_size=512, tie_word_embeddings=False, bos_token_id=0, eos_token_id=0)  # fmt: skip
    return path, AutoModelForCausalLM.from_pretrained(path)


def _write(tmp_path, sd):
    ckpt, conf = tmp_path / "C2SER_llm.pt", tmp_path / "config.yaml"
    torch.save(sd, ckpt)
    conf.write_text(yaml.safe_dump({
        "llm_path": "Qwen/Qwen2-7B", "lora_rank": R, "lora_alpha": ALPHA, "lora_dropout": 0.1,
        "speech_token_num": SPEECH_TOKENS, "encoder_conf": {"attention_heads": HEADS, "dropout_rate": 0.1},
    }))  # fmt: skip
    return ckpt, conf


@pytest.mark.parametrize("old_peft", [False, True], ids=["peft>=0.7", "peft<0.7"])
def test_converted_logits_match_the_official_forward(tmp_path, qwen, old_peft):
    llm_dir, qwen_model = qwen
    sd = official_state(qwen_model, old_peft)
    ckpt, conf = _write(tmp_path, sd)
    out = convert(ckpt, conf, tmp_path / "out", llm_dir=llm_dir, dtype="float32")
    model = C2SER.from_pretrained(out).eval()
    assert model.config.encoder_layers == LAYERS and model.config.connector_ffn == CONN_FFN
    assert (model.config.lora_r, model.config.lora_alpha) == (R, ALPHA)

    g = torch.Generator().manual_seed(1)
    lengths = (173, 90)
    mels = [torch.randn(n, 80, generator=g) for n in lengths]
    ssls = [torch.randn(10, D, generator=g) for _ in lengths]
    prompts, targets = [[5, 6, 7, 8], [9, 10]], [[11, 12, 13, 151643 % 512], [14, 151643 % 512]]
    with torch.no_grad():
        ref = official_logits(sd, qwen_model.config, mels, ssls, prompts, targets)
        mel = torch.nn.utils.rnn.pad_sequence(mels, batch_first=True)
        mask = torch.arange(mel.shape[1])[None] >= torch.tensor(lengths)[:, None]
        ours = model(mel, mask, torch.stack(ssls), prompts, targets, return_logits=True).logits
    for i, r in enumerate(ref):
        assert (ours[i, : len(r)] - r).abs().max() <= 1e-4


def test_key_errors_are_loud(tmp_path, qwen):
    llm_dir, qwen_model = qwen
    sd = official_state(qwen_model, old_peft=False)
    bad = OrderedDict(sd)
    del bad["encoder.encoders.1.norm2.bias"]
    ckpt, conf = _write(tmp_path, bad)
    with pytest.raises(
        BadInputError, match=r"missing \['encoder.layers.1.final_layer_norm.bias'\]"
    ):
        convert(ckpt, conf, tmp_path / "a", llm_dir=llm_dir)
    ckpt, conf = _write(tmp_path, OrderedDict(sd, **{"decoder.embed.weight": torch.zeros(2)}))
    with pytest.raises(
        BadInputError, match=r"unexpected keys in checkpoint: \['decoder.embed.weight'\]"
    ):
        convert(ckpt, conf, tmp_path / "b", llm_dir=llm_dir)
    ckpt, conf = _write(tmp_path, OrderedDict(sd, **{"speech_llama_proj.bias": torch.zeros(3)}))
    with pytest.raises(ValueError, match="shape mismatch"):
        convert(ckpt, conf, tmp_path / "c", llm_dir=llm_dir)
    ckpt, conf = _write(tmp_path, sd)
    with pytest.raises(ValueError, match="not Qwen2-7B-shaped; pass --llm"):
        convert(ckpt, conf, tmp_path / "d")
    assert not any(p.name.startswith((".a", ".b", ".c", ".d")) for p in tmp_path.iterdir())


def test_cli_writes_bf16_directory(tmp_path, qwen):
    from c2ser.cli.main import main

    llm_dir, qwen_model = qwen
    ckpt, conf = _write(tmp_path, official_state(qwen_model, old_peft=False))
    out = tmp_path / "conv"
    argv = ["convert", "c2ser-llm", "--checkpoint", str(ckpt), "--config", str(conf),
            "--out", str(out), "--llm", str(llm_dir)]  # fmt: skip
    assert main(argv) == 0
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert f.get_tensor("speech_embed.weight").dtype == torch.bfloat16
        assert not any("speaker_head" in k or "ln_speech" in k for k in f.keys())  # noqa: SIM118
    assert (out / "llm" / "tokenizer.json").is_file()
    model = C2SER.from_pretrained(out, llm_dtype="float32")
    assert model.trainable_groups()[0] == "encoder"
    assert main(argv) == 2  # exists and is not empty: one error line
