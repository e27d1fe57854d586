"""C2SER-LLM: Whisper encoder + Emotion2Vec-S tokens -> connector -> Qwen2 with LoRA.

Data flow (B batch; widths for ``c2ser_7b``)::

    mel (B, T, 80) --SpeechEncoder--> (B, T/2, 1024) --Downsampler--> (B, T/8, 1024)
    ssl (B, 10, 768) --zero-pad to 1024 (or Linear when the encoder is narrower)--> (B, 10, 1024)
    [ssl ; speech] --Connector--> --projection--> (B, 10 + T/8, 3584)
    LLM input per row: [prompt][BOS][ssl x 10 ; speech][EOS][target]

Rows are packed left-aligned (right padding for training, left padding for generation) with
contiguous positions over the valid tokens. The official training forward right-pads each block
separately (holes in the mask, positions = cumsum(mask) - 1): with masked holes and contiguous
positions both give the same attention, so the packed layout is equivalent and cheaper.

**Batch contract** (what the SFT datamodule yields and :mod:`c2ser.inference.generate` builds)::

    mel         (B, T, 80) float32 from c2ser.data.mel.log_mel, right-padded
    mel_mask    (B, T) bool, True = padding
    ssl         (B, 10, 768) float32 Emotion2Vec-S utterance rows, or None when use_ssl=False
    prompt_ids  list[list[int]]   raw prompt text ids (no template, no special tokens)
    target_ids  list[list[int]]   target ids ending with EOD_ID 151643 (absent at inference)
    ids, emotion, language        metadata lists (ignored by the model)

The Qwen2 base LLM is frozen; LoRA and every speech-side part are trainable by default (the
official ``link_and_encoder_and_lora`` recipe), each switchable with :meth:`set_trainable`; the
extra ``llm`` group fine-tunes the base LLM itself (the tiny demo models, whose Qwen2 is random).
Speech-side parameters stay float32; the LLM runs in ``llm_dtype`` and the projected speech
embeddings are cast to it (no reliance on autocast).
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import CausalLMOutputWithPast

from c2ser.core.tokens import EOD_ID
from c2ser.models.adapter import Connector, Downsampler, PoolDownsampler
from c2ser.models.speech_encoder import SpeechEncoder, encoder_config

# What the official recipe trains (``link_and_encoder_and_lora``); "llm" (the base Qwen2 itself) is
# an extra group for random demo LLMs, which have nothing pretrained to keep.
# "conv" is the release's (its weights load into it); "pool" is for speech sides trained from
# scratch on little data (the demo, see PoolDownsampler)
DOWNSAMPLERS: dict[str, type[nn.Module]] = {"conv": Downsampler, "pool": PoolDownsampler}
OFFICIAL_GROUPS = ("encoder", "downsampler", "connector", "projection", "speech_embeddings", "lora")
PARAM_GROUPS = (*OFFICIAL_GROUPS, "llm")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "down_proj")


@dataclass
class C2SERConfig:
    """Every size and switch of the model (defaults: the released C2SER, preset ``7b``).

    ``llm_path`` is a local Qwen2 directory (no hub access); ``llm_config`` instead builds a random
    Qwen2 from a config dict (tests, demos). ``encoder_init`` optionally initialises the speech
    encoder from a transformers Whisper directory (e.g. the converted tiny.en of ``c2ser_demo``).
    ``use_whisper=False`` is the official training forward's ``only_ssl=True`` (the paper's "w/o
    Whisper" ablation); ``use_ssl=False`` is "w/o Emotion2Vec-S". Emotion2Vec-S rows are
    zero-padded to the encoder width as released; an encoder narrower than ``ssl_dim`` (tiny and
    demo models) gets a Linear ``ssl_proj`` instead. Audio longer than the encoder's 30 s window is
    encoded in 30 s chunks; above ``max_audio_seconds`` it is refused. ``trainable`` lists the
    PARAM_GROUPS that train (default: the official set, base LLM frozen; adding ``llm`` fine-tunes
    the whole base LLM, which the tiny demo models do because theirs is random);
    ``gradient_checkpointing`` covers the encoder and the LLM. ``downsampler="pool"`` replaces the
    release's conv downsampler by :class:`~c2ser.models.adapter.PoolDownsampler` (models trained
    from scratch on little data; it needs statistics of the encoder output, see
    :meth:`C2SER.needs_speech_statistics`). ``vocab`` (random LLMs only) keeps one LLM row per
    listed tokenizer id, plus one for every other id (:mod:`c2ser.data.vocab`; a path to its JSON
    list is read into the config, so exported models carry the list); None: every Qwen2 row.
    """

    n_mels: int = 80
    encoder_dim: int = 1024
    encoder_layers: int = 24
    encoder_heads: int = 16
    encoder_ffn: int = 4096
    encoder_max_positions: int = 1500
    encoder_init: str | None = None
    downsampler: str = "conv"
    connector_layers: int = 4
    connector_heads: int = 4
    connector_ffn: int = 2560
    connector_max_positions: int = 5000
    dropout: float = 0.1
    use_whisper: bool = True
    use_ssl: bool = True
    ssl_dim: int = 768
    ssl_tokens: int = 10
    llm_path: str | None = None
    llm_config: dict[str, Any] | None = None
    llm_dtype: str = "bfloat16"
    attn_implementation: str | None = None
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    lora_targets: list[str] = field(default_factory=lambda: list(LORA_TARGETS))
    trainable: list[str] = field(default_factory=lambda: list(OFFICIAL_GROUPS))
    max_audio_seconds: float = 300.0
    gradient_checkpointing: bool = False
    vocab: list[int] | str | None = None

    def __post_init__(self) -> None:
        if not (self.use_whisper or self.use_ssl):
            raise ValueError("use_whisper and use_ssl cannot both be False: no speech input left")
        if (self.llm_path is None) == (self.llm_config is None):
            raise ValueError("give exactly one of llm_path (local Qwen2 dir) and llm_config")
        steps = self.ssl_tokens * self.use_ssl + self.use_whisper * self.max_audio_seconds * 12.5
        if steps > self.connector_max_positions:
            raise ValueError(
                f"max_audio_seconds={self.max_audio_seconds} needs {steps:.0f} connector positions "
                f"> connector_max_positions={self.connector_max_positions}"
            )
        if self.downsampler not in DOWNSAMPLERS:
            raise ValueError(f"downsampler must be one of {sorted(DOWNSAMPLERS)}")
        if isinstance(self.vocab, str | os.PathLike):
            self.vocab = _read_vocab(self.vocab)
        if self.vocab is not None:
            self.vocab = sorted({int(i) for i in self.vocab} | {EOD_ID})
        unknown = set(self.trainable) - set(PARAM_GROUPS)
        if unknown:
            raise ValueError(f"unknown trainable groups {sorted(unknown)}; known: {PARAM_GROUPS}")


# Named sizes, the one place they are written (``preset:`` of conf/model/c2ser_*.yaml; other
# fields there are switches). "7b" is the release (the C2SERConfig defaults): Whisper-medium-shaped
# encoder, 4-block connector, Qwen2-7B from llm_path. "tiny" is every part at toy width for CPU
# tests and demos: encoder 64 wide, 2 layers; connector 2 blocks; a random Qwen2 of hidden 64 and
# 2 layers shaped like Qwen2-7B (GQA, RoPE 1e6, RMSNorm 1e-6) with the real tokenizer's 151,936-row
# vocabulary, so the same data pipeline and prompts apply.
PRESETS: dict[str, dict[str, Any]] = {
    "7b": {},
    "tiny": {
        "encoder_dim": 64,
        "encoder_layers": 2,
        "encoder_heads": 4,
        "encoder_ffn": 256,
        "connector_layers": 2,
        "connector_ffn": 256,
        "llm_config": {
            "model_type": "qwen2",
            "vocab_size": 151_936,
            "hidden_size": 64,
            "intermediate_size": 256,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "rope_theta": 1_000_000.0,
            "rms_norm_eps": 1e-6,
            "tie_word_embeddings": True,
            "bos_token_id": EOD_ID,
            "eos_token_id": EOD_ID,
        },
    },
}


def preset_config(preset: str = "7b", **overrides: Any) -> C2SERConfig:
    """The config of a named size with ``overrides`` (an ``llm_config`` dict updates the
    preset's, so ``llm_config={"initializer_range": 0.125}`` keeps the tiny Qwen2's sizes)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown C2SER preset {preset!r}; known: {sorted(PRESETS)}")
    base = copy.deepcopy(PRESETS[preset])
    extra = overrides.pop("llm_config", None)
    if extra is not None:
        base["llm_config"] = {**base.get("llm_config", {}), **extra}
    return C2SERConfig(**(base | overrides))


class C2SER(nn.Module):
    """The C2SER-LLM (see module docstring for shapes, layout and the batch contract).

    Built from a :class:`C2SERConfig`, or flat keywords over a named size (``preset``, see
    :data:`PRESETS`), the way ``conf/model/c2ser_*.yaml`` configure it.
    """

    def __init__(
        self, config: C2SERConfig | None = None, preset: str = "7b", **kwargs: Any
    ) -> None:
        super().__init__()
        self.config = cfg = config or preset_config(preset, **kwargs)
        d = cfg.encoder_dim
        self.encoder = SpeechEncoder(
            encoder_config(
                d, cfg.encoder_layers, cfg.encoder_heads, cfg.encoder_ffn, cfg.n_mels,
                cfg.encoder_max_positions, cfg.dropout,
            )
        )  # fmt: skip
        if cfg.encoder_init:
            from c2ser.models.checkpoint import load_whisper_encoder

            load_whisper_encoder(self.encoder, cfg.encoder_init)
        self.downsampler = DOWNSAMPLERS[cfg.downsampler](d)
        self.ssl_proj = nn.Linear(cfg.ssl_dim, d) if cfg.use_ssl and cfg.ssl_dim > d else None
        self.connector = Connector(
            d, cfg.connector_layers, cfg.connector_heads, cfg.connector_ffn, cfg.dropout,
            cfg.connector_max_positions,
        )  # fmt: skip
        self.llm = _load_llm(cfg)
        if cfg.vocab is not None:
            # tokenizer id -> LLM row (the last row for ids outside the vocabulary) and back (the
            # extra row reads as end-of-text: an answer can only stop there)
            rows = self.llm.get_input_embeddings().num_embeddings
            if rows != len(cfg.vocab) + 1:
                raise ValueError(
                    f"model.vocab keeps {len(cfg.vocab)} token ids but the LLM has {rows} rows: a "
                    "corpus vocabulary is for a random LLM (llm_config) or one saved with it; "
                    "set model.vocab=null"
                )
            # the last entry (one past the largest kept id) is the extra row, for any other id
            lookup = torch.full((cfg.vocab[-1] + 2,), len(cfg.vocab))
            lookup[cfg.vocab] = torch.arange(len(cfg.vocab))
            self.register_buffer("vocab_rows", lookup, persistent=False)
            self.register_buffer("vocab_ids", torch.tensor([*cfg.vocab, EOD_ID]), persistent=False)
        hidden = self.llm.get_input_embeddings().embedding_dim
        self.projection = nn.Linear(d, hidden)
        self.speech_embed = nn.Embedding(2, hidden)  # official speech_token_emded rows 4097, 4098
        nn.init.normal_(self.speech_embed.weight, std=0.02)  # LLM embedding scale, not N(0, 1)
        if cfg.gradient_checkpointing:
            for module in (self.encoder, self.base_llm()):
                _enable_checkpointing(module)
        self.set_trainable(cfg.trainable)

    # ----------------------------------------------------------------- vocabulary
    def llm_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Tokenizer ids -> the LLM's rows (the same ids unless ``config.vocab`` trims it)."""
        if self.config.vocab is None:
            return ids
        return self.vocab_rows[ids.clamp(max=len(self.vocab_rows) - 1)]

    def tokenizer_ids(self, rows: torch.Tensor) -> torch.Tensor:
        """The LLM's rows -> tokenizer ids (inverse of :meth:`llm_ids` inside the vocabulary)."""
        return rows if self.config.vocab is None else self.vocab_ids[rows]

    # ----------------------------------------------------------------- trainable parts
    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters per group (PARAM_GROUPS; ``llm`` is the base LLM without LoRA)."""
        lora = [p for n, p in self.llm.named_parameters() if "lora_" in n]
        lora_ids = {id(p) for p in lora}
        return {
            "encoder": [
                p for n, p in self.encoder.named_parameters() if "embed_positions" not in n
            ],
            "downsampler": list(self.downsampler.parameters()),
            "connector": [
                *self.connector.parameters(),
                *(self.ssl_proj or nn.Module()).parameters(),
            ],
            "projection": list(self.projection.parameters()),
            "speech_embeddings": list(self.speech_embed.parameters()),
            "lora": lora,
            "llm": [p for p in self.llm.parameters() if id(p) not in lora_ids],
        }

    def set_trainable(self, groups: Iterable[str]) -> None:
        """Train exactly ``groups`` (names from PARAM_GROUPS); everything else is frozen.

        Whisper's sinusoidal positions always stay frozen, and so do the encoder and downsampler
        when ``use_whisper=False`` (unused parameters would break DDP).
        """
        groups = set(groups)
        if groups - set(PARAM_GROUPS):
            raise ValueError(f"unknown groups {sorted(groups - set(PARAM_GROUPS))}")
        if not self.config.use_whisper:
            groups -= {"encoder", "downsampler"}
        for p in self.parameters():
            p.requires_grad_(False)
        for name, params in self.param_groups().items():
            for p in params:
                p.requires_grad_(name in groups)
        self.config.trainable = [g for g in PARAM_GROUPS if g in groups]

    def trainable_groups(self) -> list[str]:
        """Names of the groups with trainable parameters, in PARAM_GROUPS order."""
        return [n for n, ps in self.param_groups().items() if ps and ps[0].requires_grad]

    # ----------------------------------------------------------------- speech -> LLM embeddings
    def needs_speech_statistics(self) -> bool:
        """Whether the pool downsampler is in use and still lacks its encoder-output statistics."""
        pool = isinstance(self.downsampler, PoolDownsampler)
        return self.config.use_whisper and pool and not bool(self.downsampler.ready)

    def encode_speech(
        self, mel: torch.Tensor | None, mel_mask: torch.Tensor | None, ssl: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> speech embeddings (B, S, H) in the LLM dtype, left-aligned, and (B,) lengths."""
        cfg, parts = self.config, []
        batch = (ssl if mel is None else mel).shape[0]
        lengths = torch.zeros(batch, dtype=torch.long, device=self.projection.weight.device)
        if cfg.use_ssl:
            if ssl is None:
                raise ValueError(
                    "this model uses Emotion2Vec-S features but the batch has ssl=None"
                )
            ssl = ssl[:, : cfg.ssl_tokens].to(self.projection.weight)
            d = cfg.encoder_dim
            parts.append(
                self.ssl_proj(ssl) if self.ssl_proj else F.pad(ssl, (0, d - ssl.shape[-1]))
            )
            lengths = lengths + cfg.ssl_tokens
        if cfg.use_whisper:
            if mel is None or mel_mask is None:
                raise ValueError("this model uses the Whisper encoder but the batch has no mel")
            frames = (~mel_mask).sum(1)
            if frames.max() > cfg.max_audio_seconds * 100:
                raise ValueError(
                    f"audio of {frames.max() / 100:.1f} s exceeds max_audio_seconds="
                    f"{cfg.max_audio_seconds:g}; split it or raise the limit"
                )
            x, pad = self.encoder(mel.to(self.projection.weight), mel_mask)
            x, speech_lengths = self.downsampler(x, (~pad).sum(1))
            parts.append(x[:, : int(speech_lengths.max())])
            lengths = lengths + speech_lengths
        x = torch.cat(parts, dim=1)
        x = self.projection(self.connector(x, lengths))
        return x.to(self.llm.get_input_embeddings().weight.dtype), lengths

    def assemble(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        prompt_ids: list[list[int]],
        target_ids: list[list[int]] | None = None,
        left_pad: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pack ``[prompt][BOS][speech][EOS][target]`` rows.

        Returns ``(inputs_embeds (B, L, H), attention_mask (B, L) long, position_ids (B, L),
        labels (B, L))``; labels are -100 except on target tokens (unshifted, HF convention).
        """
        targets = target_ids or [[] for _ in prompt_ids]
        dev = speech.device
        embed = self.llm.get_input_embeddings()
        flat = [i for p, t in zip(prompt_ids, targets) for i in (*p, *t)]
        flat = self.llm_ids(torch.tensor(flat, dtype=torch.long, device=dev))
        text = (
            embed(flat)
            .to(speech.dtype)
            .split([len(p) + len(t) for p, t in zip(prompt_ids, targets)])
        )
        bos, eos = self.speech_embed.weight.to(speech.dtype).split(1)
        rows, labels = [], []
        for b, (p, t) in enumerate(zip(prompt_ids, targets)):
            s = int(speech_lengths[b])
            rows.append(torch.cat([text[b][: len(p)], bos, speech[b, :s], eos, text[b][len(p) :]]))
            labels.append(torch.tensor([-100] * (len(p) + s + 2) + list(t), device=dev))
        lengths = torch.tensor([len(r) for r in rows], device=dev)
        n = int(lengths.max())
        pos = torch.arange(n, device=dev)[None, :]
        mask = pos < lengths[:, None]
        if left_pad:
            mask = mask.flip(1)
            rows, labels = [r.flip(0) for r in rows], [lab.flip(0) for lab in labels]
        embeds = nn.utils.rnn.pad_sequence(rows, batch_first=True)
        label_t = nn.utils.rnn.pad_sequence(labels, batch_first=True, padding_value=-100)
        if left_pad:
            embeds, label_t = embeds.flip(1), label_t.flip(1)
        label_t = torch.where(label_t < 0, label_t, self.llm_ids(label_t.clamp(min=0)))
        position_ids = (mask.long().cumsum(1) - 1).clamp(min=0)
        return embeds, mask.long(), position_ids, label_t

    # ----------------------------------------------------------------- training / scoring
    def _teacher_forced(
        self,
        mel: torch.Tensor | None,
        mel_mask: torch.Tensor | None,
        ssl: torch.Tensor | None,
        prompt_ids: list[list[int]],
        target_ids: list[list[int]],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, nn.Module]:
        """The LLM's last hidden states over packed rows, the next-token labels ``(B, L-1)``,
        the mask of positions that predict a target token, and the LM head."""
        speech, lengths = self.encode_speech(mel, mel_mask, ssl)
        embeds, mask, position_ids, labels = self.assemble(speech, lengths, prompt_ids, target_ids)
        base = self.base_llm()
        hidden = base.model(
            inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state
        shifted = labels[:, 1:]
        return hidden, shifted, shifted != -100, base.get_output_embeddings()

    def forward(
        self,
        mel: torch.Tensor | None,
        mel_mask: torch.Tensor | None,
        ssl: torch.Tensor | None,
        prompt_ids: list[list[int]],
        target_ids: list[list[int]],
        return_logits: bool = False,
    ) -> CausalLMOutputWithPast:
        """Teacher-forced pass: ``.loss`` is the token-mean cross-entropy over target tokens.

        The LM head is applied only where a target token is predicted (a 152k-way softmax over
        the speech and prompt positions would be wasted memory); ``return_logits=True`` also
        returns full ``(B, L, V)`` logits in the packed layout of :meth:`assemble`.
        """
        hidden, shifted, sel, head = self._teacher_forced(
            mel, mel_mask, ssl, prompt_ids, target_ids
        )
        loss = None
        if sel.any():
            logits_sel = head(hidden[:, :-1][sel]).float()
            loss = F.cross_entropy(logits_sel, shifted[sel])
        return CausalLMOutputWithPast(loss=loss, logits=head(hidden) if return_logits else None)

    def target_logprobs(
        self,
        mel: torch.Tensor | None,
        mel_mask: torch.Tensor | None,
        ssl: torch.Tensor | None,
        prompt_ids: list[list[int]],
        target_ids: list[list[int]],
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """Teacher-forced log-probability of each target token, ``(B, longest target)``, 0 past
        a row's end: the per-token scores of sampled answers that policy-gradient training needs
        (:mod:`c2ser.tasks.grpo`). ``temperature`` divides the logits, so the scores are those
        of the distribution the answers were sampled from. As :meth:`forward`, the LM head runs
        only where a target token is predicted."""
        hidden, shifted, sel, head = self._teacher_forced(
            mel, mel_mask, ssl, prompt_ids, target_ids
        )
        logits = head(hidden[:, :-1][sel]).float() / temperature
        logp = -F.cross_entropy(logits, shifted[sel], reduction="none")
        n = torch.tensor([len(t) for t in target_ids], device=logp.device)
        out = logp.new_zeros(len(target_ids), int(n.max()))
        out[torch.arange(out.shape[1], device=logp.device)[None, :] < n[:, None]] = logp
        return out

    # ----------------------------------------------------------------- inference
    @torch.inference_mode()
    def generate(
        self,
        mel: torch.Tensor | None,
        mel_mask: torch.Tensor | None,
        ssl: torch.Tensor | None,
        prompt_ids: list[list[int]],
        max_new_tokens: int = 400,
        num_beams: int = 1,
        do_sample: bool = False,
        **gen: Any,
    ) -> list[list[int]]:
        """Batched generation (left padding, KV cache, eval mode); new token ids per row.

        Returned ids stop before the first ``EOD_ID`` (151643). ``gen`` goes to a fresh
        ``GenerationConfig`` (e.g. ``repetition_penalty``, ``top_p``), so nothing is inherited
        from the LLM directory's ``generation_config.json``. Greedy batched output equals
        one-at-a-time output.
        """
        from transformers import GenerationConfig

        was_training = self.training
        self.eval()
        try:
            speech, lengths = self.encode_speech(mel, mel_mask, ssl)
            embeds, mask, _, _ = self.assemble(speech, lengths, prompt_ids, left_pad=True)
            eod = int(self.llm_ids(torch.tensor(EOD_ID)))
            config = GenerationConfig(
                max_new_tokens=max_new_tokens,
                num_beams=num_beams,
                do_sample=do_sample,
                eos_token_id=eod,
                pad_token_id=eod,
                **gen,
            )
            with warnings.catch_warnings():  # penalising generated ids only is the official way
                warnings.filterwarnings("ignore", "Passing `repetition_penalty`", UserWarning)
                out = self.llm.generate(
                    inputs_embeds=embeds, attention_mask=mask, generation_config=config
                )
        finally:
            self.train(was_training)
        result = []
        for row in self.tokenizer_ids(out).tolist():
            result.append(row[: row.index(EOD_ID)] if EOD_ID in row else row)
        return result

    # ----------------------------------------------------------------- persistence
    def base_llm(self) -> nn.Module:
        """The causal LM without its LoRA wrapper."""
        return self.llm.get_base_model() if hasattr(self.llm, "get_base_model") else self.llm

    @property
    def trains_llm(self) -> bool:
        """Whether the base LLM itself is fine-tuned (the ``llm`` group)."""
        return "llm" in self.config.trainable

    def save_pretrained(self, out_dir: str | os.PathLike, trainable_only: bool = True) -> Path:
        """Write a model directory: :func:`c2ser.models.checkpoint.save_pretrained`."""
        from c2ser.models import checkpoint

        return checkpoint.save_pretrained(self, out_dir, trainable_only)

    @classmethod
    def from_pretrained(
        cls, model_dir: str | os.PathLike, device: str | torch.device | None = None, **overrides
    ) -> C2SER:
        """Load a model directory: :func:`c2ser.models.checkpoint.from_pretrained`."""
        from c2ser.models import checkpoint

        return checkpoint.from_pretrained(model_dir, device, **overrides)


def _enable_checkpointing(model: nn.Module) -> None:
    """Non-reentrant activation checkpointing (works when only LoRA or only adapters train)."""
    enable = getattr(model, "activation_checkpointing_enable", None)  # transformers >= 5.x
    (enable or model.gradient_checkpointing_enable)({"use_reentrant": False})


def _read_vocab(path: str | os.PathLike) -> list[int]:
    """``model.vocab`` given as a path: the JSON list of :func:`c2ser.data.vocab.write_vocab`."""
    import json

    from c2ser.core.errors import BadInputError

    p = Path(path)
    if not p.is_file():
        raise BadInputError(
            f"model.vocab={p}: not found. Build it from the training manifest with `c2ser vocab "
            f"--manifest MANIFEST --out {p}` (make demo does for the demo corpus), or set "
            "model.vocab=null for the tokenizer's whole vocabulary"
        )
    try:
        vocab = json.loads(p.read_text())
    except ValueError:
        vocab = None
    if not (isinstance(vocab, list) and vocab and all(isinstance(i, int) for i in vocab)):
        raise BadInputError(f"model.vocab={p}: expected a JSON list of token ids")
    return vocab


def _load_llm(cfg: C2SERConfig) -> nn.Module:
    """Qwen2 causal LM from a local directory (or a random one from ``llm_config``) + LoRA."""
    from transformers import AutoConfig, AutoModelForCausalLM

    dtype = getattr(torch, cfg.llm_dtype)
    kw = {"attn_implementation": cfg.attn_implementation} if cfg.attn_implementation else {}
    if cfg.llm_path is not None:
        if not (Path(cfg.llm_path) / "config.json").is_file():
            raise FileNotFoundError(
                f"{cfg.llm_path}: no Qwen2 checkpoint (config.json) here; set llm_path "
                "(paths.llm_dir / $C2SER_LLM_DIR) to a local Qwen2 directory"
            )
        llm = AutoModelForCausalLM.from_pretrained(cfg.llm_path, dtype=dtype, **kw)
    else:
        llm_cfg = dict(cfg.llm_config)
        if cfg.vocab is not None:  # one row per kept id + one for the others; EOD at its row
            eod = cfg.vocab.index(EOD_ID)
            llm_cfg.update(vocab_size=len(cfg.vocab) + 1, bos_token_id=eod, eos_token_id=eod)
        llm_config = AutoConfig.for_model(llm_cfg.pop("model_type", "qwen2"), **llm_cfg)
        llm = AutoModelForCausalLM.from_config(llm_config, dtype=dtype, **kw)
    llm.requires_grad_(False)
    if cfg.lora_r <= 0:
        return llm
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.lora_targets),
        bias="none",
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():  # peft still asks for a name transformers 5 deprecates
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
        return get_peft_model(llm, lora)
