"""LightningDataModule for utterance-level emotion classification from audio (the baseline job).

Splits come from the manifest's ``split`` field (train/val/test), so one manifest describes the
whole corpus. Every audio file is checked once in :meth:`setup` (existence + readable header):
bad entries are a clear :class:`BadInputError` or, with ``skip_bad``, a counted, printed skip.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from c2ser.core.errors import BadInputError, SkipReport
from c2ser.core.labels import EMOTIONS
from c2ser.data.audio import AudioError, audio_seconds, load_audio
from c2ser.data.base import SplitDataModule
from c2ser.data.batching import DynamicBucketSampler, ResumableLoader, collate_padded
from c2ser.data.manifest import Utterance, read_manifest
from c2ser.data.mel import log_mel
from c2ser.data.table import manifest_table, with_decoder


class AudioClassificationDataModule(SplitDataModule):
    """Log-mel + label batches: ``{"mel" (B,T,80), "mel_mask" (B,T) True=pad, "label" (B,), "id",
    "language", "speaker"}`` (language and speaker for per-group scores; None where unknown).

    Args:
        manifest: jsonl manifest with ``split`` fields.
        labels: class names; an utterance whose emotion is not among them is bad input.
        max_frames: padded mel frames per batch (dynamic batching; 100 frames = 1 s).
        demo_corpus: if given and ``manifest`` is missing, kwargs for
            :func:`c2ser.data.demo.build_demo_corpus` to synthesise it first (the demo job).
    """

    def __init__(
        self,
        manifest: str,
        labels: Sequence[str] = EMOTIONS,
        audio_root: str | None = None,
        max_frames: int = 6000,
        max_seconds: float = 30.0,
        num_workers: int = 0,
        skip_bad: bool = False,
        seed: int = 0,
        demo_corpus: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(skip_bad, demo_corpus, manifest)
        self.manifest, self.labels = Path(manifest), list(labels)
        self.audio_root, self.max_frames, self.max_seconds = audio_root, max_frames, max_seconds
        self.num_workers, self.seed = num_workers, seed
        self.splits: dict[str, list[Utterance]] = {}
        self.lengths: dict[str, list[int]] = {}

    def model_kwargs(self) -> dict[str, Any]:
        """Sizes the model needs from the data (the runner passes them to the model config)."""
        return {"num_classes": len(self.labels)}

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        report = SkipReport()
        utts = read_manifest(self.manifest, self.audio_root, self.skip_bad, self.labels, report)
        for u in utts:
            try:
                seconds = audio_seconds(u.wav)
                if seconds > self.max_seconds:
                    raise AudioError(
                        f"{u.wav}: {seconds:.1f} s exceeds max_seconds={self.max_seconds}"
                    )
            except AudioError as e:
                self.skip_or_raise(report, u.id, e)
                continue
            self.splits.setdefault(u.split or "train", []).append(u)
            self.lengths.setdefault(u.split or "train", []).append(int(seconds * 100))
        if report:
            self.print_report(report, str(self.manifest))
        if "train" not in self.splits:
            raise BadInputError(f"{self.manifest}: no utterance with split 'train'")

    def _decode(self, row: dict[str, Any]) -> dict[str, Any]:
        wav = load_audio(row["wav"], max_seconds=self.max_seconds)
        sample = {key: row.get(key) for key in ("id", "language", "speaker")}
        return {**sample, "mel": log_mel(wav), "label": self.labels.index(row["emotion"])}

    @staticmethod
    def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
        return collate_padded(samples, "mel")

    def dataloader(self, split: str, shuffle: bool) -> DataLoader:
        split = split if split in self.splits else "val" if split == "test" else split
        utts = self.splits.get(split)
        if not utts:
            raise BadInputError(f"{self.manifest}: no utterance with split {split!r}")
        table = with_decoder(manifest_table(utts), self._decode)
        world, rank = self.replicas()
        sampler = DynamicBucketSampler(
            self.lengths[split],
            self.max_frames,
            shuffle=shuffle,
            seed=self.seed,
            num_replicas=world,
            rank=rank,
        )
        return ResumableLoader(
            table,
            batch_sampler=sampler,
            seed=self.seed,
            collate_fn=self.collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )
