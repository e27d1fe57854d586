"""C2SER-LLM on a tiny CPU model: layout, loss masking, batching invariance, ablations, I/O."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from c2ser.core.tokens import EOD_ID
from c2ser.models.c2ser_llm import C2SER, OFFICIAL_GROUPS
from c2ser.models.checkpoint import trainable_state
from tests.factories import make_tiny_qwen2
from tests.models.conftest import make_batch, make_tiny_c2ser

KEYS = ("mel", "mel_mask", "ssl", "prompt_ids")


def _inputs(batch, i=None):
    if i is None:
        return [batch[k] for k in KEYS]
    n = int((~batch["mel_mask"][i]).sum())
    return [batch["mel"][i : i + 1, :n], batch["mel_mask"][i : i + 1, :n], batch["ssl"][i : i + 1],
            batch["prompt_ids"][i : i + 1]]  # fmt: skip


def test_layout_labels_and_positions(tiny_c2ser):
    batch = make_batch()
    speech, lengths = tiny_c2ser.encode_speech(batch["mel"], batch["mel_mask"], batch["ssl"])
    assert lengths.tolist() == [10 + -(-n // 8) for n in (300, 157, 220)]  # ssl + ceil(T/8)
    embeds, mask, pos, labels = tiny_c2ser.assemble(
        speech, lengths, batch["prompt_ids"], batch["target_ids"]
    )
    bos, eos = tiny_c2ser.speech_embed.weight
    word = tiny_c2ser.llm.get_input_embeddings()
    for b, (p, t) in enumerate(zip(batch["prompt_ids"], batch["target_ids"])):
        n, s = len(p), int(lengths[b])
        assert torch.equal(embeds[b, :n], word(torch.tensor(p)))
        assert torch.equal(embeds[b, n], bos) and torch.equal(embeds[b, n + 1 + s], eos)
        assert torch.equal(embeds[b, n + 1 : n + 1 + s], speech[b, :s])
        total = n + s + 2 + len(t)
        assert mask[b].tolist() == [1] * total + [0] * (mask.shape[1] - total)
        assert pos[b, :total].tolist() == list(range(total))
        assert labels[b, n + s + 2 : total].tolist() == t and t[-1] == EOD_ID
        assert (labels[b, : n + s + 2] == -100).all() and (labels[b, total:] == -100).all()
    _left, lmask, lpos, _ = tiny_c2ser.assemble(speech, lengths, batch["prompt_ids"], left_pad=True)
    for b in range(3):
        valid = int(lmask[b].sum())
        assert lmask[b, -valid:].all() and lpos[b, -valid:].tolist() == list(range(valid))


def test_loss_is_token_mean_over_targets_only(tiny_c2ser):
    batch = make_batch()
    out = tiny_c2ser(*_inputs(batch), batch["target_ids"], return_logits=True)
    speech, lengths = tiny_c2ser.encode_speech(batch["mel"], batch["mel_mask"], batch["ssl"])
    _, _, _, labels = tiny_c2ser.assemble(speech, lengths, batch["prompt_ids"], batch["target_ids"])
    ref = F.cross_entropy(
        out.logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100
    )
    assert torch.allclose(out.loss, ref, atol=1e-5)
    assert (labels != -100).sum() == sum(len(t) for t in batch["target_ids"])


def test_rows_are_independent_of_batching(tiny_c2ser):
    """A padded batch row gives the logits of the same utterance run alone (encoder incl.)."""
    batch = make_batch()
    full = tiny_c2ser(*_inputs(batch), batch["target_ids"], return_logits=True).logits
    for i in range(3):
        one = tiny_c2ser(*_inputs(batch, i), batch["target_ids"][i : i + 1], return_logits=True)
        n = one.logits.shape[1]
        torch.testing.assert_close(full[i, :n], one.logits[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("beams", [1, 3])
def test_batched_generation_equals_one_at_a_time(tiny_c2ser, beams):
    batch = make_batch(targets=False)
    batched = tiny_c2ser.generate(*_inputs(batch), max_new_tokens=12, num_beams=beams)
    single = [
        tiny_c2ser.generate(*_inputs(batch, i), max_new_tokens=12, num_beams=beams)[0]
        for i in range(3)
    ]
    assert batched == single
    assert len({tuple(r) for r in batched}) == 3 and all(len(r) == 12 for r in batched)


def test_generation_depends_on_the_speech(tiny_c2ser):
    """One prompt for every row: the answers differ with the audio (mel) and with the
    Emotion2Vec-S features (ssl) alone, and repeat for identical inputs."""
    batch, other = (make_batch(lengths=(120, 120), seed=s, targets=False) for s in (0, 1))
    prompts = [[9707, 13]] * 2

    def answers(mel, ssl):
        return tiny_c2ser.generate(mel, batch["mel_mask"], ssl, prompts, max_new_tokens=6)

    base = answers(batch["mel"], batch["ssl"])
    assert base[0] != base[1]  # two utterances, one prompt
    assert answers(batch["mel"], batch["ssl"]) == base
    assert answers(other["mel"], batch["ssl"]) != base  # the audio alone
    assert answers(batch["mel"], other["ssl"]) != base  # the features alone


def test_inference_prompts_with_the_stage_asked_for(tmp_path, wav_file, monkeypatch):
    """``run_inference(stage=s)`` generates from the Stage s prompt: the prompt ids reaching the
    model are that prompt's, and Stage 1 and Stage 2 give different answers to the same audio."""
    import json

    from c2ser.core.prompts import prompt_for
    from c2ser.data.manifest import Utterance
    from c2ser.data.tokenizer import load_tokenizer
    from c2ser.inference.generate import run_inference

    utts = [Utterance(f"u{i}", str(wav_file(f"u{i}.wav", 0.6 + 0.2 * i, freq=150 + 90 * i)),
                      "happy", language="en") for i in range(2)]  # fmt: skip
    model = make_tiny_c2ser(use_ssl=False).eval()
    prompts, generate = [], model.generate

    def spy(mel, mel_mask, ssl, prompt_ids, **kw):
        prompts.extend(prompt_ids)
        return generate(mel, mel_mask, ssl, prompt_ids, **kw)

    monkeypatch.setattr(model, "generate", spy)
    tok = load_tokenizer()
    texts = {}
    for stage in (1, 2):
        out = tmp_path / f"stage{stage}.jsonl"
        run_inference(model, utts, out, stage=stage, max_new_tokens=6, progress=False)
        rows = sorted((json.loads(line) for line in out.read_text().splitlines()),
                      key=lambda r: r["index"])  # fmt: skip
        texts[stage] = [r["text"] for r in rows]
        want = tok.encode(prompt_for(stage), add_special_tokens=False)
        assert prompts and all(p == want for p in prompts), stage
        prompts.clear()
    assert all(a != b for a, b in zip(texts[1], texts[2], strict=True)), texts


