import numpy as np
import torch
from torch.utils.data import DataLoader

from c2ser.data.audio import load_audio
from c2ser.data.batching import DynamicBucketSampler
from c2ser.data.datamodule import AudioClassificationDataModule
from c2ser.data.manifest import Utterance
from c2ser.data.table import manifest_table, with_decoder


def test_table_keeps_paths_and_decodes_lazily(wav_file):
    utts = [
        Utterance(f"u{i}", str(wav_file(f"u{i}.wav", 0.2 + 0.1 * i)), "sad", extra={"speed": "low"})
        for i in range(3)
    ]
    table = manifest_table(utts, extra=["speed"])
    assert table.column_names[:2] == ["id", "wav"] and table["speed"] == ["low"] * 3
    assert table.filter(lambda r: r["id"] != "u1")["id"] == ["u0", "u2"]
    decoded = with_decoder(table, lambda r: {"id": r["id"], "n": len(load_audio(r["wav"]))})
    assert decoded[2] == {"id": "u2", "n": 6400}


def test_dataloader_batches_match_single_items(wav_file):
    utts = [
        Utterance(f"u{i}", str(wav_file(f"u{i}.wav", 0.2 + 0.05 * i, freq=200 + 10 * i)), "happy")
        for i in range(6)
    ]
    dm = AudioClassificationDataModule("unused.jsonl")
    table = with_decoder(manifest_table(utts), dm._decode)
    sampler = DynamicBucketSampler([20 + 5 * i for i in range(6)], max_frames=100, shuffle=False)
    for batch in DataLoader(table, batch_sampler=sampler, collate_fn=dm.collate):
        for j, uid in enumerate(batch["id"]):
            single = dm._decode({"id": uid, "wav": utts[int(uid[1:])].wav, "emotion": "happy"})[
                "mel"
            ]
            n = len(single)
            assert torch.equal(batch["mel"][j, :n], single)
            assert not batch["mel_mask"][j, :n].any() and batch["mel_mask"][j, n:].all()
        assert np.all(batch["label"].numpy() == 1)
