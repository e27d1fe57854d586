"""LightningDataModule for C2SER instruction tuning (Stage 1 explicit CoT, Stage 2 implicit).

Each sample is one utterance with a prompt and a target, tokenised as the official pipeline does:
raw text, no chat template, no special tokens, and ``<|endoftext|>`` (151643) appended to every
target. The model assembles ``[prompt][BOS][ssl x10][speech][EOS][target]`` itself; the batch
carries ids as ragged lists:

``{"mel" (B,T,80), "mel_mask" (B,T) True=pad, "ssl" (B,10,768) | None, "prompt_ids",
"target_ids", "id", "emotion", "language"}``

and with ``keep_explicit`` (Stage 2 self-distillation) also ``explicit_prompt_ids`` /
``explicit_target_ids``, the Stage 1 pair of the same utterance, which the task mixes in.

Targets come from the manifest fields ``cot_target`` / ``implicit_target`` (``c2ser cot-data`` or
``c2ser distill-targets``); where absent they are built from the style attributes with the same
templates, so a manifest with speed/pitch/volume trains directly.

The official filters apply (frames <= 2900, target tokens 1..200 incl. eod, prompt + frames/8 +
target <= 1000); filtered utterances are counted and reported, never silently dropped. Unlike
the official ``process_text``, English targets keep their case (``lowercase_english`` restores
the official behaviour, needed to match the released model's lower-case English answers).
Emotion2Vec-S utterance features come from ``ssl_dir/<id>.npy`` (``c2ser extract --level
utterance``) or are computed on the fly by ``ssl_extractor``, any callable ``wav -> (10, 768)``:
:class:`c2ser.inference.emotion2vec_s.Emotion2VecSFeatures` wraps a model. It is injected, so the
data layer never imports a model.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from c2ser.core.errors import BadInputError, SkipReport
from c2ser.core.prompts import TRAINING_PARAPHRASES, prompt_for
from c2ser.core.tokens import EOD_ID, SSL_ROWS
from c2ser.data.audio import AudioError, audio_seconds, load_audio
from c2ser.data.augment import spec_augment
from c2ser.data.base import SplitDataModule
from c2ser.data.batching import DynamicBucketSampler, EpochTagged, ResumableLoader, pad_batch
from c2ser.data.cot import explicit_target, implicit_target, utterance_language
from c2ser.data.features import load_feature
from c2ser.data.manifest import Utterance, read_manifest
from c2ser.data.mel import log_mel

FRAMES_PER_TOKEN = 8  # 100 Hz mel -> 12.5 Hz speech tokens after the encoder and downsampler
_PAIRS = ("", "explicit_")  # prefixes of the (prompt_ids, target_ids) pairs a sample can carry
_IDS = tuple(f"{p}{k}" for p in _PAIRS for k in ("prompt_ids", "target_ids"))


class SFTDataModule(SplitDataModule):
    """Speech + prompt + target batches for C2SER SFT; see the module docstring for the layout.

    Args:
        manifest: jsonl with ``split`` (train/val/test; none: train), ``emotion``, ``text``,
            ``language`` and either ``cot_target``/``implicit_target`` or the style bins
            speed/pitch/volume.
        stage: 1 trains explicit CoT (Stage 1 prompt -> ``cot_target``); 2 trains the implicit
            answer (Stage 2 prompt -> ``implicit_target``).
        keep_explicit: with ``stage=2``, also carry the Stage 1 pair for self-distillation mixing.
        tokenizer: anything with ``encode(text, add_special_tokens=False)``; default: the offline
            Qwen2 tokenizer (:func:`c2ser.data.tokenizer.load_tokenizer`).
        ssl_dir / ssl_extractor: where Emotion2Vec-S utterance features come from (neither: the
            batch has ``ssl=None``, for models built with ``use_ssl=False``). An extractor runs
            per sample in the DataLoader workers, frozen and in eval mode.
        ssl_dim: feature width (768 for Emotion2Vec-S; must equal ``model.ssl_dim``).
        ssl_rows: feature rows per utterance (must equal ``model.ssl_tokens``): 10 for the
            official layout and ``extra_tokens``, 1 for ``mean`` features. Files with more
            rows (frame-level files) are cut to the first ``ssl_rows``, as the release does.
        max_utt_frames / max_target_tokens / max_seq_tokens: the official filters.
        max_frames / max_tokens: dynamic batch budget, padded frames and padded LLM tokens
            (official: 3900 and 1900); ``max_batch_size`` caps the count.
        cot_seed / template_dir: phrasing of targets built from templates (see c2ser.data.cot).
        demo_corpus: kwargs of :func:`c2ser.data.demo.build_demo_corpus` to synthesise a missing
            manifest (the demo job).
        augment: the official SpecAug + SpecSub of training mels, as keyword arguments of
            :func:`c2ser.data.augment.spec_augment` (``{}``: the release's settings); None: off.
            Only the train split is augmented, seeded by (seed, epoch, utterance).
        prompt_paraphrase: the share of training samples whose prompt (of each pair) is one of
            the training-only rewordings :data:`~c2ser.core.prompts.TRAINING_PARAPHRASES`
            instead of the official prompt, drawn per (seed, epoch, utterance); validation and
            test keep the official prompt. 0: off. Budgets and filters count the longest prompt.
    """

    def __init__(
        self,
        manifest: str,
        stage: int = 1,
        keep_explicit: bool = False,
        tokenizer: Any = None,
        audio_root: str | None = None,
        ssl_dir: str | None = None,
        ssl_extractor: Any = None,
        ssl_dim: int = 768,
        ssl_rows: int = SSL_ROWS,
        lowercase_english: bool = False,
        max_utt_frames: int = 2900,
        max_target_tokens: int = 200,
        max_seq_tokens: int = 1000,
        max_frames: int = 3900,
        max_tokens: int | None = 1900,
        max_batch_size: int | None = None,
        cot_seed: int = 0,
        template_dir: str | None = None,
        num_workers: int = 0,
        skip_bad: bool = False,
        seed: int = 0,
        demo_corpus: dict[str, Any] | None = None,
        augment: dict[str, int] | None = None,
        prompt_paraphrase: float = 0.0,
    ) -> None:
        super().__init__(skip_bad, demo_corpus, manifest)
        self.augment = None if augment is None else dict(augment)
        if not 0.0 <= prompt_paraphrase <= 1.0:
            raise ValueError(f"prompt_paraphrase must be in [0, 1], got {prompt_paraphrase}")
        self.prompt_paraphrase = prompt_paraphrase
        if stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {stage}")
        if ssl_dir and ssl_extractor is not None:
            raise ValueError("give ssl_dir or ssl_extractor, not both")
        self.manifest, self.stage, self.keep_explicit = Path(manifest), stage, keep_explicit
        self._tokenizer, self.audio_root = tokenizer, audio_root
        self.ssl_dir = Path(ssl_dir) if ssl_dir else None
        self.ssl_extractor, self.ssl_dim, self.ssl_rows = ssl_extractor, ssl_dim, ssl_rows
        self.lowercase_english = lowercase_english
        self.max_utt_frames = max_utt_frames
        self.max_target_tokens = max_target_tokens
        self.max_seq_tokens = max_seq_tokens
        self.max_frames, self.max_tokens, self.max_batch_size = (
            max_frames,
            max_tokens,
            max_batch_size,
        )
        self.cot_seed, self.template_dir = cot_seed, template_dir
        self.num_workers, self.seed = num_workers, seed
        self.splits: dict[str, list[Utterance]] = {}
        self.report = SkipReport()
        self._prompt_ids: dict[tuple[int, int], list[int]] = {}

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from c2ser.data.tokenizer import load_tokenizer

            self._tokenizer = load_tokenizer()
        return self._tokenizer

    # ----------------------------------------------------------------- setup: targets + filters
    def _targets(self, utt: Utterance) -> dict[str, str]:
        """Stage 1 / Stage 2 target texts of ``utt`` (manifest fields, else templates)."""
        out = {}
        if self.stage == 1 or self.keep_explicit:
            out[1] = utt.extra.get("cot_target") or explicit_target(
                utt, self.cot_seed, self.template_dir
            )
        if self.stage == 2:
            out[2] = utt.extra.get("implicit_target") or implicit_target(utt, self.template_dir)
        if self.lowercase_english and utterance_language(utt) == "en":
            out = {k: v.lower() for k, v in out.items()}
        return out

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def prompt_ids(self, stage: int, paraphrase: int = -1) -> list[int]:
        """The official prompt's ids (-1), or those of training rewording ``paraphrase``."""
        key = (stage, paraphrase)
        if key not in self._prompt_ids:
            text = prompt_for(stage) if paraphrase < 0 else TRAINING_PARAPHRASES[stage][paraphrase]
            self._prompt_ids[key] = self._encode(text)
        return self._prompt_ids[key]

    def _prompt_len(self, stage: int) -> int:
        """The longest prompt a sample of ``stage`` can get (budgets, filters)."""
        options = range(-1, len(TRAINING_PARAPHRASES[stage]) if self.prompt_paraphrase else 0)
        return max(len(self.prompt_ids(stage, i)) for i in options)

    def _stage_of(self, prefix: str) -> int:
        return self.stage if prefix == "" else 1

    def prepare_utterance(self, utt: Utterance) -> dict[str, Any]:
        """Token ids, frame count and feature path of one utterance, after the official filters.

        Raises :class:`BadInputError` naming the utterance when it is unusable or filtered.
        """
        try:
            frames = int(audio_seconds(utt.wav) * 100)
        except AudioError as e:
            raise BadInputError(f"{utt.id}: {e}") from None
        if frames > self.max_utt_frames:
            raise BadInputError(
                f"{utt.id}: too long: {frames} frames > max_utt_frames={self.max_utt_frames}"
            )
        ssl_path = None
        if self.ssl_dir is not None:
            ssl_path = self.ssl_dir / f"{utt.id}.npy"
            if not ssl_path.is_file():
                raise BadInputError(
                    f"{utt.id}: missing Emotion2Vec-S features: {ssl_path} not found"
                )
        row: dict[str, Any] = {"frames": frames, "ssl_path": str(ssl_path) if ssl_path else None}
        for stage, text in self._targets(utt).items():
            prompt, target = self.prompt_ids(stage), [*self._encode(text), EOD_ID]
            if len(target) > self.max_target_tokens:
                raise BadInputError(
                    f"{utt.id}: target too long: {len(target)} tokens > "
                    f"max_target_tokens={self.max_target_tokens}"
                )
            seq = self._prompt_len(stage) + math.ceil(frames / FRAMES_PER_TOKEN) + len(target)
            if seq > self.max_seq_tokens:
                raise BadInputError(
                    f"{utt.id}: sequence too long: {seq} tokens > max_seq_tokens={self.max_seq_tokens}"
                )
            prefix = "" if stage == self.stage else "explicit_"
            row[f"{prefix}prompt_ids"], row[f"{prefix}target_ids"] = prompt, target
        return row

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        if self.ssl_dir is not None and not self.ssl_dir.is_dir():
            raise BadInputError(
                f"data.ssl_dir={self.ssl_dir} does not exist. Extract Emotion2Vec-S utterance "
                "features into it first (`make demo` does this for the demo corpus; otherwise "
                "`c2ser extract --level utterance --checkpoint E2VS --out DIR`, then "
                "data.ssl_dir=DIR with model.ssl_dim / model.ssl_tokens matching the files), "
                "or train without them: model.use_ssl=false"
            )
        report = self.report
        for utt in read_manifest(self.manifest, self.audio_root, self.skip_bad, report=report):
            try:
                row = self.prepare_utterance(utt)
            except BadInputError as e:
                self.skip_or_raise(report, utt.id, e, context=f"{self.manifest}: ")
                continue
            utt.extra.update(row)
            self.splits.setdefault(utt.split or "train", []).append(utt)
        if report:
            self.print_report(report, str(self.manifest))
        if "train" not in self.splits:
            raise BadInputError(f"{self.manifest}: no usable utterance with split 'train'")

    # ---------------------------------------------------------------- decoding and batching
    def _ssl(self, row: dict[str, Any], wav: np.ndarray) -> torch.Tensor | None:
        if row["ssl_path"]:
            feats = load_feature(Path(row["ssl_path"]), self.ssl_dim)
        elif self.ssl_extractor is not None:
            feats = torch.as_tensor(np.asarray(self.ssl_extractor(wav)), dtype=torch.float32)
        else:
            return None
        rows = self.ssl_rows
        if feats.ndim != 2 or feats.shape[0] < rows or feats.shape[1] != self.ssl_dim:
            raise BadInputError(
                f"{row['id']}: Emotion2Vec-S features have shape {tuple(feats.shape)}, expected "
                f"({rows}, {self.ssl_dim}) (set data.ssl_dir, model.ssl_dim and model.ssl_tokens "
                "to match `c2ser extract --level utterance` output)"
            )
        return feats[:rows]  # official utt_x = the first 10 frames, so frame files work

    def decode(self, row: dict[str, Any], epoch: int | None = None) -> dict[str, Any]:
        """One sample, its mel augmented when ``epoch`` is given (training) and ``augment`` is
        set; a file that became unreadable since setup yields ``error`` (or raises)."""
        sample = {k: row[k] for k in ("id", "emotion", "language", "ssl_path", *_IDS)}
        if epoch is not None and self.prompt_paraphrase:
            sample.update(self._paraphrased(row, epoch))
        try:
            wav = load_audio(row["wav"])
            mel = log_mel(wav)
            if epoch is not None and self.augment is not None:
                rng = np.random.default_rng([self.seed, epoch, zlib.crc32(row["id"].encode())])
                mel = spec_augment(mel, rng, **self.augment)
            sample.update(mel=mel, ssl=self._ssl(row, wav), error=None)
        except BadInputError as e:
            if not self.skip_bad:
                raise
            sample.update(mel=None, ssl=None, error=str(e))
        return sample

    def _paraphrased(self, row: dict[str, Any], epoch: int) -> dict[str, list[int]]:
        """The prompts of ``row`` that this epoch rewords (``prompt_paraphrase``)."""
        rng = np.random.default_rng([self.seed, epoch, zlib.crc32(row["id"].encode()), 1])
        out = {}
        for prefix in _PAIRS:
            stage = self._stage_of(prefix)
            draw, pick = rng.random(), int(rng.integers(len(TRAINING_PARAPHRASES[stage])))
            if row[f"{prefix}prompt_ids"] is not None and draw < self.prompt_paraphrase:
                out[f"{prefix}prompt_ids"] = self.prompt_ids(stage, pick)
        return out

    @staticmethod
    def collate(samples: list[dict[str, Any]]) -> dict[str, Any] | None:
        """Pad speech, keep ids ragged; failed samples are reported and left out (``None`` if
        the whole batch failed, which the task skips)."""
        for s in samples:
            if s["error"]:
                print(f"skip: {s['id']}: {s['error']}")
        samples = [s for s in samples if not s["error"]]
        if not samples:
            return None
        mel, mask = pad_batch([s["mel"] for s in samples])
        has_ssl = samples[0]["ssl"] is not None
        batch = {
            "mel": mel,
            "mel_mask": mask,
            "ssl": torch.stack([s["ssl"] for s in samples]) if has_ssl else None,
            "id": [s["id"] for s in samples],
            "emotion": [s["emotion"] for s in samples],
            "language": [s["language"] for s in samples],
        }
        for key in _IDS:
            if samples[0][key] is not None:
                batch[key] = [list(s[key]) for s in samples]
        return batch

    def _cost(self, utt: Utterance) -> int:
        """Batch cost in frames: with ``max_tokens``, an utterance costs the larger of its frames
        and its LLM sequence scaled to frames, so ``n * max cost <= max_frames`` enforces both
        official budgets (padded frames and padded tokens) at once."""
        e = utt.extra
        frames = e["frames"]
        if not self.max_tokens:
            return frames
        text = max(
            self._prompt_len(self._stage_of(p)) + len(e[f"{p}target_ids"])
            for p in _PAIRS
            if e.get(f"{p}prompt_ids")
        )
        seq = math.ceil(frames / FRAMES_PER_TOKEN) + text
        return max(frames, math.ceil(seq * self.max_frames / self.max_tokens))

    def dataloader(self, split: str, shuffle: bool = False) -> DataLoader:
        utts = self.splits.get(split)
        if not utts:
            raise BadInputError(f"{self.manifest}: no usable utterance with split {split!r}")
        rows = [
            {"id": u.id, "wav": u.wav, "emotion": u.emotion, "language": u.language}
            | {k: u.extra.get(k) for k in ("ssl_path", *_IDS)}
            for u in utts
        ]
        world, rank = self.replicas()
        sampler = DynamicBucketSampler(
            [self._cost(u) for u in utts],
            self.max_frames,
            max_batch_size=self.max_batch_size,
            shuffle=shuffle,
            seed=self.seed,
            num_replicas=world,
            rank=rank,
        )
        train = split == "train"
        return ResumableLoader(
            _Decoded(rows, self.decode, epochs=train),
            batch_sampler=EpochTagged(sampler, len(rows)) if train else sampler,
            seed=self.seed,
            collate_fn=self.collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def has_split(self, split: str) -> bool:
        """Validation on ``split == 'val'``; none (an empty list) when the manifest has no val."""
        return split in self.splits


class _Decoded(Dataset):
    """Rows decoded on access (in the DataLoader workers). A plain Dataset rather than a
    ``datasets`` table: its transform fingerprinting would pickle the decoder, i.e. the whole
    datamodule with its tokenizer and feature extractor, on every loader creation (seconds)."""

    def __init__(
        self, rows: list[dict[str, Any]], decode: Callable[..., dict], epochs: bool = False
    ) -> None:
        self.rows, self.decode, self.epochs = rows, decode, epochs

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        """Row ``i`` (with ``epochs``: row ``i % n`` of epoch ``i // n``, see EpochTagged)."""
        if not self.epochs:
            return self.decode(self.rows[i])
        epoch, i = divmod(i, len(self.rows))
        return self.decode(self.rows[i], epoch)
