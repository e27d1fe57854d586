"""From audio to an emotion in one call: ``Pipeline.from_pretrained(bundle)(inputs)``.

    from c2ser import Pipeline
    pipe = Pipeline.from_pretrained("data/models/c2ser_bundle", device="cpu")
    pipe("speech.wav")
    # {'input': 'speech.wav', 'emotion': 'happy', 'scores': {'angry': 0.01, ...},
    #  'text': "The speaker's emotion is happy.", 'language': 'en'}
    pipe([wav_48k, "b.flac"], sampling_rate=48000)   # arrays at any rate, paths decoded

Inside, per batch of inputs sorted by length (little padding): the audio is decoded, down-mixed
and resampled to 16 kHz (:func:`c2ser.data.audio.resample`, the official front end),
Emotion2Vec-S computes the utterance rows the model was trained on (the bundle's
``utterance_mode``; :func:`c2ser.inference.emotion2vec_s.extract_batch`), and the C2SER-LLM
either scores the 7 Stage 2 answers (``mode="score"``, :mod:`c2ser.inference.score`: label
probabilities, always a label) or generates (``mode="generate"``: the answer text, its parsed
label, ``scores`` None). There is no separate extraction step and nothing is written to disk.

Bad inputs follow the rule of every c2ser runner (:func:`c2ser.inference.runner.failer`): the
first one raises :class:`~c2ser.core.errors.BadInputError` naming it, unless ``skip_bad``, which
returns ``None`` for it and lists it in :attr:`Pipeline.failed`. A batch that fails as a whole is
retried one input at a time, so one bad input costs only itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from c2ser.core.errors import BadInputError, SkipReport
from c2ser.core.language import language_of
from c2ser.core.parse import parse_emotion
from c2ser.core.prompts import prompt_for
from c2ser.data.audio import SAMPLE_RATE, load_audio, resample
from c2ser.data.mel import log_mel
from c2ser.data.tokenizer import load_tokenizer
from c2ser.inference.emotion2vec_s import extract_batch, too_short
from c2ser.inference.generate import MAX_NEW_TOKENS, collate_items, generation_kwargs
from c2ser.inference.hardware import resolve_device
from c2ser.inference.runner import failer, run_or_retry_singly
from c2ser.inference.score import score_labels
from c2ser.models.bundle import load_bundle
from c2ser.models.c2ser_llm import C2SER
from c2ser.models.emotion2vec_s import Emotion2VecS

Input = str | os.PathLike | np.ndarray | torch.Tensor
MODES = ("score", "generate")
MAX_E2VS_SECONDS = 60.0  # longer audio goes through Emotion2Vec-S in chunks (never truncated)


class Pipeline:
    """A C2SER-LLM and its Emotion2Vec-S, ready to label audio (see the module doc)."""

    def __init__(
        self,
        model: C2SER,
        emotion2vec: Emotion2VecS | None,
        utterance_mode: str | None,
        batch_size: int = 8,
    ) -> None:
        if model.config.use_ssl and emotion2vec is None:
            raise BadInputError("this C2SER-LLM reads Emotion2Vec-S features: give its model")
        self.model = model.eval()
        self.emotion2vec = emotion2vec
        self.utterance_mode = utterance_mode
        self.batch_size = batch_size
        self.device = next(model.parameters()).device
        self.tokenizer = load_tokenizer()
        self.failed = SkipReport()

    @classmethod
    def from_pretrained(
        cls,
        bundle: str | os.PathLike,
        device: str | torch.device | None = None,
        dtype: str | None = None,
        batch_size: int = 8,
    ) -> Pipeline:
        """Load a model bundle (:mod:`c2ser.models.bundle`) on ``device`` (default: cuda when
        available); ``dtype`` overrides the LLM's (e.g. ``float32`` for a bf16 release on CPU)."""
        device = resolve_device(device)
        overrides = {"llm_dtype": dtype} if dtype else {}
        model, e2vs, cfg = load_bundle(bundle, device, **overrides)
        return cls(model, e2vs, cfg.utterance_mode, batch_size)

    def __call__(
        self,
        inputs: Input | Sequence[Input],
        stage: int = 2,
        mode: str = "score",
        sampling_rate: int | None = None,
        language: str | None = None,
        decoding: str = "greedy",
        max_new_tokens: int = MAX_NEW_TOKENS,
        skip_bad: bool = False,
        progress: Callable[[int], Any] | None = None,
    ) -> dict[str, Any] | list[dict[str, Any] | None] | None:
        """Label one input (a path or a waveform) or a list of them; see the module doc.

        Args:
            stage: the prompt: 2 asks for the emotion directly (what the released model and
                the Stage 2 demo model answer), 1 for the chain of thought.
            mode: ``score`` (label probabilities) or ``generate`` (free text, parsed).
            sampling_rate: the rate of waveform inputs (any; resampled to 16 kHz). Required
                for arrays; files carry their own. A 2-D array is down-mixed over its shorter
                axis (the channels).
            language: ``en`` / ``zh`` of every input, or None: the score mode then scores the
                answers of both languages and keeps the likelier language.
            decoding: a generation preset of :data:`c2ser.inference.generate.DECODING`.
            skip_bad: give ``None`` for bad inputs (listed in :attr:`failed`) instead of
                raising :class:`BadInputError` at the first.
            progress: called with the number of inputs each finished batch covered.
        """
        single = isinstance(inputs, str | os.PathLike | np.ndarray | torch.Tensor)
        items = [inputs] if single else list(inputs)
        if mode not in MODES:
            raise BadInputError(f"mode must be one of {MODES}, got {mode!r}")
        gen = generation_kwargs(decoding, max_new_tokens) if mode == "generate" else None
        self.failed = SkipReport()
        fail = failer(self.failed, skip_bad)
        prompt = self.tokenizer.encode(prompt_for(stage), add_special_tokens=False)
        loaded: list[tuple[int, str, np.ndarray]] = []
        for i, x in enumerate(items):
            name = _name(x, i)
            try:
                loaded.append((i, name, self._load(x, sampling_rate)))
            except BadInputError as e:
                fail(name, str(e).removeprefix(f"{name}: "))
                if progress:
                    progress(1)
        loaded.sort(key=lambda it: -len(it[2]))
        results: list[dict[str, Any] | None] = [None] * len(items)

        def run(batch: list[tuple[int, str, np.ndarray]]) -> list[dict[str, Any]]:
            return self._label([w for _, _, w in batch], prompt, gen, language)

        def failed(item: tuple[int, str, np.ndarray], e: Exception) -> None:
            fail(item[1], f"inference failed: {e}")
            if progress:
                progress(1)

        for start in range(0, len(loaded), self.batch_size):
            for batch, rows in run_or_retry_singly(
                loaded[start : start + self.batch_size], run, failed
            ):
                for (i, name, _), row in zip(batch, rows, strict=True):
                    results[i] = {"input": name, **row}
                if progress:
                    progress(len(batch))
        return results[0] if single else results

    # ------------------------------------------------------------------ steps
    def _load(self, x: Input, sampling_rate: int | None) -> np.ndarray:
        """One input as 16 kHz mono float32, refused when the models cannot read it."""
        path = isinstance(x, str | os.PathLike)
        wav = load_audio(x) if path else _waveform(x, sampling_rate)
        if self.emotion2vec is not None and (reason := too_short(self.emotion2vec, len(wav))):
            raise BadInputError(reason)
        cfg = self.model.config
        if cfg.use_whisper and len(wav) > cfg.max_audio_seconds * SAMPLE_RATE:
            raise BadInputError(
                f"too long: {len(wav) / SAMPLE_RATE:.1f} s > {cfg.max_audio_seconds:g} s"
            )
        return wav

    def _label(
        self,
        wavs: list[np.ndarray],
        prompt: list[int],
        gen: dict[str, Any] | None,
        language: str | None,
    ) -> list[dict[str, Any]]:
        """Features, then scores or answers, of one batch of waveforms."""
        cfg = self.model.config
        ssl: list[torch.Tensor | None] = [None] * len(wavs)
        if cfg.use_ssl:
            rows = extract_batch(
                self.emotion2vec, wavs, "utterance", self.utterance_mode,
                int(MAX_E2VS_SECONDS * SAMPLE_RATE),
            )  # fmt: skip
            ssl = [r[: cfg.ssl_tokens] for r in rows]
        mels = [log_mel(w, n_mels=cfg.n_mels) if cfg.use_whisper else None for w in wavs]
        items = [{"mel": m, "ssl": s} for m, s in zip(mels, ssl, strict=True)]
        batch = collate_items(items, self.device)
        prompts = [prompt] * len(wavs)
        if gen is None:
            scored = score_labels(self.model, *batch, prompts, [language] * len(wavs))
            return [
                {"emotion": s.emotion, "scores": s.probs, "text": s.answer, "language": s.language}
                for s in scored
            ]
        answers = self.model.generate(*batch, prompts, **gen)
        out = []
        for ids in answers:
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            lang = language or language_of(None, "", text)
            out.append(
                {
                    "emotion": parse_emotion(text, lang),
                    "scores": None,
                    "text": text,
                    "language": lang,
                }
            )
        return out


def _name(x: Input, i: int) -> str:
    """How an input is called in results and failures: its path, or ``input <i>``."""
    return str(x) if isinstance(x, str | os.PathLike) else f"input {i}"


def _waveform(x: np.ndarray | torch.Tensor, sampling_rate: int | None) -> np.ndarray:
    """A waveform array at ``sampling_rate`` -> 16 kHz mono float32 (see ``__call__``)."""
    if sampling_rate is None:
        raise BadInputError("a waveform needs its sampling_rate= (files carry their own)")
    wav = x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if wav.ndim == 2:
        wav = wav.mean(axis=int(np.argmin(wav.shape)))
    if wav.ndim != 1:
        raise BadInputError(f"a waveform is 1-D (or 2-D with channels), got shape {wav.shape}")
    if wav.size == 0:
        raise BadInputError("zero-length audio")
    if not np.isfinite(wav).all():
        raise BadInputError("the waveform has NaN or infinite samples")
    return resample(wav.astype(np.float32), int(sampling_rate))