def test_official_beam_sampling_is_seeded(tiny_c2ser):
    batch = make_batch(lengths=(120, 80), targets=False)
    kw = dict(max_new_tokens=8, num_beams=4, do_sample=True, top_p=0.0, top_k=0,
              repetition_penalty=1.05)  # fmt: skip
    runs = []
    for _ in range(2):
        torch.manual_seed(7)
        runs.append(tiny_c2ser.generate(*_inputs(batch), **kw))
    assert runs[0] == runs[1]
    assert tiny_c2ser.training is False


def test_long_audio_is_chunked_and_over_limit_refused():
    model = make_tiny_c2ser(encoder_max_positions=50, max_audio_seconds=5.0).eval()
    enc = model.encoder  # window = 100 frames
    mel = torch.randn(2, 250, 80)
    mask = torch.arange(250)[None, :] >= torch.tensor([250, 90])[:, None]
    mel[mask] = 0
    with torch.no_grad():
        x, pad = enc(mel, mask)
        assert x.shape[1] == 125 and (~pad).sum(1).tolist() == [125, 45]
        parts = [enc(mel[:1, s : s + 100], torch.zeros(1, min(100, 250 - s), dtype=torch.bool))[0]
                 for s in (0, 100, 200)]  # fmt: skip
        torch.testing.assert_close(x[:1], torch.cat(parts, 1), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            x[1:, :45], enc(mel[1:, :90], mask[1:, :90])[0], atol=1e-5, rtol=1e-5
        )
        batch = make_batch(lengths=(501, 100), targets=False)
        with pytest.raises(ValueError, match="exceeds max_audio_seconds=5"):
            model.generate(*_inputs(batch), max_new_tokens=2)


