"""A corpus vocabulary (``model.vocab``): a trimmed random LLM computes, on its rows, exactly what
the full one does, everywhere ids cross the model's boundary (inputs, labels, generation, label
scoring, export), and the vocabulary covers what training and evaluation read and write."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from c2ser.cli.main import main as cli
from c2ser.core.errors import BadInputError
from c2ser.core.labels import EMOTIONS
from c2ser.core.prompts import PARAPHRASES
from c2ser.core.tokens import EOD_ID
from c2ser.data.tokenizer import load_tokenizer
from c2ser.data.vocab import manifest_vocab
from c2ser.inference.score import answer_ids, score_labels
from c2ser.models.c2ser_llm import C2SER, C2SERConfig
from tests.factories import make_tiny_qwen2
from tests.models.conftest import make_batch, make_tiny_c2ser

KEYS = ("mel", "mel_mask", "ssl", "prompt_ids")


@pytest.fixture(scope="module")
def pair() -> tuple[C2SER, C2SER, list[int]]:
    """A scrambled tiny model and its trim to the batch's ids plus every answer sentence, with
    the same weights: the kept embedding rows, and EOD's row again for the extra one (so both
    models stop where the other does)."""
    full = make_tiny_c2ser().eval()
    batch = make_batch()
    answers = {i for lang in ("en", "zh") for ids in answer_ids(lang) for i in ids}
    kept = {i for k in ("prompt_ids", "target_ids") for row in batch[k] for i in row}
    vocab = sorted(kept | answers | set(range(40)) | {EOD_ID})
    trimmed = make_tiny_c2ser(scramble=False, vocab=vocab).eval()
    state = full.state_dict()
    key = next(k for k in state if k.endswith("embed_tokens.weight"))
    state[key] = torch.cat([state[key][vocab], state[key][[EOD_ID]]])
    trimmed.load_state_dict({k: v for k, v in state.items() if "lm_head" not in k}, strict=False)
    return full, trimmed, vocab


def test_ids_map_to_rows_and_back(pair):
    _, trimmed, vocab = pair
    ids = torch.tensor(vocab)
    assert trimmed.llm_ids(ids).tolist() == list(range(len(vocab)))
    assert trimmed.tokenizer_ids(trimmed.llm_ids(ids)).tolist() == vocab
    outside = torch.tensor([41, 151_000, 10**6])  # not kept, incl. past the tokenizer
    assert trimmed.llm_ids(outside).tolist() == [len(vocab)] * 3
    assert trimmed.tokenizer_ids(torch.tensor([len(vocab)])).tolist() == [EOD_ID]
    assert trimmed.llm.get_input_embeddings().num_embeddings == len(vocab) + 1


def test_logits_and_loss_are_the_full_models_on_the_kept_rows(pair):
    full, trimmed, vocab = pair
    batch = make_batch()
    args = [batch[k] for k in KEYS] + [batch["target_ids"]]
    with torch.no_grad():
        ref, out = full(*args, return_logits=True), trimmed(*args, return_logits=True)
    torch.testing.assert_close(out.logits[..., :-1], ref.logits[..., vocab])
    # the loss is the cross-entropy of the kept rows (+ the extra one) at the mapped labels
    rows = torch.cat([ref.logits[..., vocab], ref.logits[..., [EOD_ID]]], -1)
    labels = [trimmed.llm_ids(torch.tensor(t)) for t in batch["target_ids"]]
    n = [len(t) for t in batch["target_ids"]]
    lengths = trimmed.encode_speech(batch["mel"], batch["mel_mask"], batch["ssl"])[
        1
    ] + torch.tensor([len(p) + 2 for p in batch["prompt_ids"]])
    picked = torch.cat([rows[b, lengths[b] - 1 : lengths[b] - 1 + n[b]] for b in range(3)])
    assert out.loss == pytest.approx(float(F.cross_entropy(picked, torch.cat(labels))), abs=1e-5)


def test_generation_is_the_full_models_restricted_to_the_vocabulary(pair):
    full, trimmed, vocab = pair
    batch = make_batch(targets=False)
    outside = sorted(set(range(full.llm.get_input_embeddings().num_embeddings)) - set(vocab))
    got = trimmed.generate(*[batch[k] for k in KEYS], max_new_tokens=12)
    ref = full.generate(*[batch[k] for k in KEYS], max_new_tokens=12, suppress_tokens=outside)
    assert got == ref and any(got) and all(i in vocab for row in got for i in row)


def test_label_scores_use_the_kept_rows(pair):
    _, trimmed, _ = pair
    batch = make_batch()
    [res] = score_labels(
        trimmed, batch["mel"][:1], batch["mel_mask"][:1], batch["ssl"][:1],
        batch["prompt_ids"][:1], ["en"],
    )  # fmt: skip
    for e, ids in zip(EMOTIONS, answer_ids("en"), strict=True):
        tf = trimmed.target_logprobs(
            batch["mel"][:1], batch["mel_mask"][:1], batch["ssl"][:1], batch["prompt_ids"][:1],
            [list(ids)],
        )  # fmt: skip
        assert res.loglik[e] == pytest.approx(float(tf.detach().sum()), abs=2e-3)


def test_export_carries_the_vocabulary(pair, tmp_path):
    _, trimmed, vocab = pair
    out = trimmed.save_pretrained(tmp_path / "model")
    assert json.loads((out / "config.json").read_text())["vocab"] == vocab
    back = C2SER.from_pretrained(out).eval()
    batch = make_batch()
    args = [batch[k] for k in KEYS] + [batch["target_ids"]]
    with torch.no_grad():
        torch.testing.assert_close(
            back(*args, return_logits=True).logits, trimmed(*args, return_logits=True).logits
        )


def _manifest(tmp_path):
    rows = [
        dict(index="a", wav="a.wav", emotion="happy", text="The weather is lovely today.",
             language="en", split="train", speed="low", pitch="high", volume="medium"),
        dict(index="b", wav="b.wav", emotion="sad", text="我今天很难过。", language="zh",
             split="train", speed="high", pitch="low", volume="low"),
        dict(index="c", wav="c.wav", emotion="angry", text="Quixotic zephyrs bewilder.",
             language="en", split="test", speed="medium", pitch="medium", volume="high"),
    ]  # fmt: skip
    path = tmp_path / "manifest.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def test_corpus_vocabulary_covers_prompts_answers_and_training_text(tmp_path):
    tok = load_tokenizer()
    vocab, coverage = manifest_vocab(_manifest(tmp_path))
    need = {i for stage in PARAPHRASES.values() for p in stage for i in tok.encode(p)}
    need |= {i for lang in ("en", "zh") for ids in answer_ids(lang) for i in ids}
    need |= {i for t in ("The weather is lovely today.", "我今天很难过。") for i in tok.encode(t)}
    assert need <= set(vocab) and vocab == sorted(set(vocab))
    assert coverage["train"] == 1.0 and coverage["test"] < 1.0  # test text is not collected
    assert not set(tok.encode("Quixotic zephyrs bewilder.")) <= set(vocab)


def test_cli_writes_what_the_model_reads(tmp_path, capsys):
    out = tmp_path / "vocab.json"
    assert cli(["vocab", "--manifest", str(_manifest(tmp_path)), "--out", str(out)]) == 0
    assert "transcripts covered: test" in capsys.readouterr().out
    cfg = make_tiny_c2ser(scramble=False, vocab=str(out)).config
    assert cfg.vocab == json.loads(out.read_text())
    assert cli(["vocab", "--manifest", str(_manifest(tmp_path)), "--out", str(out),
                "--split", "val"]) == 2  # fmt: skip


def test_bad_vocabularies_are_refused(tmp_path):
    with pytest.raises(BadInputError, match="c2ser vocab --manifest"):
        C2SERConfig(llm_config={}, vocab=str(tmp_path / "missing.json"))
    for text in ('{"a": 1}', "[1, 2"):
        (tmp_path / "bad.json").write_text(text)
        with pytest.raises(BadInputError, match="JSON list of token ids"):
            C2SERConfig(llm_config={}, vocab=str(tmp_path / "bad.json"))
    with pytest.raises(ValueError, match="keeps 3 token ids but the LLM has 151936 rows"):
        make_tiny_c2ser(
            scramble=False, llm_path=str(make_tiny_qwen2(tmp_path / "qwen")), llm_config=None,
            vocab=[1, 2],
        )  # fmt: skip
