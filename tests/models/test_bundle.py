"""Model bundles from a training export (``c2ser bundle``): the utterance features the model
reads, the model card, and one clear line when the parts do not belong together."""

from __future__ import annotations

import json

import pytest
import yaml

from c2ser.core.errors import BadInputError
from c2ser.models.bundle import (
    BUNDLE_FILE,
    CARD_FILE,
    load_bundle,
    read_bundle_config,
    save_bundle,
)
from tests.factories import tiny_emotion2vec_s
from tests.models.conftest import make_tiny_c2ser

METRICS = {
    "kind": "c2ser-evaluation", "dataset": "demo_test", "split": "test", "stage": 2,
    "source": "checkpoint m (greedy decoding)",
    "overall": {"n": 140, "wa": 0.70, "ua": 0.664, "f1": 0.65, "confusion": []},
    "languages": {"en": {"n": 70, "wa": 0.6, "ua": 0.643, "f1": 0.6}},
}  # fmt: skip


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """A Stage 2 export reading one Emotion2Vec-S row (as the demo model), its run config, the
    Emotion2Vec-S pretraining run, and an evaluate.py metrics.json."""
    tmp = tmp_path_factory.mktemp("parts")
    run = tmp / "stage2"
    model = make_tiny_c2ser(ssl_dim=64, ssl_tokens=1).save_pretrained(run / "model")
    (run / "config.yaml").write_text(yaml.safe_dump({
        "task_name": "stage2_demo", "task": {"_target_": "c2ser.tasks.distill.DistillTask"},
        "data": {"stage": 2},
    }))  # fmt: skip
    e2vs_run = tmp / "e2vs"
    tiny_emotion2vec_s().save_pretrained(e2vs_run / "emotion2vec_s")
    metrics = tmp / "metrics.json"
    metrics.write_text(json.dumps(METRICS))
    return model, e2vs_run, metrics


def test_cli_bundles_a_training_export(parts, tmp_path, capsys):
    from c2ser.cli.main import main

    model, e2vs_run, metrics = parts
    out = tmp_path / "bundle"
    argv = ["bundle", "--model", str(model), "--emotion2vec", str(e2vs_run), "--out", str(out)]
    assert main([*argv, "--metrics", str(metrics)]) == 0
    cfg = read_bundle_config(out)
    assert (cfg.utterance_mode, cfg.ssl_tokens) == ("mean", 1)  # what ssl_tokens=1 reads
    assert cfg.source["task_name"] == "stage2_demo" and cfg.source["task"] == "DistillTask"
    assert cfg.metrics["sets"]["all"] == {"n": 140, "wa": 0.70, "ua": 0.664, "f1": 0.65}
    card = (out / CARD_FILE).read_text()
    assert "| all | 140 | 70.0 | 66.4 | 65.0 |" in card and "c2ser predict" in card
    c2ser, e2vs, _ = load_bundle(out)
    assert e2vs.config.utterance_mode == "mean" and c2ser.config.ssl_tokens == 1
    assert c2ser.trains_llm is False and (out / "c2ser" / "llm").is_dir()  # random base LLM saved
    assert main(argv) == 2  # not empty: nothing overwritten
    assert "exists and is not empty" in capsys.readouterr().err


def test_parts_that_do_not_belong_together(parts, tmp_path):
    model, e2vs_run, _ = parts
    with pytest.raises(BadInputError, match="'official' gives 10 Emotion2Vec-S rows but the "
                       "C2SER-LLM reads ssl_tokens=1"):  # fmt: skip
        save_bundle(tmp_path / "a", model, e2vs_run, {}, utterance_mode="official")
    narrow = make_tiny_c2ser().save_pretrained(tmp_path / "narrow")  # ssl_dim 32
    with pytest.raises(
        BadInputError, match="gives 64-d features but the C2SER-LLM reads ssl_dim=32"
    ):
        save_bundle(tmp_path / "b", narrow, e2vs_run, {})
    with pytest.raises(BadInputError, match="reads Emotion2Vec-S features: give its Emotion2Vec-S"):
        save_bundle(tmp_path / "c", model, None, {})
    with pytest.raises(BadInputError, match="not an Emotion2Vec-S model directory"):
        save_bundle(tmp_path / "d", model, tmp_path, {})
    with pytest.raises(BadInputError, match="not a c2ser model directory"):
        save_bundle(tmp_path / "e", tmp_path / "nowhere", e2vs_run, {})
    assert not [p for p in tmp_path.iterdir() if p.name[0] in "abcde."]  # nothing half-written
    with pytest.raises(BadInputError, match=rf"no {BUNDLE_FILE}; not a c2ser model bundle \(a "
                       "C2SER-LLM model directory: make a bundle with `c2ser bundle`\\)"):  # fmt: skip
        read_bundle_config(model)