def test_ablations():
    batch = make_batch(targets=True)
    no_whisper = make_tiny_c2ser(use_whisper=False)
    out = no_whisper(None, None, batch["ssl"], batch["prompt_ids"], batch["target_ids"])
    assert torch.isfinite(out.loss)
    assert no_whisper.encode_speech(None, None, batch["ssl"])[1].tolist() == [10, 10, 10]
    out.loss.backward()
    assert "encoder" not in no_whisper.trainable_groups()
    assert all(p.grad is not None for p in no_whisper.parameters() if p.requires_grad)
    no_ssl = make_tiny_c2ser(use_ssl=False)
    out = no_ssl(batch["mel"], batch["mel_mask"], None, batch["prompt_ids"], batch["target_ids"])
    assert torch.isfinite(out.loss)
    with pytest.raises(ValueError, match="Emotion2Vec-S"):
        make_tiny_c2ser()(
            batch["mel"], batch["mel_mask"], None, batch["prompt_ids"], batch["target_ids"]
        )
    with pytest.raises(ValueError, match="cannot both be False"):
        make_tiny_c2ser(use_ssl=False, use_whisper=False)
    assert make_tiny_c2ser(ssl_dim=768).ssl_proj is not None  # narrower than Emotion2Vec-S
    assert make_tiny_c2ser().ssl_proj is None  # official zero-padding


def test_trainable_groups_and_gradients():
    model = make_tiny_c2ser(scramble=False)
    assert model.trainable_groups() == list(OFFICIAL_GROUPS)
    model.set_trainable(["connector", "lora"])
    assert model.trainable_groups() == ["connector", "lora"]
    batch = make_batch()
    model(*_inputs(batch), batch["target_ids"]).loss.backward()
    groups = model.param_groups()
    for name, params in groups.items():
        has_grad = any(p.grad is not None for p in params)
        assert has_grad == (name in ("connector", "lora")), name
    assert not any(p.requires_grad for p in groups["llm"])
    assert not model.encoder.embed_positions.weight.requires_grad
    with pytest.raises(ValueError, match="unknown"):
        model.set_trainable(["decoder"])


def test_fine_tuned_base_llm_is_saved_and_restored(tmp_path):
    """With the ``llm`` group the base LLM trains, and both export formats keep what it learnt:
    checkpoints (trainable_state_dict) and save_pretrained, even for an LLM given by path."""
    batch = make_batch()
    qwen = make_tiny_qwen2(tmp_path / "qwen2")
    model = make_tiny_c2ser(scramble=False, llm_config=None, llm_path=str(qwen))
    model.set_trainable([*OFFICIAL_GROUPS, "llm"])
    model(*_inputs(batch), batch["target_ids"]).loss.backward()
    assert all(p.grad is not None for p in model.param_groups()["llm"])
    assert set(trainable_state(model)) == set(model.state_dict())
    with torch.no_grad():  # stand-in for an optimiser step on the base LLM
        for p in model.param_groups()["llm"]:
            p.add_(0.01 * torch.randn_like(p))
    model.eval()
    ref = model(*_inputs(batch), batch["target_ids"], return_logits=True).logits
    out = model.save_pretrained(tmp_path / "tuned")
    assert (out / "llm" / "config.json").is_file()  # the tuned base, not the original path
    again = C2SER.from_pretrained(out).eval()
    torch.testing.assert_close(
        again(*_inputs(batch), batch["target_ids"], return_logits=True).logits, ref
    )
    assert again.trainable_groups()[-1] == "llm"


def test_gradient_checkpointing_gives_the_same_loss():
    kw = dict(dropout=0.0, lora_dropout=0.0)
    batch = make_batch()
    plain, ckpt = make_tiny_c2ser(**kw), make_tiny_c2ser(gradient_checkpointing=True, **kw)
    a = plain.train()(*_inputs(batch), batch["target_ids"]).loss
    b = ckpt.train()(*_inputs(batch), batch["target_ids"]).loss
    b.backward()
    torch.testing.assert_close(a, b)
    assert ckpt.projection.weight.grad is not None


