"""EmoBox annotations and manifest folds, validation splits, and the feature datamodule."""

import json

import numpy as np
import pytest
import torch

from c2ser.core.errors import BadInputError
from c2ser.data.emobox import emobox_fold, manifest_fold, read_label_map, split_validation
from c2ser.data.feature_datamodule import FeatureDataModule
from c2ser.data.manifest import Utterance

LABEL_MAP = {"ang": "Angry", "hap": "Happy", "exc": "Happy", "neu": "Neutral"}


def write_emobox(root, fold=1, n_train=20, n_test=6, valid=False, bad=None):
    """An EmoBox dataset folder ``root/label_map.json`` + ``root/fold_<k>/toy_*_fold_<k>.json``."""
    raw = list(LABEL_MAP)
    (root / f"fold_{fold}").mkdir(parents=True)
    (root / "label_map.json").write_text(json.dumps(LABEL_MAP))

    def entries(prefix, n):
        return {
            f"{prefix}{i}": {"wav": f"wav/{prefix}{i}.wav", "length": 1.0, "emo": raw[i % 4]}
            for i in range(n)
        }

    train = entries("tr", n_train)
    if bad:
        train["tr_bad"] = {"wav": "x.wav", "emo": bad}
    files = {"train": train, "test": entries("te", n_test)}
    if valid:
        files["valid"] = entries("va", 3)
    for kind, data in files.items():
        (root / f"fold_{fold}" / f"toy_{kind}_fold_{fold}.json").write_text(json.dumps(data))
    return root


def write_manifest(path, n=32, folds=4, speakers_per_fold=2, labels=("angry", "happy", "sad")):
    rows = []
    for i in range(n):
        fold = i % folds + 1
        spk = f"f{fold}s{(i // folds) % speakers_per_fold}"
        rows.append(
            {
                "index": f"u{i}",
                "emotion": labels[i % len(labels)],
                "wav": f"u{i}.wav",
                "fold": fold,
                "speaker": spk,
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_label_map_and_emobox_fold(tmp_path):
    root = write_emobox(tmp_path / "toy")
    assert read_label_map(root / "label_map.json") == LABEL_MAP
    split = emobox_fold(root, 1, val_ratio=0.2, seed=3)
    assert split.labels == ["Angry", "Happy", "Neutral"]  # first appearance, 'exc' merged
    assert len(split.val) == 4 and len(split.train) == 16 and len(split.test) == 6
    assert {u.emotion for u in split.test} == {"Angry", "Happy", "Neutral"}
    assert not {u.id for u in split.val} & {u.id for u in split.train}
    again = emobox_fold(root, 1, val_ratio=0.2, seed=3)
    assert [u.id for u in again.val] == [u.id for u in split.val]  # seeded
    other = emobox_fold(root, 1, val_ratio=0.2, seed=4)
    assert [u.id for u in other.val] != [u.id for u in split.val]


def test_emobox_valid_file_is_used_when_present(tmp_path):
    split = emobox_fold(write_emobox(tmp_path / "toy", valid=True), 1)
    assert [u.id for u in split.val] == ["va0", "va1", "va2"] and len(split.train) == 20


def test_unknown_emobox_label_names_file_and_id(tmp_path):
    write_emobox(tmp_path / "toy", bad="bored")
    with pytest.raises(
        BadInputError, match=r"toy_train_fold_1\.json: id 'tr_bad': unknown label 'bored'"
    ):
        emobox_fold(tmp_path / "toy", 1)


def test_missing_fold_files_are_clear(tmp_path):
    write_emobox(tmp_path / "toy")
    with pytest.raises(BadInputError, match="fold_2"):
        emobox_fold(tmp_path / "toy", 2)


def test_manifest_fold_is_speaker_independent(tmp_path):
    m = write_manifest(tmp_path / "m.jsonl")
    split = manifest_fold(m, 2, seed=0)
    assert split.labels == ["angry", "happy", "sad"]  # EMOTIONS order
    assert {u.fold for u in split.test} == {2} and 2 not in {u.fold for u in split.train}
    # 6 training speakers of 4 utterances: the val share closest to 20 % is one speaker
    assert len({u.speaker for u in split.val}) == 1 and len(split.val) == 4
    assert not {u.speaker for u in split.val} & {u.speaker for u in split.train}


def test_manifest_unknown_label_and_missing_fold(tmp_path):
    m = write_manifest(tmp_path / "m.jsonl")
    with pytest.raises(BadInputError, match=r"m\.jsonl: id 'u1': unknown label 'happy'"):
        manifest_fold(m, 1, labels=["angry", "sad"])
    with pytest.raises(BadInputError, match="fold 7 not found"):
        manifest_fold(m, 7)
    m.write_text('{"index": "a", "wav": "a.wav", "emotion": "sad"}\n')
    with pytest.raises(BadInputError, match="id 'a' has no 'fold'"):
        manifest_fold(m, 1)


def test_split_validation_modes():
    utts = [Utterance(f"u{i}", "", "sad", speaker=f"s{i % 5}") for i in range(50)]
    tr, va = split_validation(utts, 0.2, "random", seed=1)
    assert len(va) == 10 and len(tr) == 40
    tr, va = split_validation(utts, 0.2, "auto", seed=1)
    assert len({u.speaker for u in va}) == 1 and len(va) == 10
    no_spk = [Utterance(f"u{i}", "", "sad") for i in range(10)]
    assert len(split_validation(no_spk, 0.2, "auto")[1]) == 2  # falls back to random
    with pytest.raises(BadInputError, match="speaker id"):
        split_validation(no_spk, 0.2, "speaker")


def save_features(feat_dir, ids, dim=6, rng=None):
    rng = rng or np.random.default_rng(0)
    feat_dir.mkdir(parents=True, exist_ok=True)
    for i, uid in enumerate(ids):
        np.save(feat_dir / f"{uid}.npy", rng.standard_normal((3 + i % 5, dim)).astype(np.float32))


def test_feature_datamodule_reports_and_excludes_missing_features(tmp_path, capsys):
    m = write_manifest(tmp_path / "m.jsonl")
    ids = [f"u{i}" for i in range(32) if i not in (1, 6, 9)]  # u1, u9: fold 2 (test); u6: train
    save_features(tmp_path / "f", ids)
    dm = FeatureDataModule(str(tmp_path / "f"), fold=2, manifest=str(m))
    assert dm.model_kwargs() == {"input_dim": 6, "num_classes": 3}
    out = capsys.readouterr().out
    assert "skipped 3 (3 missing feature file)" in out and "test u9" in out
    assert len(dm.skipped) == 3
    assert len(dm.datasets["test"]) == 6
    sizes = sum(len(d) for d in dm.datasets.values())
    assert sizes == 29
    batch = next(iter(dm.val_dataloader()))
    lengths = (~batch["feats_mask"]).sum(1)
    assert batch["feats"].shape[-1] == 6 and batch["label"].dtype == torch.long
    for k, uid in enumerate(batch["id"]):
        x = np.load(tmp_path / "f" / f"{uid}.npy")
        assert lengths[k] == len(x)
        assert torch.equal(batch["feats"][k, : len(x)], torch.from_numpy(x))


def test_feature_datamodule_emobox_and_bad_feature_files(tmp_path):
    root = write_emobox(tmp_path / "toy")
    ids = [f"tr{i}" for i in range(20)] + [f"te{i}" for i in range(6)]
    save_features(tmp_path / "f", ids, dim=4)
    np.save(tmp_path / "f" / "te0.npy", np.ones(4, np.float32))  # a (D,) vector is one frame
    dm = FeatureDataModule(str(tmp_path / "f"), fold=1, emobox_dir=str(root))
    assert dm.model_kwargs() == {"input_dim": 4, "num_classes": 3}
    assert dm.labels == ["Angry", "Happy", "Neutral"]
    assert dm.datasets["test"][0]["feats"].shape == (1, 4)
    np.save(tmp_path / "f" / "te1.npy", np.ones((2, 5), np.float32))
    with pytest.raises(BadInputError, match=r"te1\.npy: feature width 5, expected 4"):
        dm.datasets["test"][1]
    with pytest.raises(BadInputError, match="exactly one of"):
        FeatureDataModule(str(tmp_path / "f"), fold=1)
