"""Converter: a tiny checkpoint in the released fairseq format (key names and shapes of the spec,
cfg pickled as an omegaconf DictConfig) converts, loads, and matches a from-scratch reference
forward pass written directly against the fairseq keys."""

from __future__ import annotations

import enum
import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from c2ser.cli.main import main as cli
from c2ser.convert.emotion2vec_s import convert, parse_conv_spec
from c2ser.models.emotion2vec_s import Emotion2VecS

P = "modality_encoders.AUDIO."
CONV = [(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2
D, H, DEPTH, PRENET, E, POS_DEPTH, POS_K, GROUPS, DEC = 96, 12, 2, 1, 10, 2, 5, 4, 32


class Modality(enum.Enum):  # fairseq pickles its own enum; the safe unpickler keeps the value
    AUDIO = "AUDIO"


def fairseq_cfg(dim: int = D, heads: int = H, **audio_overrides):
    """The pickled fairseq cfg; ``dim`` / ``heads`` resize the model (e.g. to a C2SER's ssl_dim)."""
    audio = {
        "type": Modality.AUDIO,
        "prenet_depth": PRENET,
        "num_extra_tokens": E,
        "use_alibi_encoder": True,
        "learned_alibi_scale": True,
        "learned_alibi_scale_per_head": True,
        "learned_alibi_scale_per_layer": False,
        "learned_alibi": False,
        "extractor_mode": "layer_norm",
        "feature_encoder_spec": "[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32,2,2)] + [(32,2,2)]",
        "conv_pos_width": 10,
        "conv_pos_depth": POS_DEPTH,
        "conv_pos_groups": GROUPS,
        "conv_pos_pre_ln": False,
        "num_alibi_heads": "${model.num_heads}",
        "decoder": {"decoder_dim": DEC, "decoder_groups": GROUPS, "decoder_kernel": 7,
                    "decoder_layers": 2, "input_dropout": 0.1},
        **audio_overrides,
    }  # fmt: skip
    model = {
        "_name": "data2vec_multi",
        "depth": DEPTH,
        "num_heads": heads,
        "embed_dim": dim,
        "mlp_ratio": 4.0,
        "norm_eps": 1e-5,
        "layer_norm_first": False,
        "norm_affine": True,
        "modalities": {"audio": audio},
    }
    return OmegaConf.create({"model": model, "task": {"_name": "audio_pretraining"}})


def official_state_dict(seed: int = 0, dim: int = D, heads: int = H) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def w(*shape, fan_in=None):
        return torch.randn(shape, generator=g) / math.sqrt(fan_in or shape[-1])

    def norm(prefix, n):
        return {
            f"{prefix}.weight": 1 + 0.1 * w(n, fan_in=1),
            f"{prefix}.bias": 0.1 * w(n, fan_in=1),
        }

    def block(prefix):
        return {
            **norm(f"{prefix}.norm1", dim), **norm(f"{prefix}.norm2", dim),
            f"{prefix}.attn.qkv.weight": w(3 * dim, dim), f"{prefix}.attn.qkv.bias": 0.1 * w(3 * dim, fan_in=1),
            f"{prefix}.attn.proj.weight": w(dim, dim), f"{prefix}.attn.proj.bias": 0.1 * w(dim, fan_in=1),
            f"{prefix}.mlp.fc1.weight": w(4 * dim, dim), f"{prefix}.mlp.fc1.bias": 0.1 * w(4 * dim, fan_in=1),
            f"{prefix}.mlp.fc2.weight": w(dim, 4 * dim), f"{prefix}.mlp.fc2.bias": 0.1 * w(dim, fan_in=1),
        }  # fmt: skip

    sd: dict = {}
    c_in = 1
    for i, (c, k, _) in enumerate(CONV):
        sd[f"{P}local_encoder.conv_layers.{i}.0.weight"] = w(c, c_in, k, fan_in=c_in * k)
        sd.update(norm(f"{P}local_encoder.conv_layers.{i}.2.1", c))
        c_in = c
    sd.update(norm(f"{P}project_features.1", c_in))
    sd[f"{P}project_features.2.weight"] = w(dim, c_in)
    sd[f"{P}project_features.2.bias"] = 0.1 * w(dim, fan_in=1)
    for j in range(1, POS_DEPTH + 1):
        sd[f"{P}relative_positional_encoder.{j}.0.weight"] = w(dim, dim // GROUPS, POS_K)
        sd[f"{P}relative_positional_encoder.{j}.0.bias"] = 0.1 * w(dim, fan_in=1)
    sd[f"{P}extra_tokens"] = w(1, E, dim, fan_in=1)
    scale = 1 + 0.5 * w(heads, fan_in=1)
    scale[3] = -0.7  # a negative learned scale must be clamped to 0
    sd[f"{P}alibi_scale"] = scale.view(1, 1, heads, 1, 1)
    sd.update(norm(f"{P}context_encoder.norm", dim))
    for i in range(PRENET):
        sd.update(block(f"{P}context_encoder.blocks.{i}"))
    for i in range(DEPTH):
        sd.update(block(f"blocks.{i}"))
    for i, c in enumerate((dim, DEC)):  # decoder: dropped by the converter
        sd[f"{P}decoder.blocks.{i}.0.weight"] = w(DEC, c // GROUPS, 7)
        sd[f"{P}decoder.blocks.{i}.0.bias"] = w(DEC, fan_in=1)
    sd[f"{P}decoder.proj.weight"], sd[f"{P}decoder.proj.bias"] = w(dim, DEC), w(dim, fan_in=1)
    return sd


def save_official(path, sd=None, cfg=None, with_ema=True):
    sd = dict(official_state_dict() if sd is None else sd)
    if with_ema:
        sd["_ema"] = {"blocks.0.norm1.weight": torch.ones(D)}
    torch.save({"cfg": cfg or fairseq_cfg(), "model": sd, "optimizer_history": []}, path)
    return path


def reference_features(sd: dict, wav: torch.Tensor) -> torch.Tensor:
    """Straight-line Emotion2Vec-S forward (eval mode) over fairseq keys: (L,) -> (T, D)."""
    x = wav[None, None]
    for i, (c, _, s) in enumerate(CONV):
        x = F.conv1d(x, sd[f"{P}local_encoder.conv_layers.{i}.0.weight"], stride=s)
        ln = f"{P}local_encoder.conv_layers.{i}.2.1"
        x = F.layer_norm(x.transpose(1, 2), (c,), sd[f"{ln}.weight"], sd[f"{ln}.bias"])
        x = F.gelu(x).transpose(1, 2)
    x = x[0].T  # (T, C)
    x = F.layer_norm(x, x.shape[-1:], sd[f"{P}project_features.1.weight"],
                     sd[f"{P}project_features.1.bias"])  # fmt: skip
    x = x @ sd[f"{P}project_features.2.weight"].T + sd[f"{P}project_features.2.bias"]
    y = x.T[None]
    for j in range(1, POS_DEPTH + 1):
        pre = f"{P}relative_positional_encoder.{j}.0"
        y = F.conv1d(y, sd[f"{pre}.weight"], sd[f"{pre}.bias"], padding=POS_K // 2, groups=GROUPS)
        y = F.gelu(F.layer_norm(y.transpose(1, 2), (D,)).transpose(1, 2))
    x = x + y[0].T
    t = x.shape[0]

    slopes = torch.tensor([2.0**-i for i in range(1, 9)] + [2**-0.5, 2**-1.5, 2**-2.5, 2**-3.5])
    scale = sd[f"{P}alibi_scale"].flatten().clamp(min=0)
    dist = (torch.arange(t)[:, None] - torch.arange(t)[None, :]).abs().float()
    bias = torch.zeros(H, E + t, E + t)
    bias[:, E:, E:] = -(slopes * scale)[:, None, None] * dist

    def layer_norm(x, prefix):
        return F.layer_norm(x, (D,), sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], eps=1e-5)

    def block(x, p):
        q, k, v = (x @ sd[f"{p}.attn.qkv.weight"].T + sd[f"{p}.attn.qkv.bias"]).chunk(3, -1)
        q, k, v = (z.view(-1, H, D // H).transpose(0, 1) for z in (q, k, v))
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(D // H) + bias, -1)
        a = (att @ v).transpose(0, 1).reshape(-1, D)
        x = layer_norm(
            x + a @ sd[f"{p}.attn.proj.weight"].T + sd[f"{p}.attn.proj.bias"], f"{p}.norm1"
        )
        h = F.gelu(x @ sd[f"{p}.mlp.fc1.weight"].T + sd[f"{p}.mlp.fc1.bias"])
        return layer_norm(
            x + h @ sd[f"{p}.mlp.fc2.weight"].T + sd[f"{p}.mlp.fc2.bias"], f"{p}.norm2"
        )

    x = torch.cat([sd[f"{P}extra_tokens"][0], x])
    x = layer_norm(x, f"{P}context_encoder.norm")
    for i in range(PRENET):
        x = block(x, f"{P}context_encoder.blocks.{i}")
    for i in range(DEPTH):
        x = block(x, f"blocks.{i}")
    return x[E:]


@pytest.mark.parametrize("plain_cfg", [False, True], ids=["dictconfig", "plain-dict-cfg"])
def test_convert_matches_reference_forward(tmp_path, plain_cfg):
    cfg = fairseq_cfg()
    if plain_cfg:  # newer fairseq trainers store OmegaConf.to_container(cfg, enum_to_str=True)
        cfg = OmegaConf.to_container(cfg, enum_to_str=True)
    sd = official_state_dict()
    out = convert(save_official(tmp_path / "ckpt.pt", sd, cfg), tmp_path / "conv")
    model = Emotion2VecS.from_pretrained(out)
    c = model.config
    assert (c.dim, c.heads, c.depth, c.prenet_depth, c.num_extra_tokens) == (D, H, DEPTH, PRENET, E)
    assert c.conv_layers == tuple(CONV) and c.norm_eps == 1e-5 and c.decoder_dim == DEC

    wav = 0.1 * torch.randn(16000, generator=torch.Generator().manual_seed(1))
    ref = reference_features(sd, wav)
    with torch.inference_mode():
        got = model.extract_features(wav[None])
    assert got["x"].shape == (1, 49, D)
    torch.testing.assert_close(got["x"][0], ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got["utt_x"][0], ref[:10], atol=1e-4, rtol=1e-4)


def test_four_dim_alibi_scale_is_upgraded(tmp_path):
    sd = official_state_dict()
    sd[f"{P}alibi_scale"] = sd[f"{P}alibi_scale"][0]
    model = Emotion2VecS.from_pretrained(
        convert(save_official(tmp_path / "c.pt", sd), tmp_path / "o")
    )
    torch.testing.assert_close(
        model.alibi_scale, official_state_dict()[f"{P}alibi_scale"].flatten()
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda sd: sd.pop("blocks.1.mlp.fc2.bias"), "missing weights"),
        (lambda sd: sd.update({"blocks.0.attn.extra": torch.ones(1)}), "unexpected"),
        (lambda sd: sd.update({f"{P}mystery.weight": torch.ones(1)}), "unexpected"),
        (lambda sd: sd.update({f"{P}extra_tokens": torch.ones(1, E, D + 1)}), "shape"),
    ],
)
def test_bad_keys_fail_loudly(tmp_path, change, message):
    sd = official_state_dict()
    change(sd)
    with pytest.raises(ValueError, match=message):
        convert(save_official(tmp_path / "c.pt", sd), tmp_path / "o")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "override, name",
    [({"num_extra_tokens": 0}, "num_extra_tokens"), ({"use_alibi_encoder": False}, "alibi")],
)
def test_unsupported_cfg_is_refused(tmp_path, override, name):
    with pytest.raises(ValueError, match=name):
        convert(save_official(tmp_path / "c.pt", cfg=fairseq_cfg(**override)), tmp_path / "o")


def test_conv_spec_parser_evaluates_no_code():
    assert (
        parse_conv_spec("[(512, 10, 5)] + [(512, 3, 2)] * 2") == [(512, 10, 5)] + [(512, 3, 2)] * 2
    )
    with pytest.raises(ValueError):
        parse_conv_spec("[__import__('os').system('true')]")


def test_cli(tmp_path, capsys):
    ckpt = save_official(tmp_path / "c.pt")
    assert cli(["convert", "emotion2vec-s", str(ckpt), str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert "wrote" in capsys.readouterr().out