def test_save_and_load_roundtrip(tmp_path):
    batch = make_batch()
    model = make_tiny_c2ser().eval()
    ref = model(*_inputs(batch), batch["target_ids"], return_logits=True).logits
    out = model.save_pretrained(tmp_path / "random")
    assert (out / "llm" / "config.json").is_file()  # random LLM: saved once with the model
    again = C2SER.from_pretrained(out).eval()
    torch.testing.assert_close(
        again(*_inputs(batch), batch["target_ids"], return_logits=True).logits, ref
    )
    assert not any(k.startswith("llm.") and "lora_" not in k for k in trainable_state(model))

    qwen = make_tiny_qwen2(tmp_path / "qwen2")
    model = make_tiny_c2ser(scramble=False, llm_config=None, llm_path=str(qwen)).eval()
    out = model.save_pretrained(tmp_path / "by-path")
    assert not (out / "llm").exists()
    again = C2SER.from_pretrained(out).eval()
    torch.testing.assert_close(
        again(*_inputs(batch), batch["target_ids"], return_logits=True).logits,
        model(*_inputs(batch), batch["target_ids"], return_logits=True).logits,
    )
    with pytest.raises(FileNotFoundError, match="no Qwen2 checkpoint"):
        make_tiny_c2ser(llm_config=None, llm_path=str(tmp_path / "nowhere"))


def test_encoder_init_from_whisper_dir(tmp_path):
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    cfg = WhisperConfig(d_model=64, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=128,
                        decoder_layers=1, decoder_attention_heads=4, decoder_ffn_dim=128,
                        vocab_size=100, max_source_positions=1500, pad_token_id=0, bos_token_id=1,
                        eos_token_id=2, decoder_start_token_id=1)  # fmt: skip
    whisper = WhisperForConditionalGeneration(cfg)
    whisper.save_pretrained(tmp_path / "whisper")
    model = make_tiny_c2ser(scramble=False, encoder_init=str(tmp_path / "whisper"))
    torch.testing.assert_close(model.encoder.conv2.weight, whisper.model.encoder.conv2.weight)
    torch.testing.assert_close(
        model.encoder.layers[1].fc1.bias, whisper.model.encoder.layers[1].fc1.bias
    )


def _compose_model(name: str, *overrides: str):
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    conf = Path(__file__).resolve().parents[2] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        return compose("train", overrides=[f"model={name}", *overrides]).model


def test_model_configs_compose_and_build(tmp_path):
    from hydra.utils import instantiate

    from c2ser.models.c2ser_llm import preset_config

    yaml = _compose_model("c2ser_7b", "paths.llm_dir=/models/qwen2-7b")
    big = preset_config(**{k: v for k, v in yaml.items() if not k.startswith("_")})
    assert (big.encoder_dim, big.encoder_layers, big.encoder_heads, big.encoder_ffn) == (
        1024,
        24,
        16,
        4096,
    )
    assert (big.connector_layers, big.connector_heads, big.connector_ffn) == (4, 4, 2560)
    assert (big.lora_r, big.lora_alpha, big.llm_path) == (8, 32, "/models/qwen2-7b")
    tiny = instantiate(_compose_model("c2ser_tiny"))
    assert isinstance(tiny, C2SER) and tiny.ssl_proj is not None
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    cfg = WhisperConfig(d_model=384, encoder_layers=4, encoder_attention_heads=6, encoder_ffn_dim=1536,
                        decoder_layers=1, decoder_attention_heads=6, decoder_ffn_dim=64, vocab_size=8,
                        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)  # fmt: skip
    WhisperForConditionalGeneration(cfg).save_pretrained(tmp_path / "whisper")
    demo = instantiate(
        _compose_model(
            "c2ser_demo", f"model.encoder_init={tmp_path / 'whisper'}", "model.vocab=[11, 13]"
        )
    )
    assert demo.llm.get_input_embeddings().num_embeddings == 4  # 11, 13, EOD + the extra row
    assert demo.encoder.config.d_model == 384
    from hydra.errors import InstantiationException

    with pytest.raises(InstantiationException, match="c2ser convert whisper-ct2"):
        instantiate(_compose_model("c2ser_demo", f"paths.data_dir={tmp_path}", "model.vocab=null"))


def test_official_prompts_verbatim():
    from c2ser.core.prompts import STAGE1_PROMPT, STAGE2_PROMPT, prompt_for

    assert STAGE1_PROMPT == (
        "Please describe the speaking style, content, and the speaker's emotional state of this speech."
    )
    assert STAGE2_PROMPT == (
        "Please consider the speaking style, content, and directly provide the speaker's emotion "
        "in this speech."
    )
    assert prompt_for(2) == STAGE2_PROMPT
    with pytest.raises(ValueError, match="stage must be 1 or 2"):
        prompt_for(3)
