"""SFT datamodule: the batch contract, official filters, features, and bad-input handling."""

import json

import numpy as np
import pytest
import torch

from c2ser.core.errors import BadInputError
from c2ser.core.prompts import STAGE1_PROMPT, STAGE2_PROMPT
from c2ser.core.tokens import EOD_ID
from c2ser.data.sft import SFTDataModule
from c2ser.data.tokenizer import load_tokenizer

STYLE = {"speed": "medium", "pitch": "low", "volume": "high"}


@pytest.fixture
def corpus(tmp_path, wav_file):
    """6 utterances (4 train, 2 val; en and zh) with style bins, plus a feature dir."""
    rows = []
    feats = tmp_path / "ssl"
    feats.mkdir()
    for i in range(6):
        lang = ("en", "zh")[i % 2]
        wav_file(f"u{i}.wav", seconds=0.5 + 0.1 * i, freq=200 + 30 * i)
        text = "Hello there, General Kenobi." if lang == "en" else "今天天气很好。"
        rows.append(
            {
                "index": f"u{i}",
                "emotion": ("happy", "sad", "angry")[i % 3],
                "wav": f"u{i}.wav",
                "text": text,
                "language": lang,
                "split": "train" if i < 4 else "val",
                **STYLE,
            }
        )
        np.save(feats / f"u{i}.npy", np.full((10, 768), i, dtype=np.float32))
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return manifest, feats


def make(manifest, **kw):
    dm = SFTDataModule(str(manifest), tokenizer=load_tokenizer(), max_frames=100_000, **kw)
    dm.setup("fit")
    return dm


def batches(dm, split="train"):
    return list(dm.dataloader(split))


def test_stage1_batch_contract(corpus):
    manifest, _ = corpus
    tok = load_tokenizer()
    dm = make(manifest)
    (batch,) = batches(dm)
    assert batch["mel"].shape[0] == 4 and batch["mel"].shape[2] == 80
    assert batch["mel"].dtype == torch.float32
    assert batch["mel_mask"].dtype == torch.bool
    lengths = (~batch["mel_mask"]).sum(1).tolist()
    assert sorted(lengths) == [50, 60, 70, 80]  # 100 frames per second, no 30 s padding
    assert batch["ssl"] is None
    prompt = tok.encode(STAGE1_PROMPT, add_special_tokens=False)
    assert all(p == prompt for p in batch["prompt_ids"])
    for ids, uid, lang in zip(batch["target_ids"], batch["id"], batch["language"]):
        assert ids[-1] == EOD_ID and EOD_ID not in ids[:-1]
        text = tok.decode(ids[:-1])
        assert ("General Kenobi" in text) if lang == "en" else ("今天天气很好" in text), uid
        assert text[0].isupper() or lang == "zh"  # English keeps its case by default
    assert set(batch["emotion"]) <= {"happy", "sad", "angry"}
    assert "explicit_prompt_ids" not in batch
    (val,) = batches(dm, "val")
    assert sorted(val["id"]) == ["u4", "u5"]


def test_stage2_implicit_with_explicit_pairs_and_features(corpus):
    manifest, feats = corpus
    tok = load_tokenizer()
    dm = make(manifest, stage=2, keep_explicit=True, ssl_dir=str(feats))
    (batch,) = batches(dm)
    assert batch["ssl"].shape == (4, 10, 768)
    for uid, ssl in zip(batch["id"], batch["ssl"]):
        assert torch.all(ssl == int(uid[1:]))
    assert batch["prompt_ids"][0] == tok.encode(STAGE2_PROMPT, add_special_tokens=False)
    assert batch["explicit_prompt_ids"][0] == tok.encode(STAGE1_PROMPT, add_special_tokens=False)
    answers = {tok.decode(t[:-1]) for t in batch["target_ids"]}
    assert answers <= {
        "The speaker's emotion is happy.",
        "这条语音的情感为悲伤",
        "The speaker's emotion is sad.",
        "这条语音的情感为生气",
        "The speaker's emotion is angry.",
        "这条语音的情感为高兴",
    }
    assert all(len(e) > len(i) for e, i in zip(batch["explicit_target_ids"], batch["target_ids"]))


def test_manifest_targets_win_and_optional_lowercasing(corpus, tmp_path):
    manifest, _ = corpus
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    rows[0]["cot_target"] = "Teacher Output Here."
    del rows[1]["speed"]  # a given target needs no style attributes
    rows[1]["cot_target"] = "老师的输出"
    m2 = tmp_path / "m2.jsonl"
    m2.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    tok = load_tokenizer()
    for lower in (False, True):
        (batch,) = batches(make(m2, lowercase_english=lower))
        got = {u: tok.decode(t[:-1]) for u, t in zip(batch["id"], batch["target_ids"])}
        assert got["u0"] == ("teacher output here." if lower else "Teacher Output Here.")
        assert got["u1"] == "老师的输出"


def test_official_filters_are_counted(corpus, capsys):
    manifest, _ = corpus
    with pytest.raises(BadInputError, match=r"u0: target too long.*skip_bad"):
        make(manifest, max_target_tokens=10)
    with pytest.raises(BadInputError, match="no usable utterance"):
        make(manifest, max_target_tokens=10, skip_bad=True)
    assert "target too long" in capsys.readouterr().out
    with pytest.raises(BadInputError, match="u0: sequence too long"):
        make(manifest, max_seq_tokens=30)
    dm = make(manifest, max_utt_frames=65, skip_bad=True)
    assert sorted(u.id for u in dm.splits["train"]) == ["u0", "u1"]
    assert dm.report.summary() == "skipped 4 (4 too long)"


