"""Closed-set label scoring: the probability of each of the 7 emotions, with no free text to parse.

The paper maps free-text answers to labels with a second LLM. A Stage 2 model was trained to
answer with exactly one sentence per label (``The speaker's emotion is happy.`` /
``这条语音的情感为高兴``, :func:`c2ser.data.cot.implicit_target`), so the label set can be scored
directly: for every emotion e, the log-likelihood of its answer sentence a_e (with the closing
``EOD_ID``, as in training) after the prompt and the speech,

    log p(a_e | x) = sum_j log p(a_e[j] | prompt, speech, a_e[:j]),

and ``softmax_e log p(a_e | x)`` over the 7 is the label distribution. Every answer is
parseable by construction, and the probabilities are exact under the model (no sampling).

One batched pass per batch of utterances: the shared prefix ``[prompt][BOS][speech][EOS]`` is
run once (left-padded, as for generation) into a KV cache, the cache is repeated over the
candidates of each utterance, and all candidates are run in one forward on top of it. The LM
head is applied only at the positions whose token is scored (in chunks: a 152k-way softmax over
every position of 14 candidates x a batch would be hundreds of MB).

Language: the answer sentences are those of the utterance's language. When it is not known,
the candidates of every template language are scored, the language is the one whose 7 answers
are the more likely together (the model answers in the language it hears), and the
probabilities are those of that language's 7.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch

from c2ser.core.labels import EMOTIONS
from c2ser.core.tokens import EOD_ID
from c2ser.data.cot import TEMPLATE_DIR, implicit_target
from c2ser.data.manifest import Utterance
from c2ser.data.tokenizer import load_tokenizer
from c2ser.models.c2ser_llm import C2SER

HEAD_CHUNK = 256  # scored positions per LM-head call (bounds the (N, vocab) logits)


def template_languages() -> tuple[str, ...]:
    """Languages with answer templates (``c2ser/resources/cot_templates/<lang>.yaml``)."""
    return tuple(sorted(p.stem for p in TEMPLATE_DIR.glob("*.yaml")))


@lru_cache(maxsize=8)
def answer_sentences(language: str) -> tuple[str, ...]:
    """The Stage 2 answer of each label of :data:`EMOTIONS` in ``language``."""
    return tuple(
        implicit_target(Utterance(id="", wav="", emotion=e, language=language)) for e in EMOTIONS
    )


@lru_cache(maxsize=8)
def answer_ids(language: str) -> tuple[tuple[int, ...], ...]:
    """Token ids of :func:`answer_sentences`, each ending with ``EOD_ID`` (the training target)."""
    tok = load_tokenizer()
    return tuple(
        (*tok.encode(s, add_special_tokens=False), EOD_ID) for s in answer_sentences(language)
    )


@dataclass
class LabelScores:
    """One utterance's result: ``language`` of the answers scored, ``loglik`` (label -> summed
    log-probability of its answer) and ``probs`` (label -> softmax over the 7)."""

    language: str
    loglik: dict[str, float]
    probs: dict[str, float]

    @property
    def emotion(self) -> str:
        return max(self.probs, key=self.probs.__getitem__)

    @property
    def answer(self) -> str:
        """The answer sentence of the top label."""
        return answer_sentences(self.language)[EMOTIONS.index(self.emotion)]


@torch.inference_mode()
def candidate_logliks(
    model: C2SER,
    mel: torch.Tensor | None,
    mel_mask: torch.Tensor | None,
    ssl: torch.Tensor | None,
    prompt_ids: list[list[int]],
    candidates: list[list[list[int]]],
) -> list[torch.Tensor]:
    """Summed log-probabilities (float32, CPU) of ``candidates[b]`` (token id lists) after
    row ``b``'s prompt and speech, teacher-forced; one (K_b,) tensor per row. Eval mode."""
    was_training = model.training
    model.eval()
    try:
        speech, lengths = model.encode_speech(mel, mel_mask, ssl)
        embeds, mask, positions, _ = model.assemble(speech, lengths, prompt_ids, left_pad=True)
        base = model.base_llm()
        prefix = base.model(
            inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True
        )
        dev = embeds.device
        counts = torch.tensor([len(c) for c in candidates], device=dev)
        # the cache is ``past_key_values`` before transformers 5.2x and ``cache`` after: it is
        # the second field of the output and the fourth argument of forward in both
        cache = _repeat_cache(prefix.to_tuple()[1], counts)
        flat = [c for row in candidates for c in row]
        width = max(len(c) for c in flat)
        ids = torch.tensor([[*c] + [EOD_ID] * (width - len(c)) for c in flat], device=dev)
        ids = model.llm_ids(ids)  # the LLM's rows (a corpus vocabulary trims them)
        valid = (
            torch.arange(width, device=dev)[None]
            < torch.tensor([len(c) for c in flat], device=dev)[:, None]
        )
        start = mask.sum(1).repeat_interleave(counts)
        hidden = base.model(
            ids,
            torch.cat([mask.repeat_interleave(counts, 0), valid.long()], 1),
            start[:, None] + torch.arange(width, device=dev)[None],
            cache,
            use_cache=False,
        ).last_hidden_state
        # token j of a candidate is predicted by the position before it: the prefix's last
        # position for j = 0, the candidate's own token j - 1 after that
        last = prefix.last_hidden_state[:, -1].repeat_interleave(counts, 0)
        before = torch.cat([last[:, None], hidden[:, :-1]], 1)
        contexts, slot = _shared_contexts(flat, counts.tolist())
        k, j = torch.tensor(contexts, device=dev).T
        logp = torch.zeros(valid.shape, dtype=torch.float32, device=dev)
        logp[valid] = _token_logprobs(
            base.get_output_embeddings(), before[k, j], torch.tensor(slot, device=dev), ids[valid]
        )
        sums = logp.sum(1).cpu()
    finally:
        model.train(was_training)
    return list(sums.split(counts.tolist()))


def _repeat_cache(cache: Any, counts: torch.Tensor) -> Any:
    """Row b of a KV cache repeated ``counts[b]`` times, in place (transformers'
    ``batch_repeat_interleave`` takes one count for all rows)."""
    for layer in cache.layers:
        layer.keys = layer.keys.repeat_interleave(counts, 0)
        layer.values = layer.values.repeat_interleave(counts, 0)
    return cache


def _shared_contexts(
    flat: list[list[int]], counts: list[int]
) -> tuple[list[tuple[int, int]], list[int]]:
    """Deduplicate the positions whose full-vocabulary softmax is needed.

    Token j of candidate k is predicted from its context (row, ``candidate[:j]``); the answers
    of one language share most of theirs ("The speaker's emotion is" before every label), and
    equal contexts give equal distributions. Returns one (candidate, position) per distinct
    context, and for every scored token (row-major over the candidates) its context's slot.
    """
    rows = [b for b, n in enumerate(counts) for _ in range(n)]
    first: dict[tuple[int, tuple[int, ...]], int] = {}
    contexts, slot = [], []
    for k, c in enumerate(flat):
        for j in range(len(c)):
            key = (rows[k], tuple(c[:j]))
            if key not in first:
                first[key] = len(contexts)
                contexts.append((k, j))
            slot.append(first[key])
    return contexts, slot


def _token_logprobs(
    head: torch.nn.Linear, hidden: torch.Tensor, slot: torch.Tensor, ids: torch.Tensor
) -> torch.Tensor:
    """log p(ids[n] | hidden[slot[n]]) for (U, H) context states: the normaliser of each context
    from the full LM head (in chunks), each token's logit from its own row of the head."""
    lse = torch.cat([head(h).float().logsumexp(1) for h in hidden.split(HEAD_CHUNK)])
    weight = head.weight[ids].float()
    logits = (hidden[slot].float() * weight).sum(1)
    if head.bias is not None:
        logits = logits + head.bias[ids].float()
    return logits - lse[slot]


def score_labels(
    model: C2SER,
    mel: torch.Tensor | None,
    mel_mask: torch.Tensor | None,
    ssl: torch.Tensor | None,
    prompt_ids: list[list[int]],
    languages: list[str | None],
) -> list[LabelScores]:
    """:class:`LabelScores` of every row of a batch (the model's batch contract); ``languages[b]``
    is row b's language, or None to score every template language (see the module doc)."""
    known = template_languages()
    options = [(lang,) if lang in known else known for lang in languages]
    candidates = [[list(ids) for lang in opts for ids in answer_ids(lang)] for opts in options]
    sums = candidate_logliks(model, mel, mel_mask, ssl, prompt_ids, candidates)
    results = []
    n = len(EMOTIONS)
    for opts, s in zip(options, sums, strict=True):
        per_language = s.view(len(opts), n)
        pick = int(per_language.logsumexp(1).argmax())
        ll = per_language[pick]
        probs = ll.softmax(0).tolist()
        results.append(
            LabelScores(
                opts[pick],
                {e: float(v) for e, v in zip(EMOTIONS, ll.tolist(), strict=True)},
                {e: float(p) for e, p in zip(EMOTIONS, probs, strict=True)},
            )
        )
    return results