def test_missing_audio_or_features_reported_and_skipped(corpus, capsys):
    manifest, feats = corpus
    (feats / "u2.npy").unlink()
    with pytest.raises(BadInputError, match=r"u2: missing Emotion2Vec-S features: .*u2\.npy"):
        make(manifest, ssl_dir=str(feats))
    (manifest.parent / "u3.wav").unlink()
    dm = make(manifest, ssl_dir=str(feats), skip_bad=True)
    assert sorted(u.id for u in dm.splits["train"]) == ["u0", "u1"]
    assert "skipped 2" in capsys.readouterr().out

    # a file that breaks after setup: the rest of the batch survives
    (manifest.parent / "u1.wav").write_bytes(b"garbage")
    (batch,) = batches(dm)
    assert batch["id"] == ["u0"]
    assert "skip: u1" in capsys.readouterr().out
    np.save(feats / "u0.npy", np.zeros((5, 768), np.float32))
    keys = ("emotion", "language", "prompt_ids", "target_ids")
    keys += tuple(f"explicit_{k}" for k in keys[2:])
    row = {"id": "u0", "wav": str(manifest.parent / "u0.wav"), "ssl_path": str(feats / "u0.npy")}
    sample = dm.decode({**row, **dict.fromkeys(keys)})
    assert "have shape (5, 768), expected (10, 768)" in sample["error"]


def test_on_the_fly_features(corpus):
    manifest, _ = corpus
    calls = []

    def extractor(wav):
        calls.append(len(wav))
        return np.ones((10, 768), np.float32)

    (batch,) = batches(make(manifest, ssl_extractor=extractor))
    assert batch["ssl"].shape == (4, 10, 768) and len(calls) == 4


def test_on_the_fly_emotion2vec_s(corpus):
    """An Emotion2VecS model (tiny, random) as the extractor: its official utterance rows."""
    from c2ser.inference.emotion2vec_s import Emotion2VecSFeatures, extract
    from c2ser.models.emotion2vec_s import Emotion2VecS, Emotion2VecSConfig

    conv = ((32, 10, 5),) + ((32, 3, 2),) * 4 + ((32, 2, 2),) * 2
    cfg = Emotion2VecSConfig(depth=1, prenet_depth=0, heads=4, conv_layers=conv,
                             conv_pos_depth=1, conv_pos_width=5, conv_pos_groups=4)  # fmt: skip
    model = Emotion2VecS(cfg)
    manifest, _ = corpus
    (batch,) = batches(make(manifest, ssl_extractor=Emotion2VecSFeatures(model)))
    assert batch["ssl"].shape == (4, 10, 768) and batch["ssl"].dtype == torch.float32
    i = batch["id"].index("u0")
    want = extract(model, [str(manifest.parent / "u0.wav")], level="utterance")[0]
    assert torch.allclose(batch["ssl"][i], torch.from_numpy(want))


def test_dynamic_batching_budget(corpus):
    manifest, _ = corpus
    dm = make(manifest)
    dm.max_frames, dm.max_tokens = 160, None
    sizes = [len(b["id"]) for b in batches(dm)]
    assert sum(sizes) == 4 and max(sizes) == 2  # padded frames per batch <= 160
    # the token budget binds when targets are long relative to audio
    dm.max_frames, dm.max_tokens = 100_000, 150
    for b in batches(dm):
        seq = [len(p) + len(t) for p, t in zip(b["prompt_ids"], b["target_ids"])]
        assert len(b["id"]) == 1 or len(b["id"]) * max(seq) <= 150


def test_training_paraphrases_per_epoch_and_disjoint_from_evaluation(corpus):
    """``prompt_paraphrase`` rewords training prompts only, drawn per (seed, epoch, utterance),
    from a set the evaluation's paraphrases never appear in."""
    from c2ser.core.prompts import PARAPHRASES, TRAINING_PARAPHRASES

    manifest, _ = corpus
    tok = load_tokenizer()
    official = tok.encode(STAGE2_PROMPT, add_special_tokens=False)
    for stage in (1, 2):
        assert not set(TRAINING_PARAPHRASES[stage]) & set(PARAPHRASES[stage])
    encoded = {
        s: {tuple(tok.encode(p, add_special_tokens=False)) for p in TRAINING_PARAPHRASES[s]}
        for s in (1, 2)
    }
    dm = make(manifest, stage=2, keep_explicit=True, prompt_paraphrase=1.0)
    loader = dm.dataloader("train", shuffle=True)

    def prompts(epoch):
        loader.batch_sampler.set_epoch(epoch)
        (batch,) = list(loader)
        assert {tuple(p) for p in batch["prompt_ids"]} <= encoded[2]
        assert {tuple(p) for p in batch["explicit_prompt_ids"]} <= encoded[1]
        return dict(zip(batch["id"], map(tuple, batch["prompt_ids"])))

    epochs = [prompts(e) for e in range(3)]
    assert epochs[0] != epochs[1] or epochs[1] != epochs[2]  # redrawn per epoch
    assert prompts(1) == epochs[1]  # a resumed epoch draws the same prompts
    (val,) = batches(dm, "val")
    assert all(p == official for p in val["prompt_ids"])
    off = make(manifest, stage=2)
    assert all(p == official for p in batches(off)[0]["prompt_ids"])
    # budgets count the longest prompt a sample can get
    longest = max(map(len, encoded[2]))
    assert longest > len(official)
    u = dm.splits["train"][0]
    assert dm._cost(u) - off._cost(off.splits["train"][0]) >= 0
    with pytest.raises(ValueError, match="prompt_paraphrase"):
        make(manifest, prompt_paraphrase=1.5)
